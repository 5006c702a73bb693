# cython: language_level=3
"""Layer 3: a stream connection (TCP or Unix) and its transport.

Here evio's dispatch does its real work. A connection's owner (`StreamConn`,
made by `make_stream_transport` or by a `Listener` in _stream.pyx) takes each
ready event through the rest of evio's steps:

    opened  `start`: connection_made, then reading starts (waiter resolved)
    write   `write_ready`: flush the output buffer once the fd is writable
    action  `close`/`abort`/`write_eof`: close after flush, discard, half-close
    read    `read_ready`: recv into the loop's shared buffer (evio's packet)
            and hand data_received one copy, or fill a BufferedProtocol's
            own buffer with no copy at all

Output: `write` queues and the loop flushes every connection's queue once
before it blocks again (right after data_received when the write came from
there), so however many writes a protocol makes in one step they cost one
send/sendmsg. Only output that the kernel did not take registers write
interest. Flow control follows asyncio's water marks (FlowConn, _flow.pyx,
which the pipe ends share).

The object the protocol sees is `StreamTransport`, a real asyncio.Transport
subclass that forwards to its `StreamConn` (a compiled class cannot inherit
from asyncio.Transport: its __slots__ layout conflicts).
"""
from libc.errno cimport errno, EAGAIN, EINTR
from posix.unistd cimport close as close_fd
from cpython.bytes cimport PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.buffer cimport PyObject_GetBuffer, PyBuffer_Release, PyBUF_WRITABLE, PyBUF_SIMPLE

from evioloop.core._core cimport CoreLoop
from evioloop.transports._flow cimport FlowConn
from evioloop.transports._outq cimport outq_push, outq_clear, outq_send
from evioloop.transports._sockutil cimport EWOULDBLOCK, evs_recv, evs_send, evs_nodelay, os_error
from evioloop._poller cimport EVP_READ, EVP_WRITE
from evioloop.core._context cimport PyContext_Enter, PyContext_Exit, PyContext_CopyCurrent

import inspect
import socket
from asyncio import base_events as _base_events
from asyncio import constants as _constants
from asyncio import protocols as _protocols
from asyncio import transports as _transports
from asyncio import trsock as _trsock

from evioloop.transports._flow import (ConnTransport, ReadFlowTransport, SocketTransport,
                                       WriteFlowTransport)


# a bytearray/memoryview write this large, with nothing queued, is sent from
# the caller's memory instead of being copied into the queue
cdef Py_ssize_t DIRECT_SEND_MIN = 16 * 1024

cdef object BufferedProtocol = _protocols.BufferedProtocol
cdef object TransportSocket = _trsock.TransportSocket
cdef object logger = _base_events.logger
cdef int AF_INET = socket.AF_INET
cdef int AF_INET6 = socket.AF_INET6
cdef int AF_UNIX = socket.AF_UNIX
cdef int SOCK_STREAM = socket.SOCK_STREAM
# 3.13 tells the server which transport attaches (for close_clients); older
# versions only count them.
cdef bint SERVER_TRACKS_TRANSPORTS = (
    'transport' in inspect.signature(_base_events.Server._attach).parameters)


cdef class StreamConn(FlowConn):
    """Fields in _streamconn.pxd; the flow control and the end in FlowConn."""

    # -- opened

    cdef int init(self, CoreLoop loop, int fd, object sock, int family, int socktype,
                  int proto, object protocol, object extra, object server) except -1:
        self.loop = loop
        self.fd = fd
        self.sock = sock
        self.family = family
        self.socktype = socktype
        self.proto = proto
        self.extra = dict(extra) if extra else {}
        # The protocol's callbacks see the contextvars of whoever made the
        # connection, as on the stock loop, which runs connection_made in one
        # copy of that context and the reads in another.
        self.ctx_made = PyContext_CopyCurrent()
        self.ctx_io = PyContext_CopyCurrent()
        self.transport = StreamTransport(self)
        self.set_protocol(protocol)
        if (family == AF_INET or family == AF_INET6) and socktype == SOCK_STREAM:
            # as the stock loop: no Nagle, small writes go out at once
            evs_nodelay(fd)
        loop.register(self, 0)
        self.server = server
        if server is not None:
            if SERVER_TRACKS_TRANSPORTS:
                server._attach(self.transport)
            else:
                server._attach()
        return 0

    cdef int update_interest(self) except -1:
        cdef unsigned int mask = 0
        if self.closed:
            return 0
        if self.started and not (self.paused or self.closing or self.read_closed):
            mask |= EVP_READ
        if self.writing:
            mask |= EVP_WRITE
        self.loop.modify(self, mask)
        return 0

    cdef int set_protocol(self, protocol) except -1:
        self.protocol = protocol
        self.buffered = isinstance(protocol, BufferedProtocol)
        if self.buffered:
            self.proto_get_buffer = protocol.get_buffer
            self.proto_buffer_updated = protocol.buffer_updated
            self.proto_data_received = None
        else:
            self.proto_data_received = protocol.data_received
            self.proto_get_buffer = self.proto_buffer_updated = None
        return 0

    # -- dispatch

    cdef int on_ready(self, unsigned int mask) except -1:
        PyContext_Enter(self.ctx_io)
        try:
            self.io_step(mask)
        finally:
            PyContext_Exit(self.ctx_io)
        return 0

    cdef int io_step(self, unsigned int mask) except -1:
        if mask & EVP_WRITE and self.writing:
            self.send_buffered()
        if mask & EVP_READ and self.mask & EVP_READ:
            # What data_received writes goes out right after it returns, not
            # at the end of the iteration: the peer is waiting for it. While
            # reading, a write only marks the connection (no trip through the
            # loop's flush list).
            self.in_read = True
            try:
                self.read_ready()
            except BaseException:
                self.in_read = False
                if self.flush_queued:
                    self.flush_queued = False
                    self.loop.queue_flush(self)
                raise
            self.in_read = False
            if self.flush_queued:
                self.flush()
        return 0

    # -- read

    cdef int read_ready(self) except -1:
        cdef ssize_t n
        if self.conn_lost:
            return 0
        if self.buffered:
            return self.read_into_protocol_buffer()
        n = evs_recv(self.fd, self.loop.packet, self.loop.packet_size)
        if n < 0:
            if errno == EAGAIN or errno == EWOULDBLOCK or errno == EINTR:
                return 0
            self.fatal_error(os_error(errno), 'Fatal read error on socket transport')
            return 0
        if n == 0:
            return self.on_eof()
        data = PyBytes_FromStringAndSize(self.loop.packet, n)
        try:
            self.proto_data_received(data)
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self.fatal_error(exc, 'Fatal error: protocol.data_received() call failed.')
        return 0

    cdef int read_into_protocol_buffer(self) except -1:
        cdef Py_buffer view
        cdef ssize_t n
        cdef int err
        try:
            buf = self.proto_get_buffer(-1)
            if not len(buf):
                raise RuntimeError('get_buffer() returned an empty buffer')
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self.fatal_error(exc, 'Fatal error: protocol.get_buffer() call failed.')
            return 0
        try:
            PyObject_GetBuffer(buf, &view, PyBUF_WRITABLE)
        except BaseException as exc:
            self.fatal_error(exc, 'Fatal read error on socket transport')
            return 0
        n = evs_recv(self.fd, <char *>view.buf, view.len)
        err = errno
        PyBuffer_Release(&view)
        if n < 0:
            if err == EAGAIN or err == EWOULDBLOCK or err == EINTR:
                return 0
            self.fatal_error(os_error(err), 'Fatal read error on socket transport')
            return 0
        if n == 0:
            return self.on_eof()
        try:
            self.proto_buffer_updated(n)
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self.fatal_error(exc, 'Fatal error: protocol.buffer_updated() call failed.')
        return 0

    cdef int on_eof(self) except -1:
        if self.loop._debug:
            logger.debug("%r received EOF", self.transport)
        try:
            keep_open = self.protocol.eof_received()
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self.fatal_error(exc, 'Fatal error: protocol.eof_received() call failed.')
            return 0
        if keep_open:
            # the protocol may still write, but there is nothing more to read
            self.read_closed = True
            self.update_interest()
        else:
            self.close()
        return 0

    # -- write

    cdef int check_writable(self, str what) except -1:
        if self.eof:
            raise RuntimeError(f'Cannot call {what}() after write_eof()')
        if self.empty_waiter is not None:
            raise RuntimeError(f'unable to {what}; sendfile is in progress')
        return 0

    cdef int buffer_data(self, data) except -1:
        cdef bytes chunk
        if type(data) is bytes:
            chunk = <bytes>data
        elif isinstance(data, (bytearray, memoryview)):
            chunk = bytes(data)     # the caller may change it once we return
        else:
            raise TypeError(f'data argument must be a bytes-like object, '
                            f'not {type(data).__name__!r}')
        if PyBytes_GET_SIZE(chunk):
            outq_push(&self.outq, chunk)
        return 0

    cdef int write(self, data) except -1:
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f'data argument must be a bytes-like object, '
                            f'not {type(data).__name__!r}')
        self.check_writable('write')
        if not data:
            return 0
        if self.conn_lost:
            return self.lost_write('socket.send() raised exception.')
        if type(data) is not bytes and not self.outq.size and not self.writing:
            if self.send_direct(data):
                return 0
        self.buffer_data(data)
        return self.schedule_flush()

    cdef int send_direct(self, data) except -1:
        """A large bytearray or memoryview with nothing queued before it goes
        to the kernel now, from the caller's memory: only what the kernel
        refuses is copied (the caller may change its buffer once write()
        returns). Holding it for the end of the step would cost a copy of
        all of it. Returns 1 if it took the data, 0 to let the queue do it."""
        cdef Py_buffer view
        cdef Py_ssize_t n
        cdef int err
        try:
            PyObject_GetBuffer(data, &view, PyBUF_SIMPLE)
        except BufferError:
            return 0                        # not contiguous: the queue copies it
        try:
            if view.len < DIRECT_SEND_MIN:
                return 0                    # small: copying it is cheap, batch it
            n = evs_send(self.fd, <const char *>view.buf, view.len)
            if n < 0:
                err = errno
                if err != EAGAIN and err != EWOULDBLOCK and err != EINTR:
                    self.fatal_error(os_error(err), 'Fatal write error on socket transport')
                    return 1
                n = 0
            if n < view.len:
                outq_push(&self.outq, PyBytes_FromStringAndSize(
                    <const char *>view.buf + n, view.len - n))
        finally:
            PyBuffer_Release(&view)
        if self.outq.size:
            self.writing = True
            self.update_interest()
            self.maybe_pause_protocol()
        return 1

    cdef int writelines(self, list_of_data) except -1:
        self.check_writable('writelines')
        if self.conn_lost:
            return self.lost_write('socket.send() raised exception.')
        for data in list_of_data:
            self.buffer_data(data)
        return self.schedule_flush()

    cdef int schedule_flush(self) except -1:
        if self.writing or not self.outq.size:
            pass                        # the writable event will flush it
        elif self.outq.size > self.high_water or self.loop._thread_id is None:
            # big output is not held back, and outside a running loop there
            # is no end of the step to wait for: send now, as the stock loop
            self.flush()
        elif self.in_read:
            self.flush_queued = True        # on_ready flushes after the read
        else:
            self.loop.queue_flush(self)
        self.maybe_pause_protocol()
        return 0

    cdef int settle(self) except -1:
        """Send what is held for the end of the step, before anyone looks at
        the buffer: held output is batching the stock loop would not show
        (its write() sends at once)."""
        if self.flush_queued:
            self.flush()
        return 0

    cdef int flush(self) except -1:
        self.flush_queued = False
        if self.writing or self.conn_lost or not self.outq.size:
            return 0
        return self.send_buffered()

    cdef int send_buffered(self) except -1:
        """Send as much of the buffer as the kernel takes, in one syscall."""
        cdef int err
        if self.conn_lost or self.closed:
            return 0
        if outq_send(&self.outq, self.fd) < 0:
            err = errno
            if err != EAGAIN and err != EWOULDBLOCK and err != EINTR:
                exc = os_error(err)
                outq_clear(&self.outq)
                self.writing = False
                self.fatal_error(exc, 'Fatal write error on socket transport')
                if self.empty_waiter is not None and not self.empty_waiter.done():
                    self.empty_waiter.set_exception(exc)
                return 0
        if self.outq.size:
            if not self.writing:
                self.writing = True
                self.update_interest()
            self.maybe_resume_protocol()
            return 0
        if self.writing:
            self.writing = False
            self.update_interest()
        self.maybe_resume_protocol()    # may write again
        if not self.outq.size:
            if self.empty_waiter is not None and not self.empty_waiter.done():
                self.empty_waiter.set_result(None)
            if self.closing:
                # in the next step, through the ready queue: an exception in
                # connection_lost must reach the handler, not the dispatch
                self.conn_lost += 1
                self.loop.call_soon(self._call_connection_lost, None)
            elif self.eof:
                self.shutdown_write()
        return 0

    cdef int shutdown_write(self) except -1:
        try:
            self.socket_object().shutdown(socket.SHUT_WR)
        except OSError as exc:
            self.fatal_error(exc, 'Fatal error on socket transport: shutdown() failed')
        return 0

    # -- actions: close after flush, abort, the end

    cdef int drained_close(self) except -1:
        # a write() from now on is a write after the connection was lost
        self.conn_lost += 1
        return 0

    cdef int abort(self) except -1:
        # Data written in this step has not met the kernel yet; the stock loop
        # would have sent it inside write(), so give it that one chance.
        if self.flush_queued:
            self.flush()
        return self.force_close(None)

    cdef int force_close(self, exc) except -1:
        if self.conn_lost:
            return 0
        self.conn_lost += 1
        return FlowConn.force_close(self, exc)

    cdef int release(self) except -1:
        FlowConn.release(self)
        self.proto_data_received = None
        self.proto_get_buffer = self.proto_buffer_updated = None
        server, self.server = self.server, None
        if server is not None:
            if SERVER_TRACKS_TRANSPORTS:
                server._detach(self.transport)
            else:
                server._detach()
        if self.empty_waiter is not None and not self.empty_waiter.done():
            self.empty_waiter.set_exception(
                ConnectionError("Connection is closed by peer"))
        return 0

    cdef int close_now(self) except -1:
        # out of the fd table and the kernel queue first, then closed: the fd
        # number may be reused the moment it is closed
        if self.closed:
            return 0
        # the addresses stay readable after close, as on the stock loop
        self.extra_info('sockname', None)
        self.extra_info('peername', None)
        self.closed = True
        self.loop.unregister(self)
        if self.sock is not None:
            self.sock.close()
        else:
            close_fd(self.fd)
        return 0

    # -- the socket, made only when someone asks for it

    cdef object socket_object(self):
        if self.sock is None and not self.closed:
            self.sock = socket.socket(self.family, self.socktype, self.proto, fileno=self.fd)
            self.sock.setblocking(False)
        return self.sock

    cdef object extra_info(self, str name, default):
        if name in self.extra:
            return self.extra[name]
        if self.closed or name not in ('socket', 'sockname', 'peername'):
            return default
        sock = self.socket_object()
        if name == 'socket':
            value = TransportSocket(sock)
        else:
            try:
                value = sock.getsockname() if name == 'sockname' else sock.getpeername()
            except OSError:
                value = None
        self.extra[name] = value
        return value

    def _lend_fd(self):
        """Leave the fd table for a while (sendfile watches the fd itself)."""
        self.loop.unregister(self)

    def _reclaim_fd(self):
        if not self.closed and self.loop.owner_of(self.fd) is None:
            self.loop.register(self, 0)
            self.update_interest()

    def __repr__(self):
        return f'<StreamConn fd={self.fd} mask={self.mask}>'


class StreamTransport(SocketTransport, ConnTransport, ReadFlowTransport,
                      WriteFlowTransport, _transports._FlowControlMixin):
    """asyncio.Transport over a TCP or Unix stream socket.

    A _FlowControlMixin, as the stock socket transport, because asyncio's
    sendfile fallback requires one; the flow control itself is StreamConn's.
    """

    _start_tls_compatible = True
    _sendfile_compatible = _constants._SendfileMode.TRY_NATIVE

    def __init__(self, conn):
        self._conn = conn

    def write(self, data):
        (<StreamConn>self._conn).write(data)

    def writelines(self, list_of_data):
        (<StreamConn>self._conn).writelines(list_of_data)

    def write_eof(self):
        cdef StreamConn c = <StreamConn>self._conn
        if c.closing or c.eof:
            return
        c.eof = True
        if not c.outq.size:
            c.shutdown_write()

    def can_write_eof(self):
        return True

    def close(self):
        (<StreamConn>self._conn).close()

    def abort(self):
        (<StreamConn>self._conn).abort()

    def get_extra_info(self, name, default=None):
        return (<StreamConn>self._conn).extra_info(name, default)

    def get_write_buffer_size(self):
        cdef StreamConn c = <StreamConn>self._conn
        c.settle()
        return c.outq.size

    # -- what the stock loop's sendfile and sslproto code expect

    @property
    def _sock(self):
        cdef StreamConn c = <StreamConn>self._conn
        return None if c.closed else c.socket_object()

    @property
    def _sock_fd(self):
        return (<StreamConn>self._conn).fd

    def _make_empty_waiter(self):
        cdef StreamConn c = <StreamConn>self._conn
        c.settle()
        if c.empty_waiter is not None:
            raise RuntimeError("Empty waiter is already set")
        c.empty_waiter = c.loop.create_future()
        if not c.outq.size:
            c.empty_waiter.set_result(None)
        return c.empty_waiter

    def _reset_empty_waiter(self):
        (<StreamConn>self._conn).empty_waiter = None


def make_stream_transport(CoreLoop loop, sock, protocol, waiter=None, extra=None, server=None):
    """The transport for a connected socket (the stock _make_socket_transport)."""
    cdef StreamConn conn = StreamConn()
    if not extra or 'peername' not in extra:
        # read now, as the stock transport does: after a reset it is gone
        try:
            extra = dict(extra or (), peername=sock.getpeername())
        except OSError:
            pass
    conn.init(loop, sock.fileno(), sock, sock.family, sock.type, sock.proto,
              protocol, extra, server)
    # as the stock loop: connection_made, reading and the waiter come next step
    loop.call_soon(conn._start, waiter)
    return conn.transport


def is_open_stream(owner):
    """True for a stream connection that is still in use (not closing)."""
    return isinstance(owner, StreamConn) and not (<StreamConn>owner).closing
