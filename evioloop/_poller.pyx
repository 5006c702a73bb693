# cython: language_level=3
"""Layer 1: the kernel interface and nothing else.

A thin class over poller.h so that the loop core speaks evio's verbs (add,
modify, delete, trigger, wait) and never a kernel API directly.
"""
from libc.errno cimport errno, EINTR
from libc.stdlib cimport calloc, free
from cpython.exc cimport PyErr_SetFromErrno, PyErr_CheckSignals

BACKEND = EVP_BACKEND.decode()


cdef class Poller:

    def __cinit__(self):
        self.p = <evp_poller *>calloc(1, sizeof(evp_poller))
        if self.p is NULL:
            raise MemoryError()
        self.p.kq = -1
        self.p.wakefd = -1
        if evp_open(self.p) < 0:
            PyErr_SetFromErrno(OSError)

    def __dealloc__(self):
        if self.p is not NULL:
            evp_close(self.p)
            free(self.p)
            self.p = NULL

    def close(self):
        if not self.closed:
            self.closed = True
            evp_close(self.p)

    def fileno(self):
        return self.p.kq

    cdef int add(self, int fd, uint32_t mask, uint64_t data) except -1:
        if evp_add(self.p, fd, mask, data) < 0:
            PyErr_SetFromErrno(OSError)
        return 0

    cdef int mod(self, int fd, uint32_t old, uint32_t mask, uint64_t data) except -1:
        if evp_mod(self.p, fd, old, mask, data) < 0:
            PyErr_SetFromErrno(OSError)
        return 0

    cdef int delete(self, int fd, uint32_t old):
        # Errors are expected here (the fd may already be closed) and ignored,
        # as the stdlib's selectors ignore them on unregister.
        return evp_del(self.p, fd, old)

    cdef int reopen(self) except -1:
        if evp_reopen(self.p) < 0:
            PyErr_SetFromErrno(OSError)
        return 0

    cdef int trigger(self):
        if self.closed:
            return 0
        return evp_trigger(self.p)

    cdef int wait(self, int timeout_ms) except -2:
        """Block for at most timeout_ms (-1: forever); return the event count.

        EINTR runs the Python signal handlers (a KeyboardInterrupt raised there
        propagates) and returns 0: the loop recomputes its timeout and waits
        again, as PEP 475 asks."""
        cdef int n
        if timeout_ms == 0:
            # a poll that cannot block is cheaper than giving up the GIL
            n = evp_wait(self.p, 0)
        else:
            with nogil:
                n = evp_wait(self.p, timeout_ms)
        if n < 0:
            if errno == EINTR:
                if PyErr_CheckSignals() < 0:
                    return -2
                return 0
            PyErr_SetFromErrno(OSError)
        return n
