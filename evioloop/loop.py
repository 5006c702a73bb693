"""Layer 4: the asyncio.AbstractEventLoop surface.

`Loop` is the compiled core (`_core.CoreLoop`: run loop, ready queue, timer
heap, fd table) joined with the stock Unix loop's Python API glue. The core
comes first in the MRO, so everything on the hot path (call_soon, timers,
run_forever, add_reader and friends) is compiled, and so are the transports
(layer 3: streams in `_stream`, datagrams in `_dgram`, pipes in `_pipe`, a
child's exit watched by its pidfd in `_process`). Argument checking, name
resolution, happy eyeballs, servers, `sock_*`, `sendfile`, signals, TLS's
protocol, the executor and the exception handler come from CPython itself,
version for version: asyncio's own behaviour is the spec, and this way each
Python gets exactly its own.

Those stock methods reach file descriptors only through `_add_reader`,
`_remove_reader`, `_add_writer` and `_remove_writer`, which the core
implements as fd owners in its dispatch; the stock loop's selector is never
created (see `_FdTableView`).
"""
import asyncio
import collections.abc
import selectors
import socket
import ssl
import sys
import threading
import warnings
from asyncio import coroutines, unix_events

from asyncio import sslproto

from .core import _core
from .transports import _dgram, _pipe, _process, _stream, _tls

__all__ = ['Loop']

# 3.14 deprecates coroutines.iscoroutinefunction (a DeprecationWarning on every
# call); its stock add_signal_handler uses the private one, which 3.10-3.13 lack
_iscoroutinefunction = getattr(coroutines, '_iscoroutinefunction',
                               coroutines.iscoroutinefunction)


class _FdTableView(selectors.BaseSelector):
    """The loop's fd table, read-only, where stock code expects `loop._selector`.

    The stock transports only look at it in `__repr__` (to print "polling" or
    "idle"); registering through it would bypass the dispatch, so it refuses.
    """

    def __init__(self, loop):
        self._loop = loop

    def _refuse(self, *args, **kwargs):
        raise RuntimeError('evioloop watches fds through its own fd table; '
                           'use loop.add_reader()/add_writer()')

    register = unregister = modify = select = _refuse

    def get_map(self):
        return _FdMap(self._loop)

    def close(self):
        pass


class _FdMap(collections.abc.Mapping):

    def __init__(self, loop):
        self._loop = loop

    def __getitem__(self, fd):
        owner = self._loop._owner(fd)
        if owner is None:
            raise KeyError(fd)
        events = 0
        mask = owner._interest()
        if mask & 1:
            events |= selectors.EVENT_READ
        if mask & 2:
            events |= selectors.EVENT_WRITE
        return selectors.SelectorKey(fd, fd, events, owner)

    def __iter__(self):
        return iter(self._loop._watched_fds())

    def __len__(self):
        return len(self._loop._watched_fds())


class Loop(_core.CoreLoop, unix_events._UnixSelectorEventLoop):
    """The evioloop event loop: an `asyncio.AbstractEventLoop` on evio's dispatch.

    Create it with `evioloop.new_event_loop()` (or run a coroutine on a fresh
    one with `evioloop.run()`). Every method behaves as the stock Unix loop's
    of the running Python, raising the same exceptions; see the API reference
    for the few that evioloop defines itself.
    """

    def __init__(self):
        """A new, not yet running loop; raises OSError if the poller cannot be made."""
        super().__init__(selector=_FdTableView(self))

    # -- the self-pipe: only signals need it

    def _make_self_pipe(self):
        # call_soon_threadsafe wakes the loop through the poller's trigger
        # (eventfd / EVFILT_USER). The stock socketpair is still needed for
        # signal.set_wakeup_fd, so it is made on the first add_signal_handler.
        self._ssock = self._csock = None
        self._internal_fds += 1     # the poller's wake-up channel

    def _close_self_pipe(self):
        if self._ssock is not None:
            super()._close_self_pipe()
        self._internal_fds -= 1

    def add_signal_handler(self, sig, callback, *args):
        """Run `callback(*args)` on the loop whenever signal `sig` arrives.

        As the stock loop: raises TypeError for a coroutine (function),
        ValueError for a bad signal number, RuntimeError if the loop is closed
        or the handler cannot be set from this thread (not the main thread).
        """
        # the stock checks first, in the stock order, then the pipe
        if coroutines.iscoroutine(callback) or _iscoroutinefunction(callback):
            raise TypeError("coroutines cannot be used with add_signal_handler()")
        self._check_signal(sig)
        self._check_closed()
        if self._ssock is None:
            unix_events._UnixSelectorEventLoop._make_self_pipe(self)
        return super().add_signal_handler(sig, callback, *args)

    # -- transports: stream sockets get the compiled ones (layer 3)

    def _make_socket_transport(self, sock, protocol, waiter=None, *, extra=None, server=None):
        return _stream.make_stream_transport(self, sock, protocol, waiter, extra, server)

    def _make_ssl_transport(self, rawsock, protocol, sslcontext, waiter=None, *,
                            server_side=False, server_hostname=None, extra=None,
                            server=None, **timeouts):
        # the stock method with our stream transport under the TLS protocol
        # (the compiled one from 3.11, see _tls); `timeouts` are the handshake
        # (and, from 3.11, shutdown) timeouts
        ssl_protocol = (_tls.TLSProtocol or sslproto.SSLProtocol)(
            self, protocol, sslcontext, waiter, server_side, server_hostname, **timeouts)
        self._make_socket_transport(rawsock, ssl_protocol, extra=extra, server=server)
        return ssl_protocol._app_transport

    if _tls.TLSProtocol is not None:
        async def start_tls(self, transport, protocol, sslcontext, *, server_side=False,
                            server_hostname=None, ssl_handshake_timeout=None,
                            ssl_shutdown_timeout=None):
            """Upgrade `transport` to TLS; the new transport, once the handshake is done.

            As the stock loop (same checks, exceptions and steps); on evioloop's
            stream transport the TLS protocol is the compiled one.
            """
            if not isinstance(transport, _stream.StreamTransport):
                return await super().start_tls(
                    transport, protocol, sslcontext, server_side=server_side,
                    server_hostname=server_hostname,
                    ssl_handshake_timeout=ssl_handshake_timeout,
                    ssl_shutdown_timeout=ssl_shutdown_timeout)
            # the stock steps (base_events.start_tls, 3.11-3.13)
            if not isinstance(sslcontext, ssl.SSLContext):
                raise TypeError(
                    f'sslcontext is expected to be an instance of ssl.SSLContext, '
                    f'got {sslcontext!r}')
            waiter = self.create_future()
            ssl_protocol = _tls.TLSProtocol(
                self, protocol, sslcontext, waiter, server_side, server_hostname,
                ssl_handshake_timeout=ssl_handshake_timeout,
                ssl_shutdown_timeout=ssl_shutdown_timeout,
                call_connection_made=False)
            # paused first, so that no data reaches the TLS protocol before
            # its connection_made
            transport.pause_reading()
            transport.set_protocol(ssl_protocol)
            conmade_cb = self.call_soon(ssl_protocol.connection_made, transport)
            resume_cb = self.call_soon(transport.resume_reading)
            try:
                await waiter
            except BaseException:
                transport.close()
                conmade_cb.cancel()
                resume_cb.cancel()
                raise
            return ssl_protocol._app_transport

    # -- datagram sockets (layer 3)

    def _make_datagram_transport(self, sock, protocol, address=None, waiter=None, extra=None):
        if not _dgram.supports(sock):
            # another family (say AF_PACKET): the stock transport
            return super()._make_datagram_transport(sock, protocol, address, waiter, extra)
        self._ensure_fd_no_transport(sock)
        return _dgram.make_datagram_transport(self, sock, protocol, address, waiter, extra)

    # -- pipes and subprocesses (layer 3)

    def _make_read_pipe_transport(self, pipe, protocol, waiter=None, extra=None):
        return _pipe.make_read_pipe_transport(self, pipe, protocol, waiter, extra)

    def _make_write_pipe_transport(self, pipe, protocol, waiter=None, extra=None):
        return _pipe.make_write_pipe_transport(self, pipe, protocol, waiter, extra)

    async def _make_subprocess_transport(self, protocol, args, shell, stdin, stdout, stderr,
                                         bufsize, extra=None, **kwargs):
        # the child's exit is a pidfd in the dispatch (a thread where there is
        # none), never asyncio's child watchers
        return await _process.make_subprocess_transport(
            self, protocol, args, shell, stdin, stdout, stderr, bufsize, extra, **kwargs)

    def _start_serving(self, protocol_factory, sock, sslcontext=None, server=None,
                       backlog=100, *args, **kwargs):
        if sslcontext is not None:
            return super()._start_serving(protocol_factory, sock, sslcontext, server,
                                          backlog, *args, **kwargs)
        _stream.start_serving(self, protocol_factory, sock, server, backlog)

    def _stop_serving(self, sock):
        # the listener first; then the stock steps of this version (which
        # close the socket and, on 3.13, remove a Unix socket's file)
        _stream.stop_serving(self, sock)
        super()._stop_serving(sock)

    def _ensure_fd_no_transport(self, fd):
        fileno = fd
        if not isinstance(fileno, int):
            try:
                fileno = int(fileno.fileno())
            except (AttributeError, TypeError, ValueError):
                raise ValueError(f"Invalid file object: {fd!r}") from None
        if fileno >= 0:
            owner = self._owner(fileno)
            if _stream.is_open_stream(owner):
                raise RuntimeError(f'File descriptor {fd!r} is used by transport '
                                   f'{owner.transport!r}')
        super()._ensure_fd_no_transport(fd)

    async def _sendfile_native(self, transp, file, offset, count):
        if not isinstance(transp, _stream.StreamTransport):
            return await super()._sendfile_native(transp, file, offset, count)
        resume_reading = transp.is_reading()
        transp.pause_reading()
        await transp._make_empty_waiter()
        conn = transp._conn
        sock = transp._sock
        # sock_sendfile watches the fd itself while the transport stands aside
        conn._lend_fd()
        try:
            return await self.sock_sendfile(sock, file, offset, count, fallback=False)
        finally:
            conn._reclaim_fd()
            transp._reset_empty_waiter()
            if resume_reading:
                transp.resume_reading()

    # -- closing

    def close(self):
        """Close the loop: its executor, signal handlers and the core's fds.

        Raises RuntimeError if the loop is running; closing twice does nothing.
        """
        if self.is_running():
            raise RuntimeError("Cannot close a running event loop")
        if self.is_closed():
            return
        super().close()
        self._close_core()

    # -- name resolution: numeric hosts need no thread

    async def getaddrinfo(self, host, port, *, family=0, type=0, proto=0, flags=0):
        """`socket.getaddrinfo` without blocking the loop.

        Numeric hosts and ports are answered at once (outside debug mode);
        anything else goes through the executor as on the stock loop. Raises
        `socket.gaierror` (or the TypeError/UnicodeError) the stock loop raises.
        """
        if not self._debug:
            try:
                # The C library answers numeric hosts and ports without any
                # lookup, so this cannot block; anything else (a name, a
                # service, an error) takes the stock path through the executor.
                # int(): from 3.11 an IntFlag `|` would turn a bad value
                # such as -1 into a valid set of flags
                return socket.getaddrinfo(
                    host, port, family, type, proto,
                    int(flags) | int(socket.AI_NUMERICHOST) | int(socket.AI_NUMERICSERV))
            except (socket.gaierror, UnicodeError, TypeError):
                pass
        return await super().getaddrinfo(
            host, port, family=family, type=type, proto=proto, flags=flags)

    if sys.version_info < (3, 12):
        async def shutdown_default_executor(self, timeout=None):
            """Schedule the shutdown of the default executor (3.12's API).

            Waits at most `timeout` seconds for its threads to join, then
            warns with RuntimeWarning, as 3.12 does.
            """
            self._executor_shutdown_called = True
            if self._default_executor is None:
                return
            future = self.create_future()
            thread = threading.Thread(target=self._do_shutdown, args=(future,))
            thread.start()
            try:
                await asyncio.wait_for(asyncio.shield(future), timeout)
            except asyncio.TimeoutError:
                warnings.warn("The executor did not finishing joining "
                              f"its threads within {timeout} seconds.",
                              RuntimeWarning, stacklevel=2)
                self._default_executor.shutdown(wait=False)
            else:
                thread.join()

        def _do_shutdown(self, future):
            try:
                self._default_executor.shutdown(wait=True)
                if not self.is_closed():
                    self.call_soon_threadsafe(future.set_result, None)
            except Exception as ex:
                if not self.is_closed():
                    self.call_soon_threadsafe(future.set_exception, ex)
