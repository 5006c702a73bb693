"""The Events API servers of server.py (kinds events-*), one per process.

    events-echo         Events(data=lambda c, d: d)
    events-echo-reuse   the same, with opened() -> Options(reuse_input_buffer=True)
    events-echo-net     events-echo on a tcp-net:// address (portable mode on evioloop)
    events-http         examples/http_server.py's Events server
    events-http-net     the same on tcp-net://
    events-redis        examples/redis_server.py's Events server
    events-redis-net    the same on tcp-net://

On evioloop the server runs with evioloop.serve() (native mode unless the address is
tcp-net://); on any other loop with evioloop.serve_async() inside that loop, where
the Events API is in portable mode by itself.  The examples are loaded by path from
the repository's examples/ directory; they import the installed evioloop.
"""
import asyncio
import importlib.util
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
EXAMPLES = os.path.join(os.path.dirname(os.path.dirname(HERE)), 'examples')

# the Events class each example is expected to define (any other single subclass of
# evioloop.Events defined in the module is taken when the name is not there)
EXAMPLE_CLASS = {'http_server': 'HTTPServer', 'redis_server': 'RedisServer'}


def echo(conn, in_):
    return in_


def example_module(name):
    """examples/NAME.py, imported by path (once)."""
    mod = sys.modules.get(f'_bench_example_{name}')
    if mod is not None:
        return mod
    path = os.path.join(EXAMPLES, name + '.py')
    if not os.path.exists(path):
        raise SystemExit(f'server.py: {path} is not there')
    spec = importlib.util.spec_from_file_location(f'_bench_example_{name}', path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


def load_example(name):
    """The Events object of examples/NAME.py (a fresh instance)."""
    import evioloop
    mod = example_module(name)
    path = mod.__file__
    cls = getattr(mod, EXAMPLE_CLASS.get(name, ''), None)
    if cls is None:
        found = [v for v in vars(mod).values() if isinstance(v, type)
                 and issubclass(v, evioloop.Events) and v.__module__ == mod.__name__]
        if len(found) != 1:
            raise SystemExit(f'server.py: no single Events class in {path}: {found}')
        cls = found[0]
    return cls()


def make_events(kind):
    import evioloop
    base = kind[:-4] if kind.endswith('-net') else kind
    if base == 'events-echo':
        return evioloop.Events(data=echo)
    if base == 'events-echo-reuse':
        opts = evioloop.Options(reuse_input_buffer=True)
        return evioloop.Events(data=echo, opened=lambda conn: opts)
    if base == 'events-http':
        return load_example('http_server')
    if base == 'events-redis':
        return load_example('redis_server')
    raise SystemExit(f'server.py: unknown kind {kind!r}')


def port_of(addr):
    if isinstance(addr, (tuple, list)):
        return int(addr[1])
    port = getattr(addr, 'port', None)
    if port is not None:
        return int(port)
    return int(str(addr).rsplit(':', 1)[1].strip('/]'))


def main(loop_name, kind, port, new_loop, announce):
    """Serve until the process is ended; announce(port) once listening."""
    import evioloop
    events = make_events(kind)
    user_serving = events.serving

    def serving(server):
        announce(port_of(server.addrs[0]))
        return user_serving(server) if user_serving is not None else None

    events.serving = serving        # Events is a plain object: an instance attribute
    scheme = 'tcp-net' if kind.endswith('-net') else 'tcp'
    addr = f'{scheme}://127.0.0.1:{port}'
    if loop_name == 'evioloop':
        evioloop.serve(events, addr)
    else:
        loop = new_loop(loop_name)
        asyncio.set_event_loop(loop)
        loop.run_until_complete(evioloop.serve_async(events, addr))
