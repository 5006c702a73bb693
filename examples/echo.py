"""An echo server on evioloop's Events API: what comes in goes back out.

    python examples/echo.py --port 5000
    python examples/echo.py --addr tcp-net://127.0.0.1:5000   # portable mode
    python examples/echo.py --addr unix:///tmp/echo.sock

Talk to it with `nc 127.0.0.1 5000`.
"""
import argparse
import sys

import evioloop


class EchoServer(evioloop.Events):
    """evio's echo example: `data` hands back what it was given."""

    def __init__(self, *, quiet=True, **kw):
        super().__init__(**kw)
        self.quiet = quiet

    def serving(self, server):
        if not self.quiet:
            print('echo: serving on', ' '.join(format_addr(a) for a in server.addrs),
                  flush=True)

    def data(self, conn, in_):
        return in_           # None (a wake) gives None: nothing to write


def format_addr(addr):
    """host:port for a (host, port, ...) tuple; anything else as str()."""
    if isinstance(addr, tuple) and len(addr) >= 2:
        host = addr[0]
        return f'[{host}]:{addr[1]}' if ':' in host else f'{host}:{addr[1]}'
    return str(addr)


def main(argv=None):
    p = argparse.ArgumentParser(description='echo server on evioloop')
    g = p.add_mutually_exclusive_group()
    g.add_argument('--addr', help='an evio address, e.g. tcp://:5000, tcp-net://127.0.0.1:5000 '
                   '(portable mode) or unix:///tmp/echo.sock (default tcp://127.0.0.1:5000)')
    g.add_argument('--port', type=int, default=5000, help='TCP port on 127.0.0.1 (default 5000)')
    args = p.parse_args(argv)
    try:
        evioloop.serve(EchoServer(quiet=False), args.addr or f'tcp://127.0.0.1:{args.port}')
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == '__main__':
    sys.exit(main())
