# Layer 2: the loop's callback handles (asyncio.Handle / asyncio.TimerHandle).

cdef class Handle:
    cdef readonly object _callback
    cdef readonly object _args          # a tuple, or None once cancelled
    cdef readonly object _context
    cdef readonly object _loop
    cdef readonly bint _cancelled
    cdef public object _source_traceback
    cdef object _repr
    cdef object __weakref__

    cdef int _run(self) except -1
    cdef _report(self, exc, callback, args)


cdef class TimerHandle(Handle):
    cdef readonly double _when
    cdef readonly bint _scheduled


# How the core counts its cancelled timers without a Python call: the hook
# returns 1 if `loop` is a core loop it counted for, 0 to fall back to
# loop._timer_handle_cancelled(handle), the stock protocol.
ctypedef int (*timer_cancel_hook)(object loop) except -1
cdef void set_timer_cancel_hook(timer_cancel_hook hook) noexcept


cdef inline void release_callback(Handle h):
    # A handle that ran (or will never run) lets go of what it called, so
    # that what it called is not kept alive by a handle the user still holds.
    h._callback = None
    h._args = None
