# cython: language_level=3
"""Layer 2: the loop core.

evio's `Wait`/`iter` as an asyncio run loop. One iteration (`run_once`):

  1. wait in the kernel; the timeout comes from the timer heap, zero when
     callbacks are ready (or the loop is stopping);
  2. hand every ready fd to its owner's next step (`FdOwner.on_ready`);
  3. move due timers to the ready queue;
  4. run the callbacks that are ready now; callbacks they schedule wait for
     the next iteration.

Notes from other threads (`call_soon_threadsafe`) and from signal handlers go
straight onto the ready queue: every access to it happens under the GIL and
none of them can release it midway, so the queue itself is the thread-safe
note queue; the poller's trigger only wakes a loop that is blocked.

The fd table under it (which owner each fd has, the poller's registrations,
the dispatch of a wait's events, the flush of queued output) is the base
class, `_fdtable.FdTable`; this module adds the callbacks, the timers and the
run loop, and add_reader's `FdWatch` owner.
"""
from libc.math cimport ceil
from libc.stdint cimport uint32_t
from libc.stdlib cimport malloc, realloc, free
from cpython.object cimport PyObject
from cpython.ref cimport Py_INCREF, Py_DECREF

from evioloop._poller cimport evp_monotonic, EVP_READ, EVP_WRITE
from evioloop.core._fdtable cimport FdOwner, FdTable, fileobj_to_fd
from evioloop.core._handles cimport Handle, TimerHandle, release_callback, set_timer_cancel_hook
from evioloop.core._timerheap cimport TimerEntry, heap_push, heap_pop, heapify
from evioloop.core._context cimport PyContext_CopyCurrent

import inspect
import os
import sys
import threading

from asyncio import base_events as _base_events
from asyncio import events as _events
from asyncio import format_helpers as _format_helpers
from asyncio import futures as _futures
from asyncio import tasks as _tasks

cdef extern from "Python.h":
    # the collector's slots, typed as CPython declares them (Cython's own
    # declarations add exception checks that a tp_traverse must not have)
    ctypedef int (*c_visitproc "visitproc")(PyObject *, void *) noexcept
    ctypedef int (*c_traverseproc "traverseproc")(PyObject *, c_visitproc, void *) noexcept
    ctypedef int (*c_inquiry "inquiry")(PyObject *) noexcept
    ctypedef struct c_TypeObject "PyTypeObject":
        c_traverseproc tp_traverse
        c_inquiry tp_clear

cdef object Future = _futures.Future
cdef object Task = _tasks.Task
cdef object _extract_stack = _format_helpers.extract_stack
# private in every version we support (3.10-3.13); repr() is a safe stand-in
cdef object _format_handle = getattr(_base_events, '_format_handle', repr)
cdef object _logger = _base_events.logger
cdef object _getframe = sys._getframe
cdef object _get_asyncgen_hooks = sys.get_asyncgen_hooks
cdef object _set_asyncgen_hooks = sys.set_asyncgen_hooks
cdef object _get_ident = threading.get_ident

# As the stock loop: never block longer than a day (some kernels reject
# larger timeouts), and compact the timer heap when cancelled timers are more
# than half of it.
cdef double MAXIMUM_SELECT_TIMEOUT = 24 * 3600
# 3.13.3+ and 3.14: BaseEventLoop.create_task(coro, **kwargs)
cdef bint STOCK_CREATE_TASK_TAKES_KWARGS = any(
    p.kind == p.VAR_KEYWORD
    for p in inspect.signature(_base_events.BaseEventLoop.create_task).parameters.values())
cdef Py_ssize_t MIN_SCHEDULED_TIMER_HANDLES = 100
cdef double MIN_CANCELLED_TIMER_HANDLES_FRACTION = 0.5


# ---------------------------------------------------------------- add_reader's owner

cdef class FdWatch(FdOwner):

    def __cinit__(self, CoreLoop loop, int fd):
        self.loop = loop
        self.fd = fd

    cdef int on_ready(self, uint32_t mask) except -1:
        # Callbacks run right here, as evio's loopRead does, instead of taking
        # a trip through the ready queue; what they schedule runs this iteration.
        cdef Handle h
        if mask & EVP_READ:
            h = self.reader
            if h is not None:
                if h._cancelled:
                    self.loop._remove_reader(self.fd)
                else:
                    self.loop.run_handle(h)
        if mask & EVP_WRITE:
            h = self.writer
            if h is not None:
                if h._cancelled:
                    self.loop._remove_writer(self.fd)
                else:
                    self.loop.run_handle(h)
        return 0

    def __repr__(self):
        return f'<FdWatch fd={self.fd} reader={self.reader!r} writer={self.writer!r}>'


# ---------------------------------------------------------------- the loop

cdef class CoreLoop(FdTable):
    """The compiled half of evioloop.Loop: run loop, queues, timers, fd table."""

    def __cinit__(self, *args, **kwargs):
        # FdTable's __cinit__ ran first: the poller and the table exist
        self.pid = os.getpid()
        self.ready_cap = 64
        self.ready = <PyObject **>malloc(self.ready_cap * sizeof(PyObject *))
        self.timers_cap = 64
        self.timers = <TimerEntry *>malloc(self.timers_cap * sizeof(TimerEntry))
        self.packet_size = 256 * 1024   # the stock transports' max_size
        self.packet = <char *>malloc(self.packet_size)
        if self.ready is NULL or self.timers is NULL or self.packet is NULL:
            raise MemoryError()
        self._clock_resolution = 1e-9
        self.slow_callback_duration = 0.1

    def __dealloc__(self):
        self.clear_queues()
        free(self.ready)
        free(self.timers)
        free(self.packet)
        self.ready = NULL
        self.timers = NULL
        self.packet = NULL

    cdef void clear_queues(self):
        cdef Py_ssize_t i
        cdef PyObject *p
        # Detach everything first, then release: a finalizer run by a release
        # may schedule new callbacks, which then land in a consistent queue.
        cdef list doomed = []
        if self.ready is not NULL:
            while self.ready_len:
                p = self.ready[self.ready_head]
                self.ready_head = (self.ready_head + 1) & (self.ready_cap - 1)
                self.ready_len -= 1
                doomed.append(<object>p)
                Py_DECREF(<object>p)
        if self.timers is not NULL:
            for i in range(self.ntimers):
                p = self.timers[i].handle
                (<TimerHandle>p)._scheduled = False
                doomed.append(<object>p)
                Py_DECREF(<object>p)
            self.ntimers = 0
            self.ncancelled = 0
        for h in doomed:
            release_callback(<Handle>h)
        doomed.clear()

    # -- time

    cdef double now(self):
        return evp_monotonic()

    def time(self):
        return evp_monotonic()

    # -- the ready queue

    cdef int push_ready(self, Handle h) except -1:
        cdef PyObject **grown
        cdef Py_ssize_t i, n
        if self.ready_len == self.ready_cap:
            n = self.ready_cap * 2
            grown = <PyObject **>malloc(n * sizeof(PyObject *))
            if grown is NULL:
                raise MemoryError()
            for i in range(self.ready_len):
                grown[i] = self.ready[(self.ready_head + i) & (self.ready_cap - 1)]
            free(self.ready)
            self.ready = grown
            self.ready_cap = n
            self.ready_head = 0
        Py_INCREF(h)
        self.ready[(self.ready_head + self.ready_len) & (self.ready_cap - 1)] = <PyObject *>h
        self.ready_len += 1
        return 0

    cdef Handle new_handle(self, object callback, tuple args, object context):
        cdef Handle h = Handle.__new__(Handle)
        h._callback = callback
        h._args = args
        h._loop = self
        h._context = PyContext_CopyCurrent() if context is None else context
        if self._debug:
            h._source_traceback = _extract_stack(_getframe(0))
        return h

    def call_soon(self, callback, *args, context=None):
        self.check_open()
        if self._debug:
            self._check_thread()
            self._check_callback(callback, 'call_soon')
        h = self.new_handle(callback, args, context)
        self.push_ready(h)
        return h

    def _call_soon(self, callback, args, context):
        h = self.new_handle(callback, tuple(args), context)
        self.push_ready(h)
        return h

    def call_soon_threadsafe(self, callback, *args, context=None):
        self.check_open()
        if self._debug:
            self._check_callback(callback, 'call_soon_threadsafe')
        h = self.new_handle(callback, args, context)
        self.push_ready(h)
        self.wake()
        return h

    cdef int wake(self):
        # One trigger per wait is enough. Until the woken loop gets the GIL
        # back, `polling` stays set; without `woken` every call in that
        # window would pay a write() syscall.
        if self.polling and not self.woken:
            self.woken = True
            self.poller.trigger()
        return 0

    def _add_callback(self, handle):
        """Queue an existing handle (the stock loop's signal path uses this).

        The stock signal code makes asyncio.events.Handle objects; those run
        through their own _run, which handles their context and errors."""
        if handle._cancelled:
            return
        if isinstance(handle, Handle):
            self.push_ready(handle)
        else:
            self.push_ready(self.new_handle(handle._run, (), None))

    def _write_to_self(self):
        """Wake the loop if it is blocked in the kernel (safe from any thread)."""
        self.wake()

    # -- timers: a binary heap of (when, seq, handle) in C

    cdef TimerHandle new_timer(self, double when, object callback, tuple args, object context):
        cdef TimerHandle t = TimerHandle.__new__(TimerHandle)
        cdef TimerEntry *grown
        cdef TimerEntry e
        t._callback = callback
        t._args = args
        t._loop = self
        t._context = PyContext_CopyCurrent() if context is None else context
        t._when = when
        if self._debug:
            t._source_traceback = _extract_stack(_getframe(0))
        if self.ntimers == self.timers_cap:
            grown = <TimerEntry *>realloc(self.timers, 2 * self.timers_cap * sizeof(TimerEntry))
            if grown is NULL:
                raise MemoryError()
            self.timers = grown
            self.timers_cap *= 2
        e.when = when
        e.seq = self.timer_seq
        self.timer_seq += 1
        e.handle = <PyObject *>t
        Py_INCREF(t)
        t._scheduled = True
        heap_push(self.timers, self.ntimers, e)
        self.ntimers += 1
        return t

    cdef PyObject *pop_timer(self):
        """Remove the earliest timer; the caller owns the returned reference."""
        cdef PyObject *top = self.timers[0].handle
        heap_pop(self.timers, self.ntimers)
        self.ntimers -= 1
        (<TimerHandle>top)._scheduled = False
        return top

    def call_at(self, when, callback, *args, context=None):
        if when is None:
            raise TypeError("when cannot be None")
        self.check_open()
        if self._debug:
            self._check_thread()
            self._check_callback(callback, 'call_at')
        return self.new_timer(when, callback, args, context)

    def call_later(self, delay, callback, *args, context=None):
        if delay is None:
            raise TypeError('delay must not be None')
        self.check_open()
        if self._debug:
            self._check_thread()
            self._check_callback(callback, 'call_later')
        return self.new_timer(self.now() + <double>delay, callback, args, context)

    def _timer_handle_cancelled(self, handle):
        if (<TimerHandle?>handle)._scheduled:
            self.ncancelled += 1

    cdef int drop_cancelled_timers(self) except -1:
        cdef Py_ssize_t i, k = 0, n = self.ntimers
        cdef list doomed
        cdef PyObject *top
        if (n > MIN_SCHEDULED_TIMER_HANDLES and
                self.ncancelled > n * MIN_CANCELLED_TIMER_HANDLES_FRACTION):
            # Rebuild the heap without the cancelled ones: keep the survivors
            # in order (a sorted array is a heap), release the rest after.
            doomed = []
            for i in range(n):
                if (<TimerHandle>self.timers[i].handle)._cancelled:
                    (<TimerHandle>self.timers[i].handle)._scheduled = False
                    doomed.append(<object>self.timers[i].handle)
                    Py_DECREF(<object>self.timers[i].handle)
                else:
                    self.timers[k] = self.timers[i]
                    k += 1
            self.ntimers = k
            self.ncancelled = 0
            heapify(self.timers, k)
            doomed.clear()
        else:
            while self.ntimers and (<TimerHandle>self.timers[0].handle)._cancelled:
                self.ncancelled -= 1
                top = self.pop_timer()
                Py_DECREF(<object>top)
        return 0

    # -- add_reader / add_writer as fd owners

    def _add_reader(self, fd, callback, *args):
        return self.add_watch(fd, callback, args, EVP_READ)

    def _add_writer(self, fd, callback, *args):
        return self.add_watch(fd, callback, args, EVP_WRITE)

    def _remove_reader(self, fd):
        return self.remove_watch(fd, EVP_READ)

    def _remove_writer(self, fd):
        return self.remove_watch(fd, EVP_WRITE)

    cdef add_watch(self, fileobj, callback, tuple args, uint32_t side):
        cdef long long fd
        cdef FdWatch w
        cdef Handle old
        self.check_open()
        fd = fileobj_to_fd(fileobj)
        h = self.new_handle(callback, args, None)
        owner = self.owner_of(fd)
        if owner is None:
            if fd > 0x7FFFFFFF:
                raise OverflowError('file descriptor is greater than maximum')
            w = FdWatch(self, fd)
            if side == EVP_READ:
                w.reader = h
            else:
                w.writer = h
            self.register(w, side)
            return h
        if not isinstance(owner, FdWatch):
            raise RuntimeError(f'File descriptor {fd} is used by {owner!r}')
        w = <FdWatch>owner
        self.modify(w, w.mask | side)
        if side == EVP_READ:
            old, w.reader = w.reader, h
        else:
            old, w.writer = w.writer, h
        if old is not None:
            old.cancel()
        return h

    cdef remove_watch(self, fileobj, uint32_t side):
        cdef long long fd
        cdef FdWatch w
        cdef Handle h
        if self._closed:
            return False
        fd = fileobj_to_fd(fileobj)
        owner = self.owner_of(fd)
        if not isinstance(owner, FdWatch):
            return False
        w = <FdWatch>owner
        if side == EVP_READ:
            h, w.reader = w.reader, None
        else:
            h, w.writer = w.writer, None
        if w.reader is None and w.writer is None:
            self.unregister(w)
        else:
            self.modify(w, w.mask & ~side)
        if h is None:
            return False
        h.cancel()
        return True

    # -- running

    cdef int run_handle(self, Handle h) except -1:
        cdef double t0, dt
        if not self._debug:
            return h._run()
        self._current_handle = h
        t0 = self.now()
        try:
            h._run()
        finally:
            dt = self.now() - t0
            if dt >= self.slow_callback_duration:
                _logger.warning('Executing %s took %.3f seconds', _format_handle(h), dt)
            self._current_handle = None
        return 0

    cdef int run_once(self) except -1:
        # The order within one iteration is the stock loop's: the callbacks
        # that were ready before the wait, then the I/O that the wait found,
        # then the timers that are due; whatever those schedule runs in the
        # next iteration. I/O and timers run in place (evio's iter) instead of
        # taking a trip through the ready queue.
        cdef int timeout_ms, n = 0
        cdef double dt, end
        cdef Py_ssize_t ntodo, ndue = 0

        if self.ncancelled:
            self.drop_cancelled_timers()
        if self.flushing:
            # output queued while the loop was not running (or by callbacks
            # that ran after the last flush) must not wait for the kernel
            self.flush_queued()
        # The flag and the emptiness check happen under the GIL with nothing
        # in between that could release it: a thread that queues a callback
        # either runs before (we see it and do not block) or after (it sees
        # `polling` and triggers the wake-up).
        self.woken = False
        self.polling = True
        if self.ready_len or self._stopping:
            timeout_ms = 0
        elif self.ntimers:
            dt = self.timers[0].when - self.now()
            if dt <= 0:
                timeout_ms = 0
            elif dt >= MAXIMUM_SELECT_TIMEOUT:
                timeout_ms = <int>(MAXIMUM_SELECT_TIMEOUT * 1000)
            else:
                # round up: waking a little late costs nothing, early costs a spin
                timeout_ms = <int>ceil(dt * 1000.0)
        else:
            timeout_ms = -1
        if timeout_ms == 0 and self.nkernel <= 0:
            # Nothing is registered with the kernel: a poll that cannot block
            # could only report the wake-up channel, which matters to a wait
            # that blocks, and this one would not. No I/O is delayed by
            # skipping it; with any fd watched, every iteration polls.
            self.polling = False
        else:
            try:
                n = self.poller.wait(timeout_ms)
            finally:
                self.polling = False

        # Timers due now join the queue behind the callbacks that were ready
        # before the wait; the I/O runs between the two. A timer that those
        # callbacks schedule, even an overdue one, waits for the next round.
        ntodo = self.ready_len     # with what other threads queued meanwhile
        if self.ntimers:
            # the clock is read only when a timer may be due
            end = self.now() + self._clock_resolution
            ndue = self.move_due_timers(end)
        if ntodo:
            self.run_ready(ntodo)
        if n:
            self.dispatch(n)
        if ndue:
            self.run_ready(ndue)
        if self.flushing:
            self.flush_queued()
        return 0

    cdef int run_ready(self, Py_ssize_t ntodo) except -1:
        cdef PyObject *p
        cdef Handle h
        while ntodo > 0:
            ntodo -= 1
            p = self.ready[self.ready_head]
            self.ready_head = (self.ready_head + 1) & (self.ready_cap - 1)
            self.ready_len -= 1
            h = <Handle>p
            Py_DECREF(h)
            if not h._cancelled:
                self.run_handle(h)
                release_callback(h)
        return 0

    cdef Py_ssize_t move_due_timers(self, double end) except -1:
        """Move the timers due by `end` to the ready queue; return how many."""
        cdef PyObject *top
        cdef TimerHandle t
        cdef Py_ssize_t moved = 0
        while self.ntimers and self.timers[0].when <= end:
            top = self.pop_timer()
            t = <TimerHandle>top
            Py_DECREF(t)
            if t._cancelled:
                self.ncancelled -= 1
            else:
                self.push_ready(t)
                moved += 1
        return moved

    def run_forever(self):
        self._check_closed()
        self._check_running()
        if os.getpid() != self.pid:
            raise RuntimeError(
                f'this evioloop loop was created in process {self.pid} and '
                f'cannot run in the forked child {os.getpid()}; create a new '
                f'loop in the child (evioloop.new_event_loop())')
        self._set_coroutine_origin_tracking(self._debug)
        old_agen_hooks = _get_asyncgen_hooks()
        self._thread_id = _get_ident()
        _set_asyncgen_hooks(firstiter=self._asyncgen_firstiter_hook,
                            finalizer=self._asyncgen_finalizer_hook)
        # looked up on every run, as the stock loop does: tests swap in the
        # pure-Python version of these helpers
        set_running_loop = _events._set_running_loop
        try:
            set_running_loop(self)
            while True:
                self.run_once()
                if self._stopping:
                    break
        finally:
            self._stopping = False
            self._thread_id = None
            set_running_loop(None)
            self._set_coroutine_origin_tracking(False)
            _set_asyncgen_hooks(*old_agen_hooks)

    def _run_once(self):
        """One iteration, for code that drives the loop by hand."""
        self.run_once()

    def stop(self):
        self._stopping = True

    def is_running(self):
        return self._thread_id is not None

    def is_closed(self):
        return self._closed

    def get_debug(self):
        return self._debug

    def _close_core(self):
        """Drop the queued callbacks and timers, close the kernel queue."""
        self.clear_queues()
        for owner in self.owners:
            if isinstance(owner, FdWatch):
                for h in ((<FdWatch>owner).reader, (<FdWatch>owner).writer):
                    if h is not None:
                        release_callback(<Handle>h)
        self.close_table()

    # -- futures and tasks

    def create_future(self):
        return Future(loop=self)

    def create_task(self, coro, *, name=None, context=None, **kwargs):
        self.check_open()
        if kwargs and not STOCK_CREATE_TASK_TAKES_KWARGS:
            # keywords such as eager_start, which 3.13.3+ and 3.14 hand on to
            # the task factory or the Task; on an earlier Python that the
            # Task accepts them is enough (and if it does not, its TypeError
            # is the answer)
            if context is not None:
                kwargs['context'] = context
            if name is not None:
                kwargs['name'] = name
            if self._task_factory is not None:
                return self._task_factory(self, coro, **kwargs)
            return Task(coro, loop=self, **kwargs)
        if self._task_factory is not None or kwargs:
            # the stock path: factories, and keywords of newer Pythons
            # (3.10's create_task has no `context`, so pass it only when given)
            if context is not None:
                kwargs['context'] = context
            return _base_events.BaseEventLoop.create_task(
                self, coro, name=name, **kwargs)
        if context is None:
            return Task(coro, loop=self, name=name)
        return Task(coro, loop=self, name=name, context=context)

    # -- introspection for tests

    def _evio_stats(self):
        return {'ready': self.ready_len, 'timers': self.ntimers,
                'cancelled_timers': self.ncancelled,
                'watched_fds': sum(1 for o in self.owners if o is not None)}


cdef int count_cancelled_timer(object loop) except -1:
    if isinstance(loop, CoreLoop):
        (<CoreLoop>loop).ncancelled += 1
        return 1
    return 0


set_timer_cancel_hook(count_cancelled_timer)


# ---------------------------------------------------------------- the collector

# The ready ring and the timer heap are C arrays, which Cython's generated
# tp_traverse cannot see. Without them a loop dropped without close() with a
# callback still queued is a cycle the collector cannot find (loop -> handle
# -> loop), and the loop, its epoll fd and whatever the callbacks reach would
# never be freed. So CoreLoop's slots are wrapped: traverse also visits the
# queued handles, clear also drops them.

cdef c_traverseproc cython_traverse_loop = NULL
cdef c_inquiry cython_clear_loop = NULL


cdef int traverse_loop(PyObject *o, c_visitproc visit, void *arg) noexcept:
    cdef CoreLoop self = <CoreLoop>o
    cdef Py_ssize_t i
    cdef int r
    if self.ready is not NULL:
        for i in range(self.ready_len):
            r = visit(self.ready[(self.ready_head + i) & (self.ready_cap - 1)], arg)
            if r:
                return r
    if self.timers is not NULL:
        for i in range(self.ntimers):
            r = visit(self.timers[i].handle, arg)
            if r:
                return r
    return cython_traverse_loop(o, visit, arg)


cdef int clear_loop(PyObject *o) noexcept:
    (<CoreLoop>o).clear_queues()
    return cython_clear_loop(o)


cdef c_TypeObject *loop_type = <c_TypeObject *><void *>CoreLoop
cython_traverse_loop = loop_type.tp_traverse
cython_clear_loop = loop_type.tp_clear
loop_type.tp_traverse = traverse_loop
loop_type.tp_clear = clear_loop
