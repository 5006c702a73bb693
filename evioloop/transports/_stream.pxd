# Layer 3: what other layers may build on. The Events API's listener
# (events/_conn.pyx) is a Listener that opens its own kind of connection.
from evioloop.core._core cimport CoreLoop, FdOwner


cdef class Listener(FdOwner):
    """A listening socket's owner: evio's loopAccept."""
    cdef CoreLoop loop
    cdef object sock
    cdef object protocol_factory
    cdef object server
    cdef int backlog
    cdef int family, socktype, proto
    cdef object retry_handle
    cdef object ctx                 # the context create_server ran in

    cdef int open_conn(self, int cfd, peername) except -1
    cdef object make_conn(self, int cfd, peername)
