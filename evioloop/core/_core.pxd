# Layer 2: the loop core. Declarations shared with the transports (layer 3).
from libc.stdint cimport uint32_t, uint64_t
from cpython.object cimport PyObject

from evioloop._poller cimport Poller, EVP_READ, EVP_WRITE
from evioloop.core._handles cimport Handle, TimerHandle
from evioloop.core._timerheap cimport TimerEntry
# the fd table is its own module; FdOwner is cimported from here by the
# transports, as before the split
from evioloop.core._fdtable cimport FdOwner, FdTable


cdef class FdWatch(FdOwner):
    """add_reader/add_writer callbacks of one fd."""
    cdef Handle reader
    cdef Handle writer
    cdef CoreLoop loop


cdef class CoreLoop(FdTable):
    # FdTable: poller, owners, nkernel, flushing, _closed, the fd verbs
    cdef bint polling             # blocked (or about to block) in the kernel
    cdef bint woken               # the poller was triggered since polling began
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
    cdef int wake(self)

    cdef add_watch(self, fileobj, callback, tuple args, uint32_t side)
    cdef remove_watch(self, fileobj, uint32_t side)

    cdef int run_once(self) except -1
    cdef int run_ready(self, Py_ssize_t ntodo) except -1
    cdef Py_ssize_t move_due_timers(self, double end) except -1
    cdef int drop_cancelled_timers(self) except -1
