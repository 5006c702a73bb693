# Layer 3: what every transport's fd owner shares (_flow.pyx): the protocol and
# its transport, connection_made in its own context, the output queue and
# asyncio's write flow control, the close once the output is flushed, the
# fatal error and connection_lost. StreamConn (_streamconn.pyx), the pipe
# ends (_pipe.pyx) and DgramConn (_dgram.pyx, whose output is a queue of
# datagrams: see output_size) derive from it.
from evioloop.core._core cimport CoreLoop, FdOwner
from evioloop.transports._outq cimport OutQueue


cdef class FlowConn(FdOwner):
    cdef CoreLoop loop
    cdef object protocol
    cdef readonly object transport  # the asyncio transport the protocol sees
    cdef bint started               # connection_made was called
    cdef bint closing
    cdef bint closed                # the fd is closed
    cdef int conn_lost              # connection_lost is due; writes since then
    cdef OutQueue outq              # what the kernel has not taken yet
    cdef bint writing               # waiting for the fd to become writable
    cdef Py_ssize_t high_water, low_water
    cdef bint protocol_paused       # pause_writing() was called
    cdef bint paused                # pause_reading() was called
    cdef object ctx_made            # the context of connection_made
    cdef dict extra

    cdef int update_interest(self) except -1
    cdef Py_ssize_t output_size(self)
    cdef bint has_output(self)
    cdef int drop_output(self) except -1
    cdef int pause_reading(self) except -1
    cdef int resume_reading(self) except -1
    cdef int reading_resumed(self) except -1
    cdef int set_protocol(self, protocol) except -1
    cdef int connection_made(self) except -1
    cdef int lost_write(self, str warning) except -1
    cdef int close(self) except -1
    cdef int drained_close(self) except -1
    cdef bint quiet_error(self, exc)
    cdef int fatal_error(self, exc, str message) except -1
    cdef int force_close(self, exc) except -1
    cdef int call_connection_lost(self, exc) except -1
    cdef int release(self) except -1
    cdef int close_now(self) except -1
    cdef int maybe_pause_protocol(self) except -1
    cdef int maybe_resume_protocol(self) except -1
    cdef int tell_protocol(self, str what) except -1
    cdef int set_limits(self, high, low) except -1
    cdef list repr_info(self, str name)
