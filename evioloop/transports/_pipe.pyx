# cython: language_level=3
"""Layer 3: pipe transports (connect_read_pipe, connect_write_pipe, subprocess pipes).

Each pipe end is one fd owner in the core's dispatch, as a stream connection
is (`_stream.pyx`), with the behaviour of CPython's `_UnixReadPipeTransport`
and `_UnixWritePipeTransport` (unix_events.py): the same checks and errors,
the same order of callbacks, the same flow control.

    read end   `ReadPipe`: read into the loop's shared buffer (evio's packet),
               one read per ready event of at most the stock max_size (256 KiB);
               EOF is eof_received, then connection_lost(None), each in its
               own step, as on the stock loop
    subprocess a child's pipes (the loop's subprocess transport connects them,
               nobody else holds their ends) hold PIPE_SIZE (256 KiB) instead
               of Linux's default 64 KiB: one read or write moves up to four
               times as much, with a quarter of the wake-ups of both processes
               (uvloop's children get socketpairs, larger still)
    write end  `WritePipe`: write() goes to the kernel at once when nothing is
               queued (as the stock transport does: no batching); what the
               kernel refuses is queued as bytes objects and sent with one
               writev once the fd is writable. A pipe's or a socket's write
               end is also watched for reading: the kernel reports it readable
               (POLLERR/POLLHUP) once the reading side is closed, which is
               connection_lost(BrokenPipeError) if output was still queued,
               connection_lost(None) if not.

Both ends are FlowConns (_flow.pyx), as a stream connection is: the same
connection_made, the same fatal error and connection_lost, and for the write
end the same output queue (_outq.pxd) and water marks.

The objects the protocol sees are `ReadPipeTransport` and
`WritePipeTransport`, real asyncio transport classes that forward to their
owner (a compiled class cannot inherit from asyncio's transports).
"""
from libc.errno cimport errno, EAGAIN, EINTR, EIO
from posix.unistd cimport read as c_read, write as c_write
from cpython.bytes cimport PyBytes_FromStringAndSize
from cpython.buffer cimport PyObject_GetBuffer, PyBuffer_Release, PyBUF_SIMPLE

from evioloop.core._core cimport CoreLoop
from evioloop.transports._flow cimport FlowConn
from evioloop.transports._outq cimport outq_push, outq_clear, outq_consume, outq_write
from evioloop.transports._sockutil cimport EWOULDBLOCK, os_error
from evioloop._poller cimport EVP_READ, EVP_WRITE
from evioloop.core._context cimport PyContext_Enter, PyContext_Exit, PyContext_CopyCurrent

import fcntl as _fcntl
import os
import stat
import sys
from asyncio import base_events as _base_events
from asyncio import base_subprocess as _base_subprocess
from asyncio import futures as _futures
from asyncio import transports as _transports
import warnings

from evioloop.transports._flow import ConnTransport, ReadFlowTransport, WriteFlowTransport


cdef object _set_result_unless_cancelled = _futures._set_result_unless_cancelled
cdef object logger = _base_events.logger
# the stock transport's reader trick (see WritePipe) does not work for pipes on AIX
cdef bint PIPE_READ_TRICK = not sys.platform.startswith('aix')
# what a subprocess's pipe is grown to where the kernel can (Linux): as much as
# one read takes into the loop's packet (the stock max_size). Per user, Linux
# lets unprivileged pipes grow only while their total stays under
# fs.pipe-user-pages-soft (64 MiB by default); past it the pipe keeps its size.
cdef int PIPE_SIZE = 256 * 1024
cdef object F_SETPIPE_SZ = getattr(_fcntl, 'F_SETPIPE_SZ', None)
cdef object F_GETPIPE_SZ = getattr(_fcntl, 'F_GETPIPE_SZ', None)
# the protocols base_subprocess connects a child's pipes to (the read one subclasses it)
cdef object SubprocessPipeProto = _base_subprocess.WriteSubprocessPipeProto


cdef int grow_pipe(int fd) except -1:
    """A child's pipe to PIPE_SIZE, if it is smaller and the kernel allows it."""
    if F_SETPIPE_SZ is None:
        return 0
    try:
        if _fcntl.fcntl(fd, F_GETPIPE_SZ) < PIPE_SIZE:
            _fcntl.fcntl(fd, F_SETPIPE_SZ, PIPE_SIZE)
    except OSError:
        pass            # EPERM past the user's limit: the default size does
    return 0


cdef class PipeEnd(FlowConn):
    """What both ends share beyond FlowConn: the pipe object, its checks, its close."""
    cdef object pipe                # the caller's object (a file, a socket, ...)

    cdef int open(self, CoreLoop loop, pipe, protocol, extra, bint write_end) except -1:
        cdef int fd = pipe.fileno()
        mode = os.fstat(fd).st_mode
        is_fifo = stat.S_ISFIFO(mode)
        is_sock = stat.S_ISSOCK(mode)
        if not (is_fifo or is_sock or stat.S_ISCHR(mode)):
            if write_end:
                raise ValueError('Pipe transport is only for '
                                 'pipes, sockets and character devices')
            raise ValueError('Pipe transport is for pipes/sockets only.')
        os.set_blocking(fd, False)
        if is_fifo and isinstance(protocol, SubprocessPipeProto):
            grow_pipe(fd)
        self.loop = loop
        self.fd = fd
        self.pipe = pipe
        self.protocol = protocol
        self.extra = dict(extra) if extra else {}
        self.extra['pipe'] = pipe
        # as the stock loop, which call_soon()s connection_made and adds the
        # fd's callbacks with separate handles: each runs in its own copy of
        # the context the transport was made in
        self.ctx_made = PyContext_CopyCurrent()
        loop.register(self, 0)
        return 1 if (is_sock or (is_fifo and PIPE_READ_TRICK)) else 0

    cdef int report_callback_error(self, str what, exc) except -1:
        # what the stock loop's Handle reports for a failing fd callback
        self.loop.call_exception_handler({
            'message': f'Exception in callback {type(self.transport).__name__}.{what}()',
            'exception': exc,
            'transport': self.transport,
            'protocol': self.protocol,
        })
        return 0

    cdef int close_now(self) except -1:
        # out of the fd table and the kernel queue first, then closed: the fd
        # number may be reused the moment it is closed
        if self.closed or self.loop is None:    # closed, or never opened
            return 0
        self.closed = True
        self.loop.unregister(self)
        if self.pipe is not None:
            self.pipe.close()
        return 0


cdef class ReadPipe(PipeEnd):
    cdef object proto_data_received
    cdef object ctx_io              # the context of the reads

    cdef int update_interest(self) except -1:
        if self.closed:
            return 0
        if self.started and not (self.paused or self.closing):
            self.loop.modify(self, EVP_READ)
        else:
            self.loop.modify(self, 0)
        return 0

    cdef int on_ready(self, unsigned int mask) except -1:
        PyContext_Enter(self.ctx_io)
        try:
            self.read_ready()
        finally:
            PyContext_Exit(self.ctx_io)
        return 0

    cdef int read_ready(self) except -1:
        cdef ssize_t n
        cdef int err
        if self.closing:
            return 0
        n = c_read(self.fd, self.loop.packet, self.loop.packet_size)
        if n < 0:
            err = errno
            if err == EAGAIN or err == EWOULDBLOCK or err == EINTR:
                return 0
            return self.fatal_error(os_error(err), 'Fatal read error on pipe transport')
        if n:
            data = PyBytes_FromStringAndSize(self.loop.packet, n)
            try:
                self.protocol.data_received(data)
            except (SystemExit, KeyboardInterrupt):
                raise
            except BaseException as exc:
                # as on the stock loop, where it fails the fd's callback: the
                # error is reported and the transport carries on reading
                self.report_callback_error('_read_ready', exc)
            return 0
        if self.loop._debug:
            logger.info('%r was closed by peer', self.transport)
        self.closing = True
        self.update_interest()
        # two steps, as the stock transport: eof_received, then connection_lost
        self.loop.call_soon(self.protocol.eof_received)
        self.loop.call_soon(self._call_connection_lost, None)
        return 0

    cdef bint quiet_error(self, exc):
        # EIO is how a pty's master end reports that the other end is closed
        return isinstance(exc, OSError) and exc.errno == EIO

    cdef int reading_resumed(self) except -1:
        # the stock transport adds its reader anew: the reads run in a copy
        # of the context of whoever resumed them
        self.ctx_io = PyContext_CopyCurrent()
        return 0

    def __repr__(self):
        return f'<ReadPipe fd={self.fd} mask={self.mask}>'


class PipeTransport(ConnTransport):
    """What both pipe transports show: the stock transports' attributes, the repr."""

    __slots__ = ()

    @property
    def _extra(self):
        return (<PipeEnd>self._conn).extra

    @property
    def _pipe(self):
        cdef PipeEnd c = <PipeEnd>self._conn
        return None if c.closed else c.pipe

    @_pipe.setter
    def _pipe(self, value):
        # the stock transport's attribute: None takes the pipe away from the
        # transport (it will neither warn about it nor close it)
        (<PipeEnd>self._conn).pipe = value

    def __repr__(self):
        cdef PipeEnd c = <PipeEnd>self._conn
        cdef bint write_end = isinstance(c, WritePipe)
        info = c.repr_info(type(self).__name__)
        if c.closed:
            pass
        elif c.loop._closed:
            info.append('open')     # the stock transport once its loop is closed
        else:
            info.append('polling' if c.mask & (EVP_WRITE if write_end else EVP_READ)
                        else 'idle')
            if write_end:
                info.append(f'bufsize={c.outq.size}')
        return '<{}>'.format(' '.join(info))

    def __del__(self):
        cdef PipeEnd c = <PipeEnd>self._conn
        if c.pipe is not None and not c.closed:
            warnings.warn(f'unclosed transport {self!r}', ResourceWarning, source=self)
            c.close_now()


class ReadPipeTransport(PipeTransport, ReadFlowTransport, _transports.ReadTransport):
    """asyncio.ReadTransport over the read end of a pipe (or a socket, a tty)."""

    def __init__(self, conn):
        self._conn = conn

    @property
    def _paused(self):
        return (<ReadPipe>self._conn).paused

    def close(self):
        cdef ReadPipe c = <ReadPipe>self._conn
        if not c.closing:
            c.force_close(None)


cdef class WritePipe(PipeEnd):
    cdef bint watch_peer            # the fd kind reports the reader closing
    cdef bint reading               # watching for the reader closing
    cdef object ctx_peer, ctx_write  # contexts of the two fd callbacks

    def _start(self, waiter):
        self.connection_made()
        if self.watch_peer and not self.closed:
            # as the stock transport, which adds this reader in a step of its
            # own after connection_made, whatever connection_made did
            self.reading = True
            self.ctx_peer = PyContext_CopyCurrent()
            self.update_interest()
        if waiter is not None:
            _set_result_unless_cancelled(waiter, None)

    cdef int update_interest(self) except -1:
        cdef unsigned int mask = 0
        if self.closed:
            return 0
        if self.reading:
            mask |= EVP_READ
        if self.writing:
            mask |= EVP_WRITE
        self.loop.modify(self, mask)
        return 0

    cdef int on_ready(self, unsigned int mask) except -1:
        # the stock selector loop runs the reader before the writer
        if mask & EVP_READ and self.reading:
            PyContext_Enter(self.ctx_peer)
            try:
                self.peer_closed()
            finally:
                PyContext_Exit(self.ctx_peer)
        if mask & EVP_WRITE and self.writing:
            PyContext_Enter(self.ctx_write)
            try:
                self.write_ready()
            finally:
                PyContext_Exit(self.ctx_write)
        return 0

    cdef int peer_closed(self) except -1:
        if self.loop._debug:
            logger.info('%r was closed by peer', self.transport)
        if self.outq.size:
            return self.force_close(BrokenPipeError())
        return self.force_close(None)

    # -- write

    cdef int write(self, data) except -1:
        cdef Py_buffer view
        cdef Py_ssize_t n
        cdef int err
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise AssertionError(repr(data))    # the stock transport asserts it
        if not data:
            return 0
        if self.conn_lost or self.closing:
            return self.lost_write('pipe closed by peer or '
                                   'os.write(pipe, data) raised exception.')
        if self.outq.size:
            # bytes are queued as they are; anything else the caller may
            # change once we return
            outq_push(&self.outq, <bytes>data if type(data) is bytes else bytes(data))
            return self.maybe_pause_protocol()
        # nothing queued: straight to the kernel, from the caller's memory
        try:
            PyObject_GetBuffer(data, &view, PyBUF_SIMPLE)
        except BufferError:
            data = bytes(data)
            PyObject_GetBuffer(data, &view, PyBUF_SIMPLE)
        try:
            n = c_write(self.fd, view.buf, view.len)
            if n < 0:
                err = errno
                if err != EAGAIN and err != EWOULDBLOCK and err != EINTR:
                    self.conn_lost += 1
                    self.fatal_error(os_error(err), 'Fatal write error on pipe transport')
                    return 0
                n = 0
            if n == view.len:
                return 0
            if type(data) is bytes:
                # queued as it is, what the kernel took counted as sent
                outq_push(&self.outq, <bytes>data)
                outq_consume(&self.outq, n)
            else:
                outq_push(&self.outq, PyBytes_FromStringAndSize(
                    <const char *>view.buf + n, view.len - n))
        finally:
            PyBuffer_Release(&view)
        self.writing = True
        # the stock transport adds its writer here: it runs in a copy of
        # this write's context
        self.ctx_write = PyContext_CopyCurrent()
        self.update_interest()
        return self.maybe_pause_protocol()

    cdef int write_ready(self) except -1:
        cdef int err
        if outq_write(&self.outq, self.fd, False) < 0:
            err = errno
            if err == EAGAIN or err == EWOULDBLOCK or err == EINTR:
                return 0
            outq_clear(&self.outq)
            self.conn_lost += 1
            self.writing = False
            self.update_interest()
            return self.fatal_error(os_error(err), 'Fatal write error on pipe transport')
        if self.outq.size:
            return 0
        self.writing = False
        self.update_interest()
        self.maybe_resume_protocol()        # may write again
        if self.closing:
            self.reading = False
            self.update_interest()
            self.call_connection_lost(None)
        return 0

    cdef int drained_close(self) except -1:
        # write_eof with nothing queued: the reader's closing no longer matters
        self.reading = False
        return 0

    cdef int force_close(self, exc) except -1:
        self.reading = False
        return FlowConn.force_close(self, exc)

    def __repr__(self):
        return f'<WritePipe fd={self.fd} mask={self.mask}>'


class WritePipeTransport(PipeTransport, WriteFlowTransport, _transports._FlowControlMixin,
                         _transports.WriteTransport):
    """asyncio.WriteTransport over the write end of a pipe (or a socket, a tty)."""

    def __init__(self, conn):
        self._conn = conn

    def write(self, data):
        (<WritePipe>self._conn).write(data)

    def get_write_buffer_size(self):
        return (<WritePipe>self._conn).outq.size

    def can_write_eof(self):
        return True

    def write_eof(self):
        (<WritePipe>self._conn).close()

    def close(self):
        cdef WritePipe c = <WritePipe>self._conn
        if not c.closed and not c.closing:
            # write_eof is all a write pipe needs to close
            c.close()

    def abort(self):
        (<WritePipe>self._conn).force_close(None)


def make_read_pipe_transport(CoreLoop loop, pipe, protocol, waiter=None, extra=None):
    """The transport for a pipe's read end (the stock _make_read_pipe_transport)."""
    cdef ReadPipe conn = ReadPipe()
    conn.transport = ReadPipeTransport(conn)
    conn.open(loop, pipe, protocol, extra, False)
    conn.ctx_io = PyContext_CopyCurrent()
    # as the stock loop: connection_made, reading and the waiter come next step
    loop.call_soon(conn._start, waiter)
    return conn.transport


def make_write_pipe_transport(CoreLoop loop, pipe, protocol, waiter=None, extra=None):
    """The transport for a pipe's write end (the stock _make_write_pipe_transport)."""
    cdef WritePipe conn = WritePipe()
    conn.transport = WritePipeTransport(conn)
    conn.watch_peer = conn.open(loop, pipe, protocol, extra, True)
    loop.call_soon(conn._start, waiter)
    return conn.transport
