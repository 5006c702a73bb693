# Layer 2, lower half: the fd table and its dispatch (split out of _core.pyx,
# whose CoreLoop adds the ready queue, the timers and the run loop on top).
# Other modules cimport FdOwner from evioloop.core._core, which re-exports it.
from libc.stdint cimport uint32_t, uint64_t

from evioloop._poller cimport Poller


cdef class FdOwner:
    """The one object that owns a watched fd; the dispatch asks it for its next step."""
    cdef readonly int fd
    cdef uint32_t gen     # registration generation, packed into the poller's event data
    cdef uint32_t mask    # interest currently registered with the poller (0: none)
    cdef bint flush_queued  # in the loop's list of owners with output to flush

    cdef int on_ready(self, uint32_t mask) except -1
    cdef int flush(self) except -1


cdef class FdTable:
    """evio's fdconns: which owner each fd has, kept in step with the poller."""
    cdef Poller poller
    cdef list owners              # fd -> FdOwner or None (evio's fdconns)
    cdef uint32_t next_gen
    cdef Py_ssize_t nkernel       # owners with a registration in the kernel (mask != 0)
    cdef set stale_prev           # fds seen with a stale registration in the last wait
    cdef set stale_now
    cdef list flushing            # owners whose output waits for the end of the iteration
    # BaseEventLoop's name for it, public so both sides see one value
    cdef public bint _closed

    cdef int check_open(self) except -1

    # every verb keeps the table and the poller in step
    cdef FdOwner owner_of(self, long long fd)
    cdef int register(self, FdOwner owner, uint32_t mask) except -1
    cdef int modify(self, FdOwner owner, uint32_t mask) except -1
    cdef int unregister(self, FdOwner owner) except -1
    cdef int close_table(self) except -1

    cdef int queue_flush(self, FdOwner owner) except -1
    cdef int flush_queued(self) except -1

    cdef int dispatch(self, int n) except -1
    cdef int report_owner_error(self, FdOwner owner, exc) except -1
    cdef int note_stale(self, int fd, FdOwner owner) except -1
    cdef int rebuild_poller(self) except -1


cdef inline long long fileobj_to_fd(fileobj) except -1:
    # selectors._fileobj_to_fd, with the same errors
    cdef long long fd
    if isinstance(fileobj, int):
        fd = fileobj
    else:
        try:
            fd = int(fileobj.fileno())
        except (AttributeError, TypeError, ValueError):
            raise ValueError(f"Invalid file object: {fileobj!r}") from None
    if fd < 0:
        raise ValueError(f"Invalid file descriptor: {fd}")
    return fd


cdef inline uint64_t pack(FdOwner owner) noexcept:
    return (<uint64_t>owner.gen << 32) | <uint32_t>owner.fd
