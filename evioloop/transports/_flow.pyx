# cython: language_level=3
"""Layer 3: what the fd owners of streams, datagrams and pipes share.

`FlowConn` is the cdef base of `StreamConn` (_streamconn.pyx), `DgramConn`
(_dgram.pyx) and the pipe ends (_pipe.pyx). It keeps what asyncio's transports
agree on, whatever the fd is: connection_made in the context the transport was
made in, the output queue with asyncio's water marks (`_FlowControlMixin`:
pause_writing above the high mark, resume_writing at or below the low one, a
failing one reported, not fatal), the close that waits for the output to
drain, the fatal error that drops it, and connection_lost, after which
`release` closes the fd through the subclass's `close_now` (a socket, a pipe).

It also keeps pause_reading/resume_reading, and the start of the transports'
repr. `ConnTransport`, `ReadFlowTransport` and `WriteFlowTransport` are the
Python face of the same state, mixed into the asyncio transport classes the
protocols see; `SocketTransport` adds what the stream and datagram transports
show alike (the stock _SelectorTransport's repr and ResourceWarning).
"""
from evioloop._poller cimport EVP_READ, EVP_WRITE
from evioloop.transports._outq cimport outq_clear, outq_free
from evioloop.core._context cimport PyContext_Enter, PyContext_Exit

import warnings
from asyncio import base_events as _base_events
from asyncio import constants as _constants
from asyncio import futures as _futures


cdef object logger = _base_events.logger
cdef object _set_result_unless_cancelled = _futures._set_result_unless_cancelled
cdef int LOG_THRESHOLD_FOR_CONNLOST_WRITES = _constants.LOG_THRESHOLD_FOR_CONNLOST_WRITES


cdef class FlowConn(FdOwner):
    """Fields in _flow.pxd."""

    def __cinit__(self):
        self.high_water = 64 * 1024
        self.low_water = 16 * 1024

    def __dealloc__(self):
        outq_free(&self.outq)

    cdef int update_interest(self) except -1:
        return 0

    # -- the output, as flow control and close see it: the byte queue here;
    # a datagram transport keeps its own queue and overrides these

    cdef Py_ssize_t output_size(self):
        """What get_write_buffer_size() reports, against the water marks."""
        return self.outq.size

    cdef bint has_output(self):
        """Something is queued: close() waits for it."""
        return self.outq.size != 0

    cdef int drop_output(self) except -1:
        """Drop what is queued (an abort, a fatal error)."""
        if self.outq.size:
            outq_clear(&self.outq)
        return 0

    cdef int set_protocol(self, protocol) except -1:
        self.protocol = protocol
        return 0

    # -- reading: pause_reading/resume_reading, no-ops once closing

    cdef int pause_reading(self) except -1:
        if self.closing or self.paused:
            return 0
        self.paused = True
        self.update_interest()
        if self.loop._debug:
            logger.debug('%r pauses reading', self.transport)
        return 0

    cdef int resume_reading(self) except -1:
        if self.closing or not self.paused:
            return 0
        self.paused = False
        self.reading_resumed()
        self.update_interest()
        if self.loop._debug:
            logger.debug('%r resumes reading', self.transport)
        return 0

    cdef int reading_resumed(self) except -1:
        """What a subclass does when reading resumes, before it is watched again."""
        return 0

    def _start(self, waiter):
        """evio's loopOpened: connection_made, then input; then wake the waiter."""
        self.connection_made()
        self.update_interest()
        if waiter is not None:
            _set_result_unless_cancelled(waiter, None)

    cdef int connection_made(self) except -1:
        try:
            PyContext_Enter(self.ctx_made)
            try:
                self.protocol.connection_made(self.transport)
            finally:
                PyContext_Exit(self.ctx_made)
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            # as a stock loop whose call_soon'd connection_made failed: the
            # error is reported and the transport carries on
            self.loop.call_exception_handler({
                'message': 'Exception in callback protocol.connection_made()',
                'exception': exc,
                'transport': self.transport,
                'protocol': self.protocol,
            })
        self.started = True
        return 0

    cdef int lost_write(self, str warning) except -1:
        # a write after the connection was lost: counted, and past a few of
        # them logged, as the stock transports do
        if self.conn_lost >= LOG_THRESHOLD_FOR_CONNLOST_WRITES:
            logger.warning(warning)
        self.conn_lost += 1
        return 0

    # -- the end: after the output drained, or at once

    cdef int close(self) except -1:
        """Stop taking input; connection_lost(None) once the output is sent."""
        if self.closing:
            return 0
        self.closing = True
        if self.has_output():
            return self.update_interest()   # the write step ends it
        self.drained_close()
        self.update_interest()
        self.loop.call_soon(self._call_connection_lost, None)
        return 0

    cdef int drained_close(self) except -1:
        """What a subclass does when close() finds nothing left to send."""
        return 0

    cdef bint quiet_error(self, exc):
        """True for an error that is only logged in debug mode (the peer's doing)."""
        return isinstance(exc, OSError)

    cdef int fatal_error(self, exc, str message) except -1:
        if self.quiet_error(exc):
            if self.loop._debug:
                logger.debug('%r: %s', self.transport, message, exc_info=True)
        else:
            self.loop.call_exception_handler({
                'message': message,
                'exception': exc,
                'transport': self.transport,
                'protocol': self.protocol,
            })
        return self.force_close(exc)

    cdef int force_close(self, exc) except -1:
        """Drop the output; connection_lost(exc) in the next step."""
        self.closing = True
        self.drop_output()
        self.writing = False
        self.update_interest()
        self.loop.call_soon(self._call_connection_lost, exc)
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
            self.release()
        return 0

    cdef int release(self) except -1:
        """After connection_lost: close the fd and drop the protocol."""
        self.close_now()
        self.protocol = None
        return 0

    cdef int close_now(self) except -1:
        """Close the fd now, without a callback (release, an unclosed transport
        collected). Each kind of fd owner closes its own object: a socket, a pipe."""
        raise NotImplementedError

    # -- flow control: asyncio's _FlowControlMixin

    cdef int maybe_pause_protocol(self) except -1:
        if self.output_size() <= self.high_water or self.protocol_paused:
            return 0
        self.protocol_paused = True
        return self.tell_protocol('pause_writing')

    cdef int maybe_resume_protocol(self) except -1:
        if not self.protocol_paused or self.output_size() > self.low_water:
            return 0
        self.protocol_paused = False
        return self.tell_protocol('resume_writing')

    cdef int tell_protocol(self, str what) except -1:
        # a failing pause_writing/resume_writing is reported, not fatal
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

    cdef int set_limits(self, high, low) except -1:
        if high is None:
            high = 64 * 1024 if low is None else 4 * low
        if low is None:
            low = high // 4
        if not high >= low >= 0:
            raise ValueError(f'high ({high!r}) must be >= low ({low!r}) must be >= 0')
        self.high_water = high
        self.low_water = low
        return self.maybe_pause_protocol()

    def _set_write_buffer_limits(self, high=None, low=None):
        self.set_limits(high, low)

    cdef list repr_info(self, str name):
        """How the stock transports' repr starts: the class, the state, the fd."""
        info = [name]
        if self.closed:
            info.append('closed')
        elif self.closing:
            info.append('closing')
        info.append(f'fd={self.fd}')
        return info


class ConnTransport:
    """What every transport over a FlowConn answers the same way."""

    __slots__ = ()

    @property
    def _loop(self):
        return (<FlowConn>self._conn).loop

    def set_protocol(self, protocol):
        (<FlowConn>self._conn).set_protocol(protocol)

    def get_protocol(self):
        return (<FlowConn>self._conn).protocol

    def is_closing(self):
        return (<FlowConn>self._conn).closing


class ReadFlowTransport:
    """A read transport's pause_reading/resume_reading, kept by its FlowConn."""

    __slots__ = ()

    def is_reading(self):
        cdef FlowConn c = <FlowConn>self._conn
        return not c.closing and not c.paused

    def pause_reading(self):
        (<FlowConn>self._conn).pause_reading()

    def resume_reading(self):
        (<FlowConn>self._conn).resume_reading()

    @property
    def _paused(self):
        # the stock transports' flag (pause_reading() called, not resumed yet):
        # Python 3.10's SSLProtocol reads it on the transport under it, after a
        # short TLS write, to resume reading
        return (<FlowConn>self._conn).paused


class WriteFlowTransport:
    """A write transport's flow control, kept by its FlowConn."""

    __slots__ = ()

    @property
    def _protocol_paused(self):
        return (<FlowConn>self._conn).protocol_paused

    # the stock _FlowControlMixin's marks, read by stock code and tests
    @property
    def _high_water(self):
        return (<FlowConn>self._conn).high_water

    @property
    def _low_water(self):
        return (<FlowConn>self._conn).low_water

    def set_write_buffer_limits(self, high=None, low=None):
        (<FlowConn>self._conn).set_limits(high, low)

    def get_write_buffer_limits(self):
        cdef FlowConn c = <FlowConn>self._conn
        return (c.low_water, c.high_water)


class SocketTransport:
    """What the stream and datagram transports share: the stock
    _SelectorTransport's repr, its ResourceWarning, its _force_close."""

    __slots__ = ()

    def _force_close(self, exc):
        (<FlowConn>self._conn).force_close(exc)

    def __repr__(self):
        cdef FlowConn c = <FlowConn>self._conn
        info = c.repr_info(type(self).__name__)
        if not c.closed and not c.loop._closed:
            info.append('read=polling' if c.mask & EVP_READ else 'read=idle')
            state = 'polling' if c.mask & EVP_WRITE else 'idle'
            info.append(f'write=<{state}, bufsize={c.output_size()}>')
        return '<{}>'.format(' '.join(info))

    def __del__(self):
        cdef FlowConn c = <FlowConn>self._conn
        if not c.closed:
            warnings.warn(f"unclosed transport {self!r}", ResourceWarning, source=self)
            c.close_now()
