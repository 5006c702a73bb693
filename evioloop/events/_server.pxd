# Layer 5, compiled: what every connection of an Events server shares, and
# the reading of the callbacks' return values (_conn.pyx, _udp.pyx use them).
from evioloop.core._core cimport CoreLoop

# evio's actions, as numbers
cdef enum:
    NONE = 0
    DETACH = 1
    CLOSE = 2
    SHUTDOWN = 3

cdef enum:
    UDP_QUEUE_MAX = 1024    # datagrams waiting for a writable socket, per listener


cdef class PacketView:
    cdef char *buf
    cdef Py_ssize_t length
    cdef int exports
    cdef bint owns


cdef class ServerCore:
    cdef readonly object loop
    cdef CoreLoop core                 # the same loop, in native mode
    cdef object cb_opened, cb_closed, cb_detached, cb_pre_write, cb_data
    cdef readonly set conns
    cdef object server                 # the Python Server handle
    cdef PacketView pv
    cdef public bint stopping
    cdef public Py_ssize_t udp_dropped
    cdef double drop_logged_at
    cdef public long thread_id
    cdef public int live_transports    # portable: transports not yet lost
    cdef public object transports_gone  # portable: a future set when that is 0
    cdef object ctx                    # the context listen() ran in

    cdef int report(self, str what, exc, conn) except -1
    cdef int request_shutdown(self) except -1
    cdef int honour(self, object r, str what, conn) except -1
    cdef int call_pre_write(self) except -1
    cdef int count_dropped(self, str why) except -1


cdef int action_of(object a, str what) except -1
cdef int check_out(object out, str what) except -1
cdef object data_result(object r, int *action)
