# Layer 3: a stream connection's owner (_streamconn.pyx), declared for the
# listening side (_stream.pyx), which makes them for accepted sockets.
from evioloop.core._core cimport CoreLoop
from evioloop.transports._flow cimport FlowConn


cdef class StreamConn(FlowConn):
    cdef object sock                # the Python socket; None while we own a bare fd
    cdef int family, socktype, proto
    cdef object proto_data_received
    cdef object proto_get_buffer
    cdef object proto_buffer_updated
    cdef bint buffered              # the protocol is a BufferedProtocol
    cdef bint read_closed           # eof_received() asked to keep the connection open
    cdef bint eof                   # write_eof() called
    cdef bint in_read               # inside the read step (data_received & co)
    cdef object ctx_io              # the context of the I/O steps
    cdef object server
    cdef object empty_waiter

    cdef int init(self, CoreLoop loop, int fd, object sock, int family, int socktype,
                  int proto, object protocol, object extra, object server) except -1
    cdef int update_interest(self) except -1
    cdef int set_protocol(self, protocol) except -1
    cdef int on_ready(self, unsigned int mask) except -1
    cdef int io_step(self, unsigned int mask) except -1
    cdef int read_ready(self) except -1
    cdef int read_into_protocol_buffer(self) except -1
    cdef int on_eof(self) except -1
    cdef int check_writable(self, str what) except -1
    cdef int buffer_data(self, data) except -1
    cdef int write(self, data) except -1
    cdef int send_direct(self, data) except -1
    cdef int writelines(self, list_of_data) except -1
    cdef int schedule_flush(self) except -1
    cdef int settle(self) except -1
    cdef int flush(self) except -1
    cdef int send_buffered(self) except -1
    cdef int shutdown_write(self) except -1
    cdef int drained_close(self) except -1
    cdef int abort(self) except -1
    cdef int force_close(self, exc) except -1
    cdef int release(self) except -1
    cdef int close_now(self) except -1
    cdef object socket_object(self)
    cdef object extra_info(self, str name, default)
