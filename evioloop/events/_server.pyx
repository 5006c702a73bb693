# cython: language_level=3
"""Layer 5, compiled: the state one Events server shares between its
connections (`ServerCore`), the view over the loop's read buffer
(`PacketView`), and how callbacks' return values are read (evio's full
tuples, or the short forms of docs/events.md)."""
from libc.stdlib cimport free
from cpython.buffer cimport PyBuffer_FillInfo, PyObject_CheckBuffer, PyBUF_WRITABLE

from evioloop.core._core cimport CoreLoop

import contextvars
import threading
import time

from .api import Action

cdef object A_NONE = Action.NONE


cdef int action_of(object a, str what) except -1:
    """An Action's number; TypeError for anything else (None is NONE)."""
    if a is None or a is A_NONE:
        return NONE
    if isinstance(a, Action):
        return <int>a
    raise TypeError(f'Events.{what}() returned {a!r} as its action; expected an '
                    f'evioloop.Action or None')


cdef int check_out(object out, str what) except -1:
    """`what` is the callback that returned `out` ('opened', 'data'), or the
    Conn method it was handed to ('Conn.write', 'UdpConn.sendto')."""
    if type(out) is bytes or PyObject_CheckBuffer(out):
        return 0
    if what.startswith(('Conn.', 'UdpConn.')):
        raise TypeError(f'{what}() takes a bytes-like object, not {type(out).__name__}')
    raise TypeError(f'Events.{what}() returned {type(out).__name__} as its output; '
                    f'expected a bytes-like object or None')

cdef object data_result(object r, int *action):
    """data()'s return as its out (None: nothing), the action in *action."""
    action[0] = NONE
    if r is None:
        return None
    if type(r) is bytes:
        return r
    if type(r) is tuple:
        if len(<tuple>r) != 2:
            raise TypeError(f'Events.data() returned a tuple of {len(r)}; '
                            f'expected (out, action)')
        out, a = <tuple>r
        action[0] = action_of(a, 'data')
        if out is not None:
            check_out(out, 'data')
        return out
    if isinstance(r, Action):
        action[0] = <int>r
        return None
    check_out(r, 'data')
    return r


cdef class PacketView:
    """Exports the loop's read buffer to the memoryview `data` gets when
    reuse_input_buffer is on. If a view of it outlives the call, the loop
    hands this memory over to the view (freed with its last export) and reads
    into a fresh buffer: a kept view never shows other bytes."""

    def __getbuffer__(self, Py_buffer *view, int flags):
        if flags & PyBUF_WRITABLE:
            raise BufferError('the input buffer is read-only')
        PyBuffer_FillInfo(view, self, self.buf, self.length, 1, flags)
        self.exports += 1

    def __releasebuffer__(self, Py_buffer *view):
        self.exports -= 1
        if self.exports == 0 and self.owns:
            free(self.buf)
            self.buf = NULL
            self.owns = False


cdef class ServerCore:
    """What every Conn of one server shares: the loop, the callbacks, the
    set of open connections. The Python `Server` (server.py) drives it."""

    def __init__(self, loop, events, server, bint native):
        self.loop = loop
        self.core = <CoreLoop>loop if native else None
        self.server = server
        self.conns = set()
        self.pv = PacketView()
        self.cb_opened = getattr(events, 'opened', None)
        self.cb_closed = getattr(events, 'closed', None)
        self.cb_detached = getattr(events, 'detached', None)
        self.cb_pre_write = getattr(events, 'pre_write', None)
        self.cb_data = getattr(events, 'data', None)
        self.thread_id = threading.get_ident()
        self.ctx = contextvars.copy_context()

    cdef int report(self, str what, exc, conn) except -1:
        self.loop.call_exception_handler({
            'message': f'Events.{what}() failed',
            'exception': exc,
            'conn': conn,
        })
        return 0

    cdef int request_shutdown(self) except -1:
        if not self.stopping:
            self.server._request_shutdown()
        return 0

    cdef int honour(self, object r, str what, conn) except -1:
        """closed/detached's return: only SHUTDOWN counts, as in evio."""
        try:
            if action_of(r, what) == SHUTDOWN:
                self.request_shutdown()
        except TypeError as exc:
            self.report(what, exc, conn)
        return 0

    cdef int call_pre_write(self) except -1:
        try:
            self.cb_pre_write()
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self.report('pre_write', exc, None)
        return 0

    cdef int count_dropped(self, str why) except -1:
        cdef double now = time.monotonic()
        self.udp_dropped += 1
        if now - self.drop_logged_at >= 1.0:
            self.drop_logged_at = now
            self.loop.call_exception_handler({
                'message': f'Events server: UDP {why}; {self.udp_dropped} '
                           f'datagrams dropped so far',
            })
        return 0

    def _conns(self):
        return list(self.conns)
