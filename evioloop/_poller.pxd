# Layer 1: the poller, as a small class over poller.h (epoll or kqueue).
from libc.stdint cimport uint32_t, uint64_t

cdef extern from "poller.h" nogil:
    const char *EVP_BACKEND
    const uint32_t EVP_READ
    const uint32_t EVP_WRITE
    const int EVP_MAX_EVENTS

    ctypedef struct evp_event:
        uint64_t data
        uint32_t mask

    ctypedef struct evp_poller:
        int kq
        int wakefd
        int nout
        evp_event *out

    int evp_open(evp_poller *p)
    int evp_reopen(evp_poller *p)
    void evp_close(evp_poller *p)
    int evp_add(evp_poller *p, int fd, uint32_t mask, uint64_t data)
    int evp_mod(evp_poller *p, int fd, uint32_t old, uint32_t mask, uint64_t data)
    int evp_del(evp_poller *p, int fd, uint32_t old)
    int evp_trigger(evp_poller *p)
    int evp_wait(evp_poller *p, int timeout_ms)
    double evp_monotonic()


cdef class Poller:
    cdef evp_poller *p
    cdef readonly bint closed

    cdef int add(self, int fd, uint32_t mask, uint64_t data) except -1
    cdef int mod(self, int fd, uint32_t old, uint32_t mask, uint64_t data) except -1
    cdef int delete(self, int fd, uint32_t old)
    cdef int reopen(self) except -1
    cdef int trigger(self)
    cdef int wait(self, int timeout_ms) except -2
