# Layer 2: the loop core. Declarations shared with the transports (layer 3).
from libc.stdint cimport uint32_t, uint64_t
from cpython.object cimport PyObject

from evioloop._poller cimport Poller, EVP_READ, EVP_WRITE
from evioloop._handles cimport Handle, TimerHandle
from evioloop._timerheap cimport TimerEntry


cdef class FdOwner:
    """The one object that owns a watched fd; the dispatch asks it for its next step."""
    cdef readonly int fd
    cdef uint32_t gen     # registration generation, packed into the poller's event data
    cdef uint32_t mask    # interest currently registered with the poller (0: none)
    cdef bint flush_queued  # in the loop's list of owners with output to flush

    cdef int on_ready(self, uint32_t mask) except -1
    cdef int flush(self) except -1


cdef class FdWatch(FdOwner):
    """add_reader/add_writer callbacks of one fd."""
    cdef Handle reader
    cdef Handle writer
    cdef CoreLoop loop


cdef class CoreLoop:
    cdef Poller poller
    cdef list owners              # fd -> FdOwner or None (evio's fdconns)
    cdef uint32_t next_gen
    cdef set stale_prev           # fds seen with a stale registration in the last wait
    cdef set stale_now
    cdef bint polling             # blocked (or about to block) in the kernel
    cdef bint woken               # the poller was triggered since polling began
    cdef list flushing            # owners whose output waits for the end of the iteration
    cdef char *packet             # evio's packet: one read buffer shared by all connections
    cdef Py_ssize_t packet_size   # its size (C only: not part of the Python API)
    cdef long pid                 # the process that created the loop

    # the ready queue: a ring of strong references to Handles
    cdef PyObject **ready
    cdef Py_ssize_t ready_head
    cdef Py_ssize_t ready_len
    cdef Py_ssize_t ready_cap

    # the timer heap
    cdef TimerEntry *timers
    cdef Py_ssize_t ntimers
    cdef Py_ssize_t timers_cap
    cdef Py_ssize_t ncancelled
    cdef uint64_t timer_seq

    # the names BaseEventLoop also uses; public so both sides see one value
    cdef public bint _closed
    cdef public bint _stopping
    cdef public bint _debug
    cdef public object _thread_id
    cdef public double _clock_resolution
    cdef public double slow_callback_duration
    cdef public object _task_factory

    cdef void clear_queues(self)
    cdef double now(self)
    cdef int push_ready(self, Handle h) except -1
    cdef Handle new_handle(self, object callback, tuple args, object context)
    cdef TimerHandle new_timer(self, double when, object callback, tuple args, object context)
    cdef PyObject *pop_timer(self)
    cdef int run_handle(self, Handle h) except -1
    cdef int check_open(self) except -1
    cdef int wake(self)

    # the fd table: every verb keeps the table and the poller in step
    cdef FdOwner owner_of(self, long long fd)
    cdef int register(self, FdOwner owner, uint32_t mask) except -1
    cdef int modify(self, FdOwner owner, uint32_t mask) except -1
    cdef int unregister(self, FdOwner owner) except -1
    cdef add_watch(self, fileobj, callback, tuple args, uint32_t side)
    cdef remove_watch(self, fileobj, uint32_t side)

    cdef int queue_flush(self, FdOwner owner) except -1
    cdef int flush_queued(self) except -1

    cdef int run_once(self) except -1
    cdef int dispatch(self, int n) except -1
    cdef int report_owner_error(self, FdOwner owner, exc) except -1
    cdef int note_stale(self, int fd, FdOwner owner) except -1
    cdef int rebuild_poller(self) except -1
    cdef int run_ready(self, Py_ssize_t ntodo) except -1
    cdef Py_ssize_t move_due_timers(self, double end) except -1
    cdef int drop_cancelled_timers(self) except -1
