"""Every private asyncio name evioloop relies on, checked when it is imported.

evioloop subclasses CPython's `unix_events._UnixSelectorEventLoop` and its
compiled core reads private module attributes and private loop methods. None
of that is public API: a Python release may rename or drop any of it. This
module lists all of it in one table (`NEEDS`) and `check()` raises one
ImportError naming every missing name and the Python version, instead of an
AttributeError deep inside a compiled module or a loop that misbehaves later.

Checked against CPython 3.10-3.13 (installed, tested) and against the
Lib/asyncio sources of 3.14 and main (3.15) by reading them: see README.md,
"Supported Pythons".

Keep this module free of imports from evioloop itself: it must load (and the
table must pass) on every supported Python even without the compiled modules.
"""
import collections
import importlib
import inspect
import sys

__all__ = ['NEEDS', 'Need', 'missing', 'check', 'lookup']

TESTED = ((3, 10), (3, 13))

# module: a submodule of asyncio ('asyncio' itself for the package).
# name: a dotted path from the module ('BaseEventLoop._check_closed').
# params: parameter names the callable must accept (inspect.signature).
# only: if set, the callable may accept no parameter outside this set (for
#   methods evioloop overrides: the stock callers must not pass anything the
#   override does not take).
# mentions: names the code must use (co_names, or an identifier string constant
#   such as getattr(x, "_name")); of a class: of all its own functions. For
#   instance attributes that only exist once stock code ran, such as those
#   BaseEventLoop.__init__ sets.
# optional: evioloop has a fallback; a missing name is reported by missing()
#   but does not fail the import.
# versions: (first, last) Python versions (major, minor) that need it; None
#   means all.
Need = collections.namedtuple(
    'Need', 'module name params only mentions optional versions why',
    defaults=((), None, (), False, None, ''))


def _n(module, name, **kw):
    return Need(module, name, **kw)


_LOOP_INIT_STATE = (
    # CoreLoop declares these itself (cdef public, _core.pxd) because
    # BaseEventLoop's Python code reads and writes them: one value on both sides.
    '_closed', '_stopping', '_thread_id', '_clock_resolution',
    'slow_callback_duration', '_task_factory',
    # kept by the stock code that Loop inherits (executor, async generators,
    # the self-pipe's fd count, debug mode's current handle)
    '_default_executor', '_asyncgens', '_asyncgens_shutdown_called',
    '_executor_shutdown_called', '_internal_fds', '_current_handle',
    '_coroutine_origin_tracking_enabled', '_exception_handler',
)

NEEDS = (
    # -- module attributes the compiled core binds at import (_core.pyx,
    # _handles.pyx, _stream.pyx) and the package face calls
    _n('events', '_set_running_loop', params=('loop',),
       why='CoreLoop.run_forever marks the running loop'),
    _n('events', '_get_running_loop',
       why='evioloop.run() and evioloop.serve() refuse to nest in a running loop'),
    _n('futures', '_set_result_unless_cancelled', params=('fut', 'result'),
       why='_stream: wakes connection waiters as the stock transports do'),
    _n('format_helpers', '_format_callback_source', params=('func', 'args'),
       why="_handles: Handle repr and 'Exception in callback' messages"),
    _n('format_helpers', 'extract_stack',
       why='_core/_handles: source tracebacks of handles in debug mode'),
    _n('base_events', '_format_handle', optional=True,
       why="_core: the 'Executing ... took' debug log; falls back to repr()"),
    _n('coroutines', '_iscoroutinefunction', optional=True, versions=((3, 14), None),
       why='Loop.add_signal_handler: 3.14 deprecates the public iscoroutinefunction; '
           'before 3.14 the public one is used'),
    _n('base_events', 'logger', why='_core/_stream log where asyncio logs'),
    _n('runners', '_cancel_all_tasks', params=('loop',), versions=((3, 10), (3, 10)),
       why='evioloop.run() on 3.10, which has no asyncio.Runner'),
    _n('constants', 'LOG_THRESHOLD_FOR_CONNLOST_WRITES',
       why='_stream: warns on writes after connection loss as the stock transport'),
    _n('constants', 'ACCEPT_RETRY_DELAY',
       why='_stream: listener pause after EMFILE, as the stock loop'),
    _n('constants', '_SendfileMode.TRY_NATIVE',
       why='_stream: StreamTransport._sendfile_compatible (loop.sendfile)'),
    _n('transports', '_FlowControlMixin',
       why="_stream: StreamTransport's base (the sendfile fallback requires one)"),
    _n('trsock', 'TransportSocket',
       why="_stream: the 'socket' in accept error contexts"),
    _n('base_events', 'Server._attach', why='_stream: connections count on their server'),
    _n('base_events', 'Server._detach', why='_stream: connections count on their server'),

    # -- datagrams: _dgram follows the stock datagram transport of this Python
    _n('selector_events', '_SelectorDatagramTransport',
       why="_dgram: its source says how this Python counts the write buffer"),
    _n('selector_events', '_SelectorDatagramTransport.max_size',
       why='_dgram: the largest Unix datagram read at once, as the stock transport'),
    _n('selector_events', '_SelectorTransport',
       why='_dgram: whether this Python has pause_reading on datagram transports'),

    # -- subprocesses: _process builds on the stock BaseSubprocessTransport
    _n('base_subprocess', 'BaseSubprocessTransport.__init__',
       params=('loop', 'protocol', 'args', 'shell', 'stdin', 'stdout', 'stderr',
               'bufsize', 'waiter', 'extra'),
       mentions=('_start', '_proc'),
       why='_process: SubprocessTransport overrides _start and reads _proc'),
    _n('base_subprocess', 'BaseSubprocessTransport._process_exited', params=('returncode',),
       why="_process: the pidfd watch reports the child's exit through it"),
    _n('base_subprocess', 'BaseSubprocessTransport._wait',
       why='_process: a failed start waits for the child, as the stock loop'),

    # -- TLS: Loop._make_ssl_transport builds the stock SSLProtocol over the
    # compiled stream transport
    _n('sslproto', 'SSLProtocol.__init__',
       params=('loop', 'app_protocol', 'sslcontext', 'waiter', 'server_side',
               'server_hostname', 'ssl_handshake_timeout'),
       mentions=('_app_transport',),
       why='Loop._make_ssl_transport returns ssl_protocol._app_transport'),
    _n('sslproto', 'SSLProtocol.__init__', params=('ssl_shutdown_timeout',),
       versions=((3, 11), None), why='3.11+ passes the TLS shutdown timeout'),

    # -- the compiled TLS data path (_tls.pyx, 3.11+) subclasses the stock
    # protocol and its app transport, replaces their data-path methods and
    # reads the state the stock methods keep
    _n('sslproto', '_SSLProtocolTransport.write', mentions=('_ssl_protocol',),
       versions=((3, 11), None), why='_tls: the app write goes to the compiled path'),
    _n('sslproto', 'SSLProtocol._get_app_transport', mentions=('_app_transport_created',),
       versions=((3, 11), None), why='_tls: the app transport is its subclass'),
    *(_n('sslproto', f'SSLProtocol.{m}', versions=((3, 11), None),
         why='_tls replaces this data-path method')
      for m in ('get_buffer', 'buffer_updated', '_do_read', '_do_read__buffered',
                '_do_read__copied', '_write_appdata', '_do_write', '_process_outgoing')),
    _n('sslproto', 'SSLProtocol', versions=((3, 11), None),
       mentions=('_incoming', '_outgoing', '_sslobj', '_state', '_write_backlog',
                 '_write_buffer_size', '_app_protocol_get_buffer',
                 '_app_protocol_buffer_updated', '_app_protocol_is_buffer', '_ssl_buffer',
                 '_ssl_buffer_view', '_app_reading_paused', '_ssl_reading_paused',
                 '_incoming_high_water', '_incoming_low_water', '_outgoing_high_water',
                 '_outgoing_low_water', '_app_writing_paused', '_ssl_writing_paused',
                 '_control_app_writing', '_do_flush', '_do_handshake', '_do_shutdown',
                 '_start_shutdown', '_call_eof_received', '_fatal_error', '_conn_lost'),
       why='_tls reads and keeps the state the stock methods around it use'),
    *(_n('sslproto', f'SSLProtocolState.{state}', versions=((3, 11), None),
         why='_tls: a state its data path checks')
      for state in ('WRAPPED', 'FLUSHING', 'SHUTDOWN', 'UNWRAPPED', 'DO_HANDSHAKE')),
    _n('sslproto', 'SSLAgainErrors', versions=((3, 11), None),
       why='_tls: the errors that mean "not yet"'),
    _n('base_events', 'BaseEventLoop.start_tls', versions=((3, 11), None),
       only=('self', 'transport', 'protocol', 'sslcontext', 'server_side', 'server_hostname',
             'ssl_handshake_timeout', 'ssl_shutdown_timeout'),
       mentions=('_start_tls_compatible', 'call_connection_made', 'pause_reading',
                 'set_protocol', 'connection_made', 'resume_reading', '_app_transport'),
       why='Loop.start_tls repeats these steps with the compiled TLS protocol: '
           'a stock change to them is a change to copy'),

    # -- the legacy policy (evioloop.EventLoopPolicy subclasses it)
    _n('unix_events', '_UnixDefaultEventLoopPolicy',
       why='evioloop.EventLoopPolicy; kept in 3.14 (policies deprecated)'),
    _n('unix_events', '_UnixDefaultEventLoopPolicy._loop_factory',
       why='EventLoopPolicy overrides _loop_factory with Loop'),
    _n('asyncio', 'set_event_loop_policy', optional=True,
       why='evioloop.install() only: deprecated in 3.14, removal planned in 3.16'),

    # -- the stock loop class and its constructor
    _n('unix_events', '_UnixSelectorEventLoop', why="Loop's stock half"),
    _n('unix_events', '_UnixSelectorEventLoop.__init__', params=('selector',),
       why='Loop passes its fd table view as the selector'),
    _n('selector_events', 'BaseSelectorEventLoop.__init__', mentions=('_selector',),
       why='the stock transports read loop._selector (repr: polling/idle)'),
    _n('base_events', 'BaseEventLoop.__init__', mentions=_LOOP_INIT_STATE,
       why='state that CoreLoop shares with the stock code'),

    # -- the self-pipe: Loop makes it lazily (only signals need it)
    _n('unix_events', '_UnixSelectorEventLoop._make_self_pipe',
       mentions=('_ssock', '_csock', '_internal_fds', '_add_reader', '_read_from_self'),
       why='Loop._make_self_pipe replaces it; add_signal_handler calls the stock one'),
    _n('selector_events', 'BaseSelectorEventLoop._close_self_pipe',
       mentions=('_ssock', '_csock', '_internal_fds'),
       why='Loop._close_self_pipe calls it when the pipe was made'),
    _n('selector_events', 'BaseSelectorEventLoop._read_from_self',
       why='the signal wake-up path'),
    _n('unix_events', '_UnixSelectorEventLoop._process_self_data',
       why='the signal wake-up path'),
    _n('unix_events', '_UnixSelectorEventLoop.add_signal_handler', mentions=('_csock',),
       why='Loop makes the pipe before calling it: it reads _csock'),
    _n('unix_events', '_UnixSelectorEventLoop._check_signal', params=('sig',),
       why='Loop.add_signal_handler checks as the stock one does'),
    _n('unix_events', '_UnixSelectorEventLoop._handle_signal',
       mentions=('_add_callback_signalsafe',),
       why='stock signal handling queues through the core'),
    _n('base_events', 'BaseEventLoop._add_callback_signalsafe',
       mentions=('_add_callback', '_write_to_self'),
       why='calls CoreLoop._add_callback and _write_to_self'),
    _n('events', 'Handle._run',
       why="CoreLoop._add_callback runs the stock signal code's asyncio Handles"),
    _n('events', 'Handle.__init__', mentions=('_cancelled',),
       why='CoreLoop._add_callback skips cancelled stock Handles'),
    _n('base_events', 'BaseEventLoop._check_closed', mentions=('_closed',),
       why='Loop and CoreLoop call it'),
    _n('base_events', 'BaseEventLoop.set_debug', mentions=('_debug',),
       why='_debug is shared with CoreLoop (BaseEventLoop.__init__ sets it here)'),

    # -- methods CoreLoop/Loop override that the stock code calls by name:
    # if one were renamed, stock code would bypass evioloop's fd table
    _n('selector_events', 'BaseSelectorEventLoop._add_reader', params=('fd', 'callback')),
    _n('selector_events', 'BaseSelectorEventLoop._remove_reader', params=('fd',)),
    _n('selector_events', 'BaseSelectorEventLoop._add_writer', params=('fd', 'callback')),
    _n('selector_events', 'BaseSelectorEventLoop._remove_writer', params=('fd',)),
    _n('selector_events', 'BaseSelectorEventLoop._write_to_self'),
    _n('base_events', 'BaseEventLoop._add_callback', params=('handle',)),
    _n('base_events', 'BaseEventLoop._call_soon', params=('callback', 'args', 'context')),
    _n('base_events', 'BaseEventLoop._timer_handle_cancelled', params=('handle',)),
    _n('base_events', 'BaseEventLoop._run_once'),
    _n('selector_events', 'BaseSelectorEventLoop._make_socket_transport',
       params=('sock', 'protocol', 'waiter', 'extra', 'server'),
       only=('self', 'sock', 'protocol', 'waiter', 'extra', 'server'),
       why='Loop returns the compiled stream transport'),
    _n('selector_events', 'BaseSelectorEventLoop._make_datagram_transport',
       params=('sock', 'protocol', 'address', 'waiter', 'extra'),
       only=('self', 'sock', 'protocol', 'address', 'waiter', 'extra'),
       why='Loop returns the compiled datagram transport (the stock one for other families)'),
    _n('unix_events', '_UnixSelectorEventLoop._make_read_pipe_transport',
       params=('pipe', 'protocol', 'waiter', 'extra'),
       only=('self', 'pipe', 'protocol', 'waiter', 'extra'),
       why='Loop returns the compiled read pipe transport'),
    _n('unix_events', '_UnixSelectorEventLoop._make_write_pipe_transport',
       params=('pipe', 'protocol', 'waiter', 'extra'),
       only=('self', 'pipe', 'protocol', 'waiter', 'extra'),
       why='Loop returns the compiled write pipe transport'),
    _n('unix_events', '_UnixSelectorEventLoop._make_subprocess_transport',
       params=('protocol', 'args', 'shell', 'stdin', 'stdout', 'stderr', 'bufsize', 'extra'),
       why="Loop: the compiled subprocess transport, the child's exit seen by its pidfd"),
    _n('selector_events', 'BaseSelectorEventLoop._make_ssl_transport',
       params=('rawsock', 'protocol', 'sslcontext', 'waiter', 'server_side',
               'server_hostname', 'extra', 'server', 'ssl_handshake_timeout'),
       only=('self', 'rawsock', 'protocol', 'sslcontext', 'waiter', 'server_side',
             'server_hostname', 'extra', 'server', 'ssl_handshake_timeout',
             'ssl_shutdown_timeout', 'call_connection_made'),
       why='Loop: stock SSLProtocol over the compiled transport'),
    _n('selector_events', 'BaseSelectorEventLoop._start_serving',
       params=('protocol_factory', 'sock', 'sslcontext', 'server', 'backlog'),
       why='Loop: compiled listener without TLS, the stock one with TLS'),
    _n('base_events', 'Server._start_serving', mentions=('_start_serving',),
       why='Server calls loop._start_serving'),
    _n('selector_events', 'BaseSelectorEventLoop._stop_serving', params=('sock',),
       why='Loop stops its listener, then the stock steps'),
    _n('selector_events', 'BaseSelectorEventLoop._ensure_fd_no_transport', params=('fd',),
       why='Loop adds its compiled transports to the stock check'),
    _n('selector_events', 'BaseSelectorEventLoop._sendfile_native',
       params=('transp', 'file', 'offset', 'count'),
       why='Loop: sendfile on the compiled transport, the stock one on others'),

    # -- names the stock code reads or calls on evioloop's StreamTransport
    # (_stream.pyx provides them as the stock socket transport does)
    _n('sslproto', 'SSLProtocol', mentions=('_force_close',),
       why='TLS calls _force_close on the transport under it'),
    _n('base_events', '_SendfileFallbackProtocol', mentions=('_protocol_paused', '_loop'),
       why="the sendfile fallback reads the transport's _protocol_paused and _loop"),
    _n('sslproto', 'SSLProtocol._process_write_backlog', mentions=('_paused',),
       versions=((3, 10), (3, 10)),
       why="3.10's TLS protocol reads the transport's _paused (ReadFlowTransport._paused)"),
    _n('base_events', 'BaseEventLoop.sendfile',
       mentions=('_sendfile_compatible', '_SendfileMode', '_sendfile_native'),
       why='StreamTransport._sendfile_compatible; Loop._sendfile_native'),
    _n('base_events', 'BaseEventLoop.start_tls',
       mentions=('_start_tls_compatible', '_app_transport'),
       why='StreamTransport._start_tls_compatible'),

    # -- stock methods the compiled run loop calls (_core.pyx)
    _n('base_events', 'BaseEventLoop._check_running', why='CoreLoop.run_forever'),
    _n('base_events', 'BaseEventLoop._check_thread', why='call_soon & co in debug mode'),
    _n('base_events', 'BaseEventLoop._check_callback', params=('callback', 'method'),
       why='call_soon & co in debug mode'),
    _n('base_events', 'BaseEventLoop._set_coroutine_origin_tracking', params=('enabled',),
       why='CoreLoop.run_forever'),
    _n('base_events', 'BaseEventLoop._asyncgen_firstiter_hook', why='CoreLoop.run_forever'),
    _n('base_events', 'BaseEventLoop._asyncgen_finalizer_hook', why='CoreLoop.run_forever'),
    _n('base_events', 'BaseEventLoop.create_task', params=('coro',),
       why='CoreLoop.create_task defers to it for task factories and keywords'),
    _n('base_events', 'BaseEventLoop.default_exception_handler',
       mentions=('_current_handle',),
       why='CoreLoop sets _current_handle in debug mode for handle tracebacks'),
    _n('base_events', 'BaseEventLoop.shutdown_default_executor',
       mentions=('_executor_shutdown_called', '_default_executor'),
       versions=((3, 12), None), why="3.12+: the stock one (Loop's own before 3.12)"),
    _n('base_events', 'BaseEventLoop.shutdown_default_executor', mentions=('_do_shutdown',),
       versions=((3, 12), None), why='Loop defines _do_shutdown itself only before 3.12'),
)


def lookup(need):
    """The object `need` names, or raise AttributeError/ImportError."""
    if need.module == 'asyncio':
        obj = importlib.import_module('asyncio')
    else:
        obj = importlib.import_module('asyncio.' + need.module)
    for part in need.name.split('.'):
        obj = getattr(obj, part)
    return obj


def _code_names(obj):
    """Attribute and global names (and identifier-like string constants) the
    code of a function, or of all a class's own functions, uses; nested
    functions and comprehensions included."""
    if inspect.isclass(obj):
        funcs = [f for f in vars(obj).values() if inspect.isfunction(f)]
    else:
        funcs = [inspect.unwrap(obj)]
    codes = [f.__code__ for f in funcs if hasattr(f, '__code__')]
    if not codes:
        return None
    names = set()
    while codes:
        code = codes.pop()
        names.update(code.co_names)
        # getattr(transport, '_sendfile_compatible', ...) names it as a constant
        names.update(c for c in code.co_consts if isinstance(c, str) and c.isidentifier())
        # keyword arguments of a call: a tuple of their names
        names.update(n for c in code.co_consts if isinstance(c, tuple)
                     for n in c if isinstance(n, str) and n.isidentifier())
        codes.extend(c for c in code.co_consts if inspect.iscode(c))
    return names


def _problem(need):
    """None if `need` is met on this Python, else what is wrong with it."""
    where = f'asyncio.{need.name}' if need.module == 'asyncio' else \
        f'asyncio.{need.module}.{need.name}'
    try:
        obj = lookup(need)
    except (AttributeError, ImportError):
        return f'{where} (missing)'
    if need.params or need.only:
        try:
            params = inspect.signature(obj).parameters
        except (TypeError, ValueError):
            # a C function without a text signature: the name is there, the
            # parameters cannot be checked (not a reason to refuse to import)
            params = None
        absent = [] if params is None else [p for p in need.params if p not in params]
        if absent:
            return f'{where} (no parameter {", ".join(absent)})'
        if need.only is not None and params is not None:
            extra = [p for p, v in params.items() if p not in need.only
                     and v.kind not in (v.VAR_POSITIONAL, v.VAR_KEYWORD)]
            if extra:
                return f'{where} (new parameter {", ".join(extra)})'
    if need.mentions:
        names = _code_names(obj)
        if names is None:
            return f'{where} (no Python code to check)'
        absent = [m for m in need.mentions if m not in names]
        if absent:
            return f'{where} (no longer uses {", ".join(absent)})'
    return None


def _applies(need, version):
    if need.versions is None:
        return True
    first, last = need.versions
    v = tuple(version[:2])
    return (first is None or v >= first) and (last is None or v <= last)


def missing(version=None):
    """[(need, problem)] for every name of NEEDS not met on this Python."""
    version = sys.version_info if version is None else version
    out = []
    for need in NEEDS:
        if not _applies(need, version):
            continue
        problem = _problem(need)
        if problem is not None:
            out.append((need, problem))
    return out


def check(version_string=None):
    """Raise ImportError naming every required name this Python lacks."""
    problems = [p for need, p in missing() if not need.optional]
    if not problems:
        return
    version = version_string or sys.version.split()[0]
    first, last = TESTED
    raise ImportError(
        f'evioloop supports CPython {first[0]}.{first[1]}-{last[0]}.{last[1]} (tested; '
        f'3.14 and 3.15 checked against their sources only): on this Python '
        f'({version}) asyncio lacks what evioloop builds on: ' + '; '.join(problems))


if __name__ == '__main__':
    # python evioloop/_compat.py: print the verdict of every name
    for n in NEEDS:
        if _applies(n, sys.version_info):
            p = _problem(n)
            print('ok  ' if p is None else ('opt ' if n.optional else 'MISS'),
                  n.module, n.name, '' if p is None else p)
