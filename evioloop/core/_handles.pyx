# cython: language_level=3
"""Layer 2: the loop's callback handles, asyncio.Handle and asyncio.TimerHandle.

The core (`_core.pyx`) creates them without running __init__ (`new_handle`,
`new_timer`), queues them, and runs them through `_run`.
"""
cimport cython
from evioloop.core._context cimport PyContext_Enter, PyContext_Exit, PyContext_CopyCurrent

import inspect
import sys

from asyncio import format_helpers as _format_helpers


cdef object _extract_stack = _format_helpers.extract_stack
cdef object _format_callback_source = _format_helpers._format_callback_source
cdef object _getframe = sys._getframe
# 3.13+ shows a callback's arguments only in debug mode, and the stock
# handles say which mode through `debug=`
cdef bint FORMAT_TAKES_DEBUG = (
    'debug' in inspect.signature(_format_callback_source).parameters)


cdef timer_cancel_hook cancel_hook = NULL


cdef void set_timer_cancel_hook(timer_cancel_hook hook) noexcept:
    global cancel_hook
    cancel_hook = hook


cdef object format_callback(Handle h, object callback, object args):
    if FORMAT_TAKES_DEBUG:
        return _format_callback_source(
            callback, args, debug=h._loop is not None and h._loop.get_debug())
    return _format_callback_source(callback, args)


# A freelist big enough for a batch of a thousand queued callbacks: handles
# taken from it are not new allocations, so they do not bring the next
# collection of the young generation closer (each collection traverses the
# queued handles).
@cython.freelist(2048)
@cython.no_gc_clear
cdef class Handle:
    """asyncio.Handle: a callback with its arguments and context.

    Handles are tracked by the garbage collector, and the loop shows the
    collector the handles in its ready queue and timer heap (see
    `_core.pyx`), so a cycle such as object -> handle -> bound method ->
    object, on a loop dropped without close(), is collected as on the stock
    loop. A handle is never cleared by the collector itself (no_gc_clear):
    every cycle through a scheduled handle also runs through its loop, whose
    finalizer closes it and whose clear drops the queued callbacks, and a
    handle that ran or was cancelled has let go of its callback already.
    So `_run` never meets a cleared handle.
    """

    def __init__(self, callback, args, loop, context=None):
        # Only Python code constructs a Handle this way; the loop uses new_handle.
        if context is None:
            context = PyContext_CopyCurrent()
        self._callback = callback
        self._args = tuple(args) if args is not None else ()
        self._loop = loop
        self._context = context
        if loop is not None and loop.get_debug():
            self._source_traceback = _extract_stack(_getframe(1))

    cdef int _run(self) except -1:
        cdef object callback = self._callback
        cdef object args = self._args
        cdef object context = self._context
        try:
            PyContext_Enter(context)
            try:
                if args:
                    callback(*args)
                else:
                    callback()
            finally:
                PyContext_Exit(context)
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._report(exc, callback, args)
        return 0

    cdef _report(self, exc, callback, args):
        cb = format_callback(self, callback, args)
        context = {
            'message': f'Exception in callback {cb}',
            'exception': exc,
            'handle': self,
        }
        if self._source_traceback:
            context['source_traceback'] = self._source_traceback
        self._loop.call_exception_handler(context)

    def _repr_info(self):
        info = [self.__class__.__name__]
        if self._cancelled:
            info.append('cancelled')
        if self._callback is not None:
            info.append(format_callback(self, self._callback, self._args))
        if self._source_traceback:
            frame = self._source_traceback[len(self._source_traceback) - 1]
            info.append(f'created at {frame[0]}:{frame[1]}')
        return info

    def __repr__(self):
        if self._repr is not None:
            return self._repr
        return '<{}>'.format(' '.join(self._repr_info()))

    def get_context(self):
        return self._context

    def cancel(self):
        if not self._cancelled:
            self._cancelled = True
            if self._loop is not None and self._loop.get_debug():
                # keep the callback's description for "Executing ... took" logs
                self._repr = repr(self)
            self._callback = None
            self._args = None

    def cancelled(self):
        return self._cancelled


@cython.no_gc_clear
cdef class TimerHandle(Handle):
    """asyncio.TimerHandle: a Handle with a deadline on the loop's clock."""

    def __init__(self, when, callback, args, loop, context=None):
        Handle.__init__(self, callback, args, loop, context)
        self._when = when

    def _repr_info(self):
        info = Handle._repr_info(self)
        info.insert(2 if self._cancelled else 1, f'when={self._when}')
        return info

    def when(self):
        return self._when

    def cancel(self):
        if not self._cancelled and self._scheduled:
            # the loop counts its cancelled timers to know when to compact
            if cancel_hook is NULL or not cancel_hook(self._loop):
                self._loop._timer_handle_cancelled(self)
        Handle.cancel(self)

    def __hash__(self):
        return hash(self._when)

    def __lt__(self, other):
        if isinstance(other, TimerHandle):
            return self._when < (<TimerHandle>other)._when
        return NotImplemented

    def __gt__(self, other):
        if isinstance(other, TimerHandle):
            return self._when > (<TimerHandle>other)._when
        return NotImplemented

    def __le__(self, other):
        if isinstance(other, TimerHandle):
            return self._when < (<TimerHandle>other)._when or self == other
        return NotImplemented

    def __ge__(self, other):
        if isinstance(other, TimerHandle):
            return self._when > (<TimerHandle>other)._when or self == other
        return NotImplemented

    def __eq__(self, other):
        if isinstance(other, TimerHandle):
            o = <TimerHandle>other
            return (self._when == o._when and self._callback == o._callback
                    and self._args == o._args and self._cancelled == o._cancelled)
        return NotImplemented
