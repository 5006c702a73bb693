# cython: language_level=3
"""Layer 5, compiled: an Events connection over a host loop's transport.

Portable mode (evio's stdlib mode): on a loop that is not evioloop, each
connection is a `PortableConn`, the same `Conn` as native mode with its I/O
steps done through the host loop's transport instead of the fd: writes go
to `transport.write`, the water marks are the transport's (its
pause_writing/resume_writing reach `_water`), closing and detaching go
through `close`/`abort`. The asyncio.Protocol adapter (portable.py) forwards
every protocol callback to the methods at the end.
"""
from libc.stdint cimport uint64_t

from evioloop.events._conn cimport (Conn, OPEN, CLOSING, DETACHING, CLOSED)
from evioloop.events._server cimport ServerCore, CLOSE
from evioloop.core._context cimport PyContext_Enter, PyContext_Exit, PyContext_CopyCurrent

import os
import socket


cdef double COMPLETION_POLL = 0.005     # seconds; see _poll_completions


cdef class PortableConn(Conn):
    cdef object transport           # the host loop's transport
    cdef list held                  # input the host delivered while paused

    cdef int apply_options(self, opts) except -1:
        Conn.apply_options(self, opts)
        self.transport.set_write_buffer_limits(self.high, self.low)
        return 0

    cdef int update_interest(self) except -1:
        """The transport's reading (its pause_writing sets water_paused)."""
        if self.state >= CLOSED:
            return 0
        if self.state == OPEN and not self.user_paused and not self.water_paused:
            if not self.transport.is_reading():
                self.transport.resume_reading()
            if self.held:
                self.srv.loop.call_soon(self._deliver_held)
        elif self.transport.is_reading():
            self.transport.pause_reading()
        return 0

    cdef Py_ssize_t output_size(self):
        if self.transport is None:      # connection_lost came
            return 0
        return self.transport.get_write_buffer_size()

    cdef int send(self, object out) except -1:
        if self.state >= CLOSED or self.io_error is not None:
            return 0
        if type(out) is not bytes:
            out = bytes(out)
        if out:
            if self.srv.cb_pre_write is not None:
                self.srv.call_pre_write()
            self.written += len(out)
            self.transport.write(out)
        return 0

    cdef uint64_t sent_total(self):
        return self.written - self.output_size()

    cdef int completion_pending(self) except -1:
        self.srv.loop.call_later(COMPLETION_POLL, self._poll_completions)
        return 0

    def _poll_completions(self):
        # the host transport tells nobody when its buffer drains, so pending
        # completions are checked every few milliseconds
        if self.state >= CLOSED or not self.completions:
            return
        if not self.transport.is_closing():
            # a transport that met an error may have dropped its buffer
            # already: its connection_lost decides then
            self.run_completions()
        if self.completions:
            self.srv.loop.call_later(COMPLETION_POLL, self._poll_completions)

    cdef int begin_close(self, int kind) except -1:
        if self.state != OPEN:
            return 0
        self.state = CLOSING if kind == CLOSE else DETACHING
        if kind == CLOSE:
            self.transport.close()      # flushes; connection_lost(None) follows
            return 0
        if not self.transport.get_write_buffer_size():
            return self.finish_detach()
        self.transport.pause_reading()
        # resume_writing (below the low mark of 0) means drained
        self.transport.set_write_buffer_limits(0, 0)
        return 0

    cdef int close_io(self, bint abort) except -1:
        if not self.transport.is_closing():
            if abort or self.transport.get_write_buffer_size():
                self.transport.abort()
            else:
                self.transport.close()
        return 0

    cdef object detach_socket(self):
        fd = os.dup(self.transport.get_extra_info('socket').fileno())
        sock = socket.socket(fileno=fd)
        self.transport.abort()          # our dup keeps the connection
        return sock

    cdef int last_write(self) except -1:
        return 0                        # the transport tried when it was written

    cdef str mode(self):
        return 'portable'

    @property
    def local_addr(self):
        return self.transport.get_extra_info('sockname') if self.transport else None

    # -- the adapter's protocol callbacks land here

    def _feed(self, data):
        PyContext_Enter(self.ctx)
        try:
            self._feed_body(data)
        finally:
            PyContext_Exit(self.ctx)

    def _feed_body(self, data):
        if self.state != OPEN:
            return
        if self.user_paused or self.water_paused or self.held:
            # a host loop may read once more after pause_reading (uvloop
            # starts reading only after connection_made returns): keep it
            # for resume_reading, in order; the transport is paused, so at
            # most a read or two wait here
            if self.held is None:
                self.held = []
            self.held.append(data)
            if self.transport.is_reading():
                self.transport.pause_reading()
            return
        self.feed_now(data)

    cdef int feed_now(self, data) except -1:
        if not self.reuse:
            return self.deliver(data)
        view = memoryview(data)
        try:
            self.deliver(view)
        finally:
            try:
                view.release()
            except BufferError:
                pass        # exported further; it shows these same bytes
        return 0

    def _deliver_held(self):
        PyContext_Enter(self.ctx)
        try:
            self._deliver_held_body()
        finally:
            PyContext_Exit(self.ctx)

    def _deliver_held_body(self):
        while self.held and self.state == OPEN and not (self.user_paused or
                                                        self.water_paused):
            data = self.held.pop(0)
            if not self.held:
                self.held = None
            if data is None:
                self.begin_close(CLOSE)     # the EOF that came after them
            else:
                self.feed_now(data)

    def _eof(self):
        if self.held:
            # the EOF comes after what is held back
            self.held.append(None)
            return True
        if self.state == DETACHING:
            return True         # keep the socket for detached()
        if self.state == OPEN:
            self.state = CLOSING    # the transport closes after its output
        return False

    def _lost(self, exc):
        PyContext_Enter(self.ctx)
        try:
            self._lost_body(exc)
        finally:
            PyContext_Exit(self.ctx)

    def _lost_body(self, exc):
        self.srv.live_transports -= 1
        while exc is None and self.completions:
            # closed by the transport itself without an error (after our
            # CLOSE or an EOF): it wrote its whole buffer first
            _, callback = self.completions.popleft()
            self.srv.loop.call_soon(self.completed, callback, None)
        if self.state < CLOSED:
            if self.state == DETACHING:
                self.state = OPEN       # lost before it drained: a plain close
            self.finish_close(exc)
        if self.srv.live_transports == 0 and self.srv.transports_gone is not None:
            if not self.srv.transports_gone.done():
                self.srv.transports_gone.set_result(None)
        self.transport = None

    def _water(self, bint paused):
        if self.state == DETACHING:
            if not paused:
                # not from inside the transport's write step: aborting there
                # makes the stock transport report its loss twice
                self.srv.loop.call_soon(self._detach_drained)
            return
        self.water_paused = paused
        self.update_interest()

    def _detach_drained(self):
        PyContext_Enter(self.ctx)
        try:
            self._detach_drained_body()
        finally:
            PyContext_Exit(self.ctx)

    def _detach_drained_body(self):
        if self.state == DETACHING:
            self.finish_detach()


def open_portable(ServerCore srv, transport, int addr_index):
    """The Conn behind a host loop's transport (portable mode)."""
    cdef PortableConn c = PortableConn.__new__(PortableConn)
    c.srv = srv
    c.transport = transport
    c.addr_index = addr_index
    sock = transport.get_extra_info('socket')
    c.family = sock.family if sock is not None else -1
    c.fd = sock.fileno() if sock is not None else -1
    c._remote_addr = transport.get_extra_info('peername')
    srv.live_transports += 1
    # the callbacks run in a copy of the context of this connection_made
    # (a copy of listen()'s), whatever the host loop does with contexts
    c.ctx = PyContext_CopyCurrent()
    PyContext_Enter(c.ctx)
    try:
        c.opened_step()
    finally:
        PyContext_Exit(c.ctx)
    return c
