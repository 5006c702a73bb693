"""evioloop/_compat.py: the table of private asyncio names and its import check.

(a) the check passes on this Python, and every name of the table resolves;
(b) taking a name away (in a fresh interpreter, before `import evioloop`)
    makes the import fail with an ImportError that names it -- one sample per
    group of the table -- while an optional or version-gated name does not;
(c) the table covers what evioloop's sources use: a regex scan of the .py and
    .pyx files for private names reached through asyncio modules, and for
    `self._x`/`super()._x` names of the loop glue that the stock loop class
    has. Limits of the scan: it sees only accesses spelled out in the source
    (not getattr() with a computed string, not attributes reached through a
    typed cdef variable or another object such as a transport), and it only
    knows the asyncio aliases bound by `from asyncio import x [as y]`.
"""
import os
import re
import subprocess
import sys
import textwrap

import pytest

import evioloop
from evioloop import _compat

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PKG = os.path.join(ROOT, 'evioloop')
VERSION = sys.version.split()[0]


# ---------------------------------------------------------------- (a)

def test_check_passes_on_this_python():
    # on a tested Python nothing is missing, optional names included
    assert [p for _, p in _compat.missing()] == []
    _compat.check()


def test_every_name_resolves_here():
    # missing() skips the version-gated ones that do not apply; resolve those
    # that do one by one, so a typo in the table cannot hide behind a
    # lookup error that check() would turn into a (wrong) problem report
    applied = [n for n in _compat.NEEDS if _compat._applies(n, sys.version_info)]
    assert len(applied) > 50
    for need in applied:
        assert _compat.lookup(need) is not None, need


# ---------------------------------------------------------------- (b)

def _import_after(patch):
    """Run `patch` in a fresh interpreter, then import evioloop there.

    Returns (kind, text): ('ok', repr of a loop's run result) or
    ('ImportError' / another exception type name, its message)."""
    script = '\n'.join([
        'import asyncio, sys',
        'from asyncio import (base_events, events, futures, runners, selector_events,',
        '                     sslproto, unix_events)',
        textwrap.dedent(patch).strip(),
        'try:',
        '    import evioloop',
        '    async def main():',
        '        return 42',
        "    print('ok', evioloop.run(main()))",
        'except BaseException as exc:',
        '    print(type(exc).__name__, exc)',
    ])
    # the evioloop this test imported (installed, or built in place)
    env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(evioloop.__file__)))
    # cwd: `python -c` puts the working directory first on sys.path, and in a
    # tox env that is the repository, whose evioloop has no compiled modules
    proc = subprocess.run([sys.executable, '-c', script], capture_output=True, text=True,
                          env=env, timeout=60, cwd=os.path.dirname(os.path.abspath(__file__)))
    assert proc.returncode == 0, proc.stderr
    kind, _, text = proc.stdout.strip().partition(' ')
    return kind, text


# (patch run before the import, the text the ImportError must contain)
REMOVED = {
    'module attribute': (
        'del futures._set_result_unless_cancelled',
        'asyncio.futures._set_result_unless_cancelled (missing)'),
    'running-loop hook': (
        'del events._set_running_loop',
        'asyncio.events._set_running_loop (missing)'),
    'TLS signature': (
        '''
        orig = sslproto.SSLProtocol.__init__
        def __init__(self, loop, app_protocol, sslcontext, waiter, server_side=False,
                     server_hostname=None, call_connection_made=True,
                     handshake_timeout=None, shutdown_timeout=None):
            pass
        sslproto.SSLProtocol.__init__ = __init__
        ''',
        'SSLProtocol.__init__ (no parameter ssl_handshake_timeout)'),
    'policy': (
        'del unix_events._UnixDefaultEventLoopPolicy',
        'asyncio.unix_events._UnixDefaultEventLoopPolicy (missing)'),
    'stock loop method': (
        'del unix_events._UnixSelectorEventLoop._check_signal',
        'asyncio.unix_events._UnixSelectorEventLoop._check_signal (missing)'),
    'self-pipe attributes': (
        '''
        def _make_self_pipe(self):
            self._ssock, self._wakeup = object(), object()
        selector_events.BaseSelectorEventLoop._make_self_pipe = _make_self_pipe
        ''',
        '_make_self_pipe (no longer uses _csock, _internal_fds, _add_reader, '
        '_read_from_self)'),
    'overridden method gains a parameter': (
        '''
        def _make_socket_transport(self, sock, protocol, waiter=None, *, extra=None,
                                   server=None, context=None):
            pass
        selector_events.BaseSelectorEventLoop._make_socket_transport = \\
            _make_socket_transport
        ''',
        '_make_socket_transport (new parameter context)'),
    'name read on our transport': (
        'del base_events._SendfileFallbackProtocol',
        'asyncio.base_events._SendfileFallbackProtocol (missing)'),
    'run-loop method': (
        'del base_events.BaseEventLoop._set_coroutine_origin_tracking',
        'BaseEventLoop._set_coroutine_origin_tracking (missing)'),
    'shared loop state': (
        '''
        orig = base_events.BaseEventLoop.__init__
        def __init__(self):
            orig(self)
        base_events.BaseEventLoop.__init__ = __init__
        ''',
        'BaseEventLoop.__init__ (no longer uses _closed, _stopping, _thread_id'),
}


@pytest.mark.parametrize('group', list(REMOVED))
def test_removed_name_fails_the_import_naming_it(group):
    patch, expected = REMOVED[group]
    kind, text = _import_after(patch)
    assert kind == 'ImportError', text
    assert expected in text
    # the message says which Python and what is supported
    assert f'({VERSION})' in text and '3.10-3.13' in text


@pytest.mark.skipif(sys.version_info < (3, 11),
                    reason='3.10 keeps the stock start_tls (no compiled TLS protocol)')
def test_start_tls_steps_are_checked_down_to_keyword_names():
    # Loop.start_tls repeats the stock steps; a stock start_tls that no longer
    # passes call_connection_made= (a keyword: seen only in the call's tuple
    # of keyword names) is a change the override must follow.
    kind, text = _import_after('''
        async def start_tls(self, transport, protocol, sslcontext, *, server_side=False,
                            server_hostname=None, ssl_handshake_timeout=None,
                            ssl_shutdown_timeout=None):
            transport._start_tls_compatible
            transport.pause_reading()
            transport.set_protocol(protocol)
            protocol.connection_made(transport)
            transport.resume_reading()
            return protocol._app_transport
        base_events.BaseEventLoop.start_tls = start_tls
    ''')
    assert kind == 'ImportError', text
    assert 'BaseEventLoop.start_tls (no longer uses call_connection_made)' in text


def test_every_missing_name_is_named_at_once():
    kind, text = _import_after('''
        del futures._set_result_unless_cancelled
        del unix_events._UnixSelectorEventLoop._check_signal
        del selector_events.BaseSelectorEventLoop._stop_serving
    ''')
    assert kind == 'ImportError', text
    for name in ('futures._set_result_unless_cancelled', '_check_signal',
                 'BaseSelectorEventLoop._stop_serving'):
        assert name in text


def test_removed_name_used_by_handles_fails_the_import_naming_it():
    kind, text = _import_after('''
        from asyncio import format_helpers
        del format_helpers._format_callback_source
    ''')
    assert kind == 'ImportError', text
    assert 'format_helpers._format_callback_source' in text


def test_optional_name_does_not_fail_the_import():
    # _core falls back to repr() for the slow-callback log
    kind, text = _import_after('del base_events._format_handle')
    assert (kind, text) == ('ok', '42')


def test_version_gated_name_fails_only_where_it_is_needed():
    # the TLS shutdown timeout is passed on from 3.11 only: a 3.10-style
    # SSLProtocol fails the import on 3.11+ and not on 3.10
    kind, text = _import_after('''
        def __init__(self, loop, app_protocol, sslcontext, waiter, server_side=False,
                     server_hostname=None, call_connection_made=True,
                     ssl_handshake_timeout=None):
            self._app_transport = None
        sslproto.SSLProtocol.__init__ = __init__
    ''')
    if sys.version_info >= (3, 11):
        assert kind == 'ImportError', text
        assert 'SSLProtocol.__init__ (no parameter ssl_shutdown_timeout)' in text
    else:
        assert (kind, text) == ('ok', '42')


def test_optional_missing_name_is_reported_by_missing():
    # missing() still lists it, flagged optional, for `python evioloop/_compat.py`
    need = next(n for n in _compat.NEEDS if n.name == '_format_handle')
    assert need.optional
    assert _compat._problem(need._replace(name='_no_such_name_')) == \
        'asyncio.base_events._no_such_name_ (missing)'


# ---------------------------------------------------------------- (c)

def _sources():
    for dirpath, _, files in os.walk(PKG):
        for f in sorted(files):
            if f.endswith(('.py', '.pyx')) and f != '_compat.py':
                path = os.path.join(dirpath, f)
                with open(path) as fh:
                    yield os.path.relpath(path, ROOT), fh.read()


_FROM_ASYNCIO = re.compile(r'^[ \t]*from asyncio import (?:\(([^)]*)\)|([^\n]+))', re.M)
_PRIVATE = re.compile(r'(?:^|\.)_(?!_)')


def _asyncio_aliases(text):
    aliases = {'asyncio': 'asyncio'} if re.search(r'^import asyncio\b', text, re.M) else {}
    for parens, line in _FROM_ASYNCIO.findall(text):
        for item in (parens or line).replace('\n', ' ').split(','):
            parts = item.split()
            if parts:
                aliases[parts[-1]] = parts[0]
    return aliases


def _covered(module, chain):
    return any(n.module == module and (n.name == chain or n.name.startswith(chain + '.'))
               for n in _compat.NEEDS)


def test_scan_private_asyncio_names_are_in_the_table():
    found = {}
    for path, text in _sources():
        aliases = _asyncio_aliases(text)
        for alias, module in aliases.items():
            for m in re.finditer(rf'(?<![\w.]){re.escape(alias)}((?:\.\w+)+)', text):
                chain = m.group(1)[1:]
                if alias == 'asyncio':
                    head, _, rest = chain.partition('.')
                    if rest and head in {a for a in aliases.values()} | {
                            'events', 'base_events', 'unix_events', 'coroutines'}:
                        module, chain = head, rest
                    else:
                        module = 'asyncio'
                if _PRIVATE.search(chain):
                    found.setdefault((module, chain), path)
            # guarded look-ups: getattr(_base_events, '_format_handle', repr)
            for m in re.finditer(rf"getattr\({re.escape(alias)}, '(_\w+)'", text):
                found.setdefault((module, m.group(1)), path)
    assert len(found) >= 12      # the scan sees something: it can fail
    uncovered = {k: v for k, v in found.items() if not _covered(*k)}
    assert uncovered == {}


def test_scan_stock_loop_names_of_the_glue_are_in_the_table():
    from asyncio import base_events, selector_events, unix_events
    stock = unix_events._UnixSelectorEventLoop
    state = set()
    for init in (base_events.BaseEventLoop.__init__, selector_events.BaseSelectorEventLoop.__init__,
                 stock.__init__, selector_events.BaseSelectorEventLoop._make_self_pipe):
        state |= _compat._code_names(init)
    named = set()
    for n in _compat.NEEDS:
        named.add(n.name.rsplit('.', 1)[-1])
        named.update(n.mentions)
    found = {}
    for path in ('evioloop/loop.py', 'evioloop/core/_core.pyx'):
        with open(os.path.join(ROOT, path)) as fh:
            text = fh.read()
        for name in re.findall(r'(?:self|super\(\))\.(_[a-z]\w*)', text):
            if hasattr(stock, name) or name in state:
                found.setdefault(name, path)
    assert len(found) >= 20
    assert {k: v for k, v in found.items() if k not in named} == {}


# ---------------------------------------------------------------- a 3.13+ change

def test_debug_handle_repr_shows_arguments_as_the_stock_loop():
    import asyncio

    import evioloop

    def cb(x):
        pass

    shown = {}
    for kind, factory in (('stock', asyncio.SelectorEventLoop),
                          ('evioloop', evioloop.new_event_loop)):
        loop = factory()
        try:
            loop.set_debug(True)
            h = loop.call_soon(cb, 12345)
            shown[kind] = 'cb(12345)' in repr(h)
            h.cancel()
        finally:
            loop.close()
    assert shown['evioloop'] == shown['stock']
