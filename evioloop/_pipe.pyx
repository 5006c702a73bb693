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
    write end  `WritePipe`: write() goes to the kernel at once when nothing is
               queued (as the stock transport does: no batching); what the
               kernel refuses is queued as bytes objects and sent with one
               writev once the fd is writable. A pipe's or a socket's write
               end is also watched for reading: the kernel reports it readable
               (POLLERR/POLLHUP) once the reading side is closed, which is
               connection_lost(BrokenPipeError) if output was still queued,
               connection_lost(None) if not.

The objects the protocol sees are `ReadPipeTransport` and
`WritePipeTransport`, real asyncio transport classes that forward to their
owner (a compiled class cannot inherit from asyncio's transports).
"""
from libc.errno cimport errno, EAGAIN, EINTR, EIO
from posix.unistd cimport read as c_read, write as c_write
from posix.uio cimport iovec, writev
from cpython.bytes cimport PyBytes_FromStringAndSize, PyBytes_AS_STRING, PyBytes_GET_SIZE
from cpython.buffer cimport PyObject_GetBuffer, PyBuffer_Release, PyBUF_SIMPLE

from evioloop._core cimport CoreLoop, FdOwner
from evioloop._outq cimport (
    OutQueue, OUTQ_MAX_IOV, outq_push, outq_pop, outq_clear, outq_free)
from evioloop._sockutil cimport EWOULDBLOCK, os_error
from evioloop._poller cimport EVP_READ, EVP_WRITE

import os
import stat
import sys
from asyncio import base_events as _base_events
from asyncio import constants as _constants
from asyncio import futures as _futures
from asyncio import transports as _transports
import warnings

cdef extern from "Python.h":
    int PyContext_Enter(object ctx) except -1
    int PyContext_Exit(object ctx) except -1
    object PyContext_CopyCurrent()

cdef object _set_result_unless_cancelled = _futures._set_result_unless_cancelled
cdef object logger = _base_events.logger
cdef int LOG_THRESHOLD_FOR_CONNLOST_WRITES = _constants.LOG_THRESHOLD_FOR_CONNLOST_WRITES
# the stock transport's reader trick (see WritePipe) does not work for pipes on AIX
cdef bint PIPE_READ_TRICK = not sys.platform.startswith('aix')


cdef int call_in(object ctx, object callback, object arg) except -1:
    PyContext_Enter(ctx)
    try:
        callback(arg)
    finally:
        PyContext_Exit(ctx)
    return 0


cdef class PipeEnd(FdOwner):
    """What both ends share: the fd, the protocol, the contexts, the close."""
    cdef CoreLoop loop
    cdef object pipe                # the caller's object (a file, a socket, ...)
    cdef object protocol
    cdef readonly object transport
    cdef bint started               # connection_made was called
    cdef bint closing
    cdef bint closed                # the pipe is closed
    cdef object ctx_made            # the context of connection_made
    cdef dict extra

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

    cdef int update_interest(self) except -1:
        return 0

    cdef int connection_made(self) except -1:
        try:
            call_in(self.ctx_made, self.protocol.connection_made, self.transport)
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            # the stock loop runs it as a callback: reported, and the
            # transport carries on
            self.loop.call_exception_handler({
                'message': 'Exception in callback protocol.connection_made()',
                'exception': exc,
                'transport': self.transport,
                'protocol': self.protocol,
            })
        self.started = True
        return 0

    cdef int report_callback_error(self, str what, exc) except -1:
        # what the stock loop's Handle reports for a failing fd callback
        self.loop.call_exception_handler({
            'message': f'Exception in callback {type(self.transport).__name__}.{what}()',
            'exception': exc,
            'transport': self.transport,
            'protocol': self.protocol,
        })
        return 0

    def _call_connection_lost(self, exc):
        self.call_connection_lost(exc)

    cdef int call_connection_lost(self, exc) except -1:
        if self.closed:
            return 0
        try:
            if self.protocol is not None:
                self.protocol.connection_lost(exc)
        finally:
            self.close_pipe()
            self.protocol = None
        return 0

    cdef int close_pipe(self) except -1:
        # out of the fd table and the kernel queue first, then closed: the fd
        # number may be reused the moment it is closed
        if self.closed or self.loop is None:    # closed, or never opened
            return 0
        self.closed = True
        self.loop.unregister(self)
        if self.pipe is not None:
            self.pipe.close()
        return 0

    def _close_pipe(self):
        self.close_pipe()


cdef class ReadPipe(PipeEnd):
    cdef object proto_data_received
    cdef bint paused
    cdef object ctx_io              # the context of the reads

    def _start(self, waiter):
        self.connection_made()
        self.update_interest()
        if waiter is not None:
            _set_result_unless_cancelled(waiter, None)

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

    cdef int fatal_error(self, exc, str message) except -1:
        # EIO is how a pty's master end reports that the other end is closed
        if isinstance(exc, OSError) and exc.errno == EIO:
            if self.loop._debug:
                logger.debug('%r: %s', self.transport, message, exc_info=True)
        else:
            self.loop.call_exception_handler({
                'message': message,
                'exception': exc,
                'transport': self.transport,
                'protocol': self.protocol,
            })
        return self.close_with(exc)

    cdef int close_with(self, exc) except -1:
        self.closing = True
        self.update_interest()
        self.loop.call_soon(self._call_connection_lost, exc)
        return 0

    def __repr__(self):
        return f'<ReadPipe fd={self.fd} mask={self.mask}>'


class ReadPipeTransport(_transports.ReadTransport):
    """asyncio.ReadTransport over the read end of a pipe (or a socket, a tty)."""

    def __init__(self, conn):
        self._conn = conn

    @property
    def _extra(self):
        return (<ReadPipe>self._conn).extra

    @property
    def _pipe(self):
        cdef ReadPipe c = <ReadPipe>self._conn
        return None if c.closed else c.pipe

    @_pipe.setter
    def _pipe(self, value):
        # the stock transport's attribute: None takes the pipe away from the
        # transport (it will neither warn about it nor close it)
        (<ReadPipe>self._conn).pipe = value

    @property
    def _loop(self):
        return (<ReadPipe>self._conn).loop

    @property
    def _paused(self):
        return (<ReadPipe>self._conn).paused

    def is_reading(self):
        cdef ReadPipe c = <ReadPipe>self._conn
        return not c.paused and not c.closing

    def pause_reading(self):
        cdef ReadPipe c = <ReadPipe>self._conn
        if c.closing or c.paused:
            return
        c.paused = True
        c.update_interest()
        if c.loop._debug:
            logger.debug('%r pauses reading', self)

    def resume_reading(self):
        cdef ReadPipe c = <ReadPipe>self._conn
        if c.closing or not c.paused:
            return
        c.paused = False
        # the stock transport adds its reader anew: the reads run in a copy
        # of the context of whoever resumed them
        c.ctx_io = PyContext_CopyCurrent()
        c.update_interest()
        if c.loop._debug:
            logger.debug('%r resumes reading', self)

    def set_protocol(self, protocol):
        (<ReadPipe>self._conn).protocol = protocol

    def get_protocol(self):
        return (<ReadPipe>self._conn).protocol

    def is_closing(self):
        return (<ReadPipe>self._conn).closing

    def close(self):
        cdef ReadPipe c = <ReadPipe>self._conn
        if not c.closing:
            c.close_with(None)

    def __repr__(self):
        cdef ReadPipe c = <ReadPipe>self._conn
        info = [type(self).__name__]
        if c.closed:
            info.append('closed')
        elif c.closing:
            info.append('closing')
        info.append(f'fd={c.fd}')
        if c.closed:
            pass
        elif c.loop._closed:
            info.append('open')     # the stock transport once its loop is closed
        else:
            info.append('polling' if c.mask & EVP_READ else 'idle')
        return '<{}>'.format(' '.join(info))

    def __del__(self):
        cdef ReadPipe c = <ReadPipe>self._conn
        if c.pipe is not None and not c.closed:
            warnings.warn(f'unclosed transport {self!r}', ResourceWarning, source=self)
            c.close_pipe()


cdef inline Py_ssize_t outq_write(OutQueue *q, int fd):
    """One write(v) of the queue's head; the bytes written, or -1 with errno set."""
    cdef iovec iov[OUTQ_MAX_IOV]
    cdef Py_ssize_t n, nchunks, i, size, written
    nchunks = q.len
    if nchunks == 1:
        n = c_write(fd, PyBytes_AS_STRING(<object>q.chunks[0]) + q.sent,
                    PyBytes_GET_SIZE(<object>q.chunks[0]) - q.sent)
    else:
        if nchunks > OUTQ_MAX_IOV:
            nchunks = OUTQ_MAX_IOV
        for i in range(nchunks):
            iov[i].iov_base = PyBytes_AS_STRING(<object>q.chunks[i])
            iov[i].iov_len = PyBytes_GET_SIZE(<object>q.chunks[i])
        iov[0].iov_base = <char *>iov[0].iov_base + q.sent
        iov[0].iov_len -= q.sent
        n = writev(fd, iov, <int>nchunks)
    if n < 0:
        return -1
    written = n
    q.size -= n
    n += q.sent
    i = 0
    while n > 0:
        size = PyBytes_GET_SIZE(<object>q.chunks[i])
        if n < size:
            break
        n -= size
        i += 1
    if i:
        outq_pop(q, i)
    q.sent = n
    return written


cdef class WritePipe(PipeEnd):
    cdef OutQueue outq              # what the kernel has not taken yet
    cdef int conn_lost
    cdef bint watch_peer            # the fd kind reports the reader closing
    cdef bint reading               # watching for the reader closing
    cdef bint writing               # waiting for the fd to become writable
    cdef object ctx_peer, ctx_write  # contexts of the two fd callbacks
    cdef Py_ssize_t high_water, low_water
    cdef bint protocol_paused

    def __cinit__(self):
        self.high_water = 64 * 1024
        self.low_water = 16 * 1024

    def __dealloc__(self):
        outq_free(&self.outq)

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
            return self.close_with(BrokenPipeError())
        return self.close_with(None)

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
            if self.conn_lost >= LOG_THRESHOLD_FOR_CONNLOST_WRITES:
                logger.warning('pipe closed by peer or '
                               'os.write(pipe, data) raised exception.')
            self.conn_lost += 1
            return 0
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
                self.outq.sent = n
                self.outq.size -= n
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
        if outq_write(&self.outq, self.fd) < 0:
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

    cdef int write_eof(self) except -1:
        if self.closing:
            return 0
        self.closing = True
        if not self.outq.size:
            self.reading = False
            self.update_interest()
            self.loop.call_soon(self._call_connection_lost, None)
        return 0

    cdef int fatal_error(self, exc, str message) except -1:
        if isinstance(exc, OSError):
            if self.loop._debug:
                logger.debug('%r: %s', self.transport, message, exc_info=True)
        else:
            self.loop.call_exception_handler({
                'message': message,
                'exception': exc,
                'transport': self.transport,
                'protocol': self.protocol,
            })
        return self.close_with(exc)

    cdef int close_with(self, exc) except -1:
        self.closing = True
        if self.outq.size:
            outq_clear(&self.outq)
        self.writing = False
        self.reading = False
        self.update_interest()
        self.loop.call_soon(self._call_connection_lost, exc)
        return 0

    # -- flow control: asyncio's _FlowControlMixin

    cdef int maybe_pause_protocol(self) except -1:
        if self.outq.size <= self.high_water or self.protocol_paused:
            return 0
        self.protocol_paused = True
        return self.tell_protocol('pause_writing')

    cdef int maybe_resume_protocol(self) except -1:
        if not self.protocol_paused or self.outq.size > self.low_water:
            return 0
        self.protocol_paused = False
        return self.tell_protocol('resume_writing')

    cdef int tell_protocol(self, str what) except -1:
        try:
            getattr(self.protocol, what)()
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self.loop.call_exception_handler({
                'message': f'protocol.{what}() failed',
                'exception': exc,
                'transport': self.transport,
                'protocol': self.protocol,
            })
        return 0

    def _set_write_buffer_limits(self, high=None, low=None):
        if high is None:
            high = 64 * 1024 if low is None else 4 * low
        if low is None:
            low = high // 4
        if not high >= low >= 0:
            raise ValueError(f'high ({high!r}) must be >= low ({low!r}) must be >= 0')
        self.high_water = high
        self.low_water = low

    def __repr__(self):
        return f'<WritePipe fd={self.fd} mask={self.mask}>'


class WritePipeTransport(_transports._FlowControlMixin, _transports.WriteTransport):
    """asyncio.WriteTransport over the write end of a pipe (or a socket, a tty)."""

    def __init__(self, conn):
        self._conn = conn

    @property
    def _extra(self):
        return (<WritePipe>self._conn).extra

    @property
    def _pipe(self):
        cdef WritePipe c = <WritePipe>self._conn
        return None if c.closed else c.pipe

    @_pipe.setter
    def _pipe(self, value):
        # the stock transport's attribute: None takes the pipe away from the
        # transport (it will neither warn about it nor close it)
        (<WritePipe>self._conn).pipe = value

    @property
    def _loop(self):
        return (<WritePipe>self._conn).loop

    @property
    def _protocol_paused(self):
        return (<WritePipe>self._conn).protocol_paused

    @property
    def _high_water(self):
        return (<WritePipe>self._conn).high_water

    @property
    def _low_water(self):
        return (<WritePipe>self._conn).low_water

    def write(self, data):
        (<WritePipe>self._conn).write(data)

    def get_write_buffer_size(self):
        return (<WritePipe>self._conn).outq.size

    def set_write_buffer_limits(self, high=None, low=None):
        cdef WritePipe c = <WritePipe>self._conn
        c._set_write_buffer_limits(high, low)
        c.maybe_pause_protocol()

    def get_write_buffer_limits(self):
        cdef WritePipe c = <WritePipe>self._conn
        return (c.low_water, c.high_water)

    def can_write_eof(self):
        return True

    def write_eof(self):
        (<WritePipe>self._conn).write_eof()

    def set_protocol(self, protocol):
        (<WritePipe>self._conn).protocol = protocol

    def get_protocol(self):
        return (<WritePipe>self._conn).protocol

    def is_closing(self):
        return (<WritePipe>self._conn).closing

    def close(self):
        cdef WritePipe c = <WritePipe>self._conn
        if not c.closed and not c.closing:
            # write_eof is all a write pipe needs to close
            c.write_eof()

    def abort(self):
        (<WritePipe>self._conn).close_with(None)

    def __repr__(self):
        cdef WritePipe c = <WritePipe>self._conn
        info = [type(self).__name__]
        if c.closed:
            info.append('closed')
        elif c.closing:
            info.append('closing')
        info.append(f'fd={c.fd}')
        if c.closed:
            pass
        elif c.loop._closed:
            info.append('open')     # the stock transport once its loop is closed
        else:
            info.append('polling' if c.mask & EVP_WRITE else 'idle')
            info.append(f'bufsize={c.outq.size}')
        return '<{}>'.format(' '.join(info))

    def __del__(self):
        cdef WritePipe c = <WritePipe>self._conn
        if c.pipe is not None and not c.closed:
            warnings.warn(f'unclosed transport {self!r}', ResourceWarning, source=self)
            c.close_pipe()


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
