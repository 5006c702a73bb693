# cython: language_level=3
"""Layer 5, compiled: evio's conn on evioloop's dispatch.

A `Conn` is one connection of an Events server. On evioloop it is itself the
fd owner in the loop's fd table (native mode): the listener
(`NativeListener`) accepts and opens it at once, then the dispatch hands it
every ready event and it takes evio's next step:

    opened  `opened_step`: Events.opened, its options, out and action
    write   `write_step`: pending output, once the fd is writable
    action  `begin_close`/`finish_close`/`finish_detach`: close or detach
            after the output drained, or shut the server down
    read    `read_step`: recv into the loop's shared buffer, Events.data

On any other loop (portable mode) a `PortableConn` (_portable.pyx) is this
same Conn with its I/O steps (those declared last in _conn.pxd) done
through the host loop's transport, so the two modes share every rule but
the syscalls. docs/events.md is the contract.
"""
from libc.errno cimport errno, EAGAIN, EINTR
from libc.stdlib cimport malloc
from libc.stdint cimport uint64_t
from posix.unistd cimport close as close_fd
from cpython.bytes cimport PyBytes_FromStringAndSize, PyBytes_AS_STRING, PyBytes_GET_SIZE
from cpython.buffer cimport PyObject_GetBuffer, PyBuffer_Release, PyBUF_SIMPLE
from cpython.memoryview cimport PyMemoryView_FromObject

from evioloop.core._core cimport CoreLoop, FdOwner
from evioloop._poller cimport EVP_READ, EVP_WRITE
from evioloop.transports._outq cimport outq_push, outq_clear, outq_free, outq_send
from evioloop.transports._sockutil cimport (
    EWOULDBLOCK, socklen_t, sockaddr_storage, sockaddr, evs_send, evs_recv, evs_nodelay,
    evs_setint, os_error, peer_address)
from evioloop.transports._stream cimport Listener
from evioloop.events._server cimport (ServerCore, PacketView, NONE, DETACH, CLOSE,
                                      SHUTDOWN, action_of, check_out, data_result)
from evioloop.core._context cimport PyContext_Enter, PyContext_Exit

import collections
import socket
import threading

from .api import Action, Options, DEFAULT_OPTIONS

cdef extern from "sys/socket.h" nogil:
    int getsockname(int fd, sockaddr *addr, socklen_t *len)


cdef int AF_INET = socket.AF_INET
cdef int AF_INET6 = socket.AF_INET6
cdef int SOL_SOCKET = socket.SOL_SOCKET
cdef int SO_KEEPALIVE = socket.SO_KEEPALIVE
cdef int IPPROTO_TCP = socket.IPPROTO_TCP
cdef int TCP_NODELAY = socket.TCP_NODELAY
# macOS names the idle time TCP_KEEPALIVE
cdef int TCP_KEEPIDLE = getattr(socket, 'TCP_KEEPIDLE', getattr(socket, 'TCP_KEEPALIVE', -1))
cdef int TCP_KEEPINTVL = getattr(socket, 'TCP_KEEPINTVL', -1)
cdef int TCP_KEEPCNT = getattr(socket, 'TCP_KEEPCNT', -1)


cdef class Conn(FdOwner):
    """One connection of an Events server (evio's Conn); see docs/events.md."""
    def __cinit__(self):
        self.high = DEFAULT_OPTIONS.write_buffer_high
        self.low = DEFAULT_OPTIONS.write_buffer_low
        self.max_inbound = DEFAULT_OPTIONS.max_inbound

    def __dealloc__(self):
        outq_free(&self.outq)

    # -- opened

    cdef int opened_step(self) except -1:
        cdef ServerCore srv = self.srv
        out = opts = None
        action = NONE
        srv.conns.add(self)
        if srv.cb_opened is not None:
            self.in_call = True
            try:
                r = srv.cb_opened(self)
                if r is None:
                    pass
                elif type(r) is tuple:
                    if len(<tuple>r) != 3:
                        raise TypeError(f'Events.opened() returned a tuple of {len(r)}; '
                                        f'expected (out, options, action)')
                    out, opts, a = <tuple>r
                    action = action_of(a, 'opened')
                elif isinstance(r, Options):
                    opts = r
                elif isinstance(r, Action):
                    action = <int>r
                else:
                    out = r
                if out is not None:
                    check_out(out, 'opened')
                if opts is not None and not isinstance(opts, Options):
                    raise TypeError(f'Events.opened() returned {type(opts).__name__} as '
                                    f'its options; expected evioloop.Options or None')
                self.apply_options(opts)
            except (SystemExit, KeyboardInterrupt):
                raise
            except BaseException as exc:
                self.in_call = False
                return self.callback_failed('opened', exc)
            if out is not None:
                self.send(out)
            self.in_call = False
        else:
            self.apply_options(None)
        self.after_call(action)
        if self.state == OPEN:
            self.update_interest()
        return 0

    cdef int apply_options(self, opts) except -1:
        o = DEFAULT_OPTIONS if opts is None else opts
        cdef int fd = self.fd
        if self.family == AF_INET or self.family == AF_INET6:
            if o.tcp_nodelay:
                evs_nodelay(fd)
            else:
                self.setopt(IPPROTO_TCP, TCP_NODELAY, 0)
            if o.tcp_keepalive is not None:
                self.setopt(SOL_SOCKET, SO_KEEPALIVE, 1)
                self.setopt(IPPROTO_TCP, TCP_KEEPIDLE, <int>o.tcp_keepalive)
                if o.tcp_keepalive_interval is not None and TCP_KEEPINTVL >= 0:
                    self.setopt(IPPROTO_TCP, TCP_KEEPINTVL, <int>o.tcp_keepalive_interval)
                if o.tcp_keepalive_count is not None and TCP_KEEPCNT >= 0:
                    self.setopt(IPPROTO_TCP, TCP_KEEPCNT, o.tcp_keepalive_count)
        if opts is not None:
            self.reuse = o.reuse_input_buffer
            self.high = o.write_buffer_high
            self.low = o.write_buffer_low
            self.max_inbound = o.max_inbound
        return 0

    cdef int setopt(self, int level, int name, int value) except -1:
        if name < 0:
            return 0
        if evs_setint(self.fd, level, name, value) < 0:
            raise os_error(errno)
        return 0

    # -- the dispatch (native mode): evio's write, action, read

    cdef int on_ready(self, unsigned int mask) except -1:
        # the callbacks see listen()'s contextvars, as a portable server's
        # (whose host loop runs them in copies of that context) do
        PyContext_Enter(self.ctx)
        try:
            self.io_step(mask)
        finally:
            PyContext_Exit(self.ctx)
        return 0

    cdef int io_step(self, unsigned int mask) except -1:
        if mask & EVP_WRITE and self.outq.size:
            self.write_step()
        if self.state != OPEN:
            return 0        # close/detach waits for the output, nothing is read
        if mask & EVP_READ and self.mask & EVP_READ:
            self.read_step()
        return 0

    cdef int write_step(self) except -1:
        cdef Py_ssize_t k
        cdef int err
        if self.srv.cb_pre_write is not None:
            self.srv.call_pre_write()
            if self.state >= CLOSED:
                return 0
        k = outq_send(&self.outq, self.fd)
        if k < 0:
            err = errno
            if err == EAGAIN or err == EWOULDBLOCK or err == EINTR:
                return 0
            return self.lose(os_error(err))
        self.sent += k
        if self.completions:
            self.run_completions()
        if not self.outq.size:
            if self.state == CLOSING:
                return self.finish_close(None)
            if self.state == DETACHING:
                return self.finish_detach()
        return self.update_interest()

    cdef int read_step(self) except -1:
        cdef CoreLoop core = self.srv.core
        cdef ssize_t n = evs_recv(self.fd, core.packet, core.packet_size)
        cdef int err
        if n < 0:
            err = errno
            if err == EAGAIN or err == EWOULDBLOCK or err == EINTR:
                return 0
            return self.lose(os_error(err))
        if n == 0:
            return self.begin_close(CLOSE)      # a clean EOF: closed(conn, None)
        if self.reuse:
            return self.deliver_view(n)
        return self.deliver(PyBytes_FromStringAndSize(core.packet, n))

    cdef int update_interest(self) except -1:
        """The poller interest: read unless paused, write while output waits."""
        cdef unsigned int mask = 0
        cdef Py_ssize_t buffered
        if self.state >= CLOSED:
            return 0
        reading = self.state == OPEN and not self.user_paused
        buffered = self.outq.size
        if buffered > self.high:
            self.water_paused = True
        elif buffered <= self.low:
            self.water_paused = False
        if reading and not self.water_paused:
            mask |= EVP_READ
        if self.outq.size:
            mask |= EVP_WRITE
        self.srv.core.modify(self, mask)
        return 0

    cdef Py_ssize_t output_size(self):
        return self.outq.size

    # -- data

    cdef int deliver(self, object in_) except -1:
        """Call Events.data(conn, in_) and do what it returns."""
        cdef ServerCore srv = self.srv
        cdef int action
        if srv.cb_data is None:
            return 0
        self.in_call = self.in_data = True
        self.reader_used = False
        self.cur_in = in_
        self.cur_pos = 0
        self.cur_len = 0 if in_ is None else len(in_)
        try:
            out = data_result(srv.cb_data(self, in_), &action)
        except (SystemExit, KeyboardInterrupt):
            self.end_data(False)
            raise
        except BaseException as exc:
            self.end_data(False)
            return self.callback_failed('data', exc)
        if out is not None:
            self.send(out)          # before a view of the read buffer is released
        self.end_data(True)
        return self.after_call(action)

    cdef int end_data(self, bint keep) except -1:
        """Keep what a call that used the reader left unread; nothing else."""
        cdef Py_ssize_t left
        self.in_call = self.in_data = False
        if keep and self.reader_used:
            left = (len(self.tail) - self.tail_pos if self.tail is not None else 0) + \
                (self.cur_len - self.cur_pos)
            if left == 0:
                self.tail = None
            elif self.tail is None or self.tail_pos == len(self.tail):
                self.tail = bytes(self.cur_in[self.cur_pos:])
            else:
                self.tail = self.tail[self.tail_pos:] + bytes(self.cur_in[self.cur_pos:]) \
                    if self.cur_pos < self.cur_len else self.tail[self.tail_pos:]
            self.tail_pos = 0
            if left > self.max_inbound and self.io_error is None:
                self.io_error = BufferError(
                    f'{left} bytes of unconsumed input exceed max_inbound '
                    f'({self.max_inbound})')
        else:
            self.tail = None
            self.tail_pos = 0
        self.cur_in = None
        self.cur_pos = self.cur_len = 0
        return 0

    cdef int deliver_view(self, Py_ssize_t n) except -1:
        cdef ServerCore srv = self.srv
        cdef PacketView pv = srv.pv
        pv.buf = srv.core.packet
        pv.length = n
        view = PyMemoryView_FromObject(pv)
        try:
            self.deliver(view)
        finally:
            try:
                view.release()
            except BufferError:
                pass        # exported further (numpy...): it keeps the memory below
            if pv.exports:
                # a view outlived the call: it keeps this memory for good
                fresh = <char *>malloc(srv.core.packet_size)
                if fresh is NULL:
                    raise MemoryError()
                pv.owns = True
                srv.core.packet = fresh
                srv.pv = PacketView()
        return 0

    # -- after a callback: its action, a close() or an error met meanwhile

    cdef int after_call(self, int action) except -1:
        if self.state >= CLOSED:
            return 0
        if self.io_error is not None:
            exc, self.io_error = self.io_error, None
            return self.lose(exc)
        if self.close_requested:
            self.close_requested = False
            self.begin_close(CLOSE)
        if action == CLOSE or action == DETACH:
            self.begin_close(action)
        elif action == SHUTDOWN:
            self.srv.request_shutdown()
        return 0

    cdef int callback_failed(self, str what, exc) except -1:
        self.srv.report(what, exc, self)
        return self.lose(exc)

    # -- write

    cdef int send(self, object out) except -1:
        """One send attempt at once; only what the kernel did not take waits."""
        cdef Py_buffer view
        cdef const char *p
        cdef Py_ssize_t n, k
        cdef int err
        cdef bint have_view = False
        if self.state >= CLOSED or self.io_error is not None:
            return 0
        if type(out) is not bytes:
            try:
                PyObject_GetBuffer(out, &view, PyBUF_SIMPLE)
                have_view = True
            except BufferError:
                out = bytes(memoryview(out))    # strided: one contiguous copy
        if not have_view:
            p = PyBytes_AS_STRING(out)
            n = PyBytes_GET_SIZE(out)
        else:
            p = <const char *>view.buf
            n = view.len
        try:
            if n == 0:
                return 0
            self.written += n
            if self.outq.size:
                outq_push(&self.outq, out if type(out) is bytes
                          else PyBytes_FromStringAndSize(p, n))
                return self.update_interest()
            if self.srv.cb_pre_write is not None:
                self.srv.call_pre_write()
            k = evs_send(self.fd, p, n)
            if k < 0:
                err = errno
                if err != EAGAIN and err != EWOULDBLOCK and err != EINTR:
                    self.written -= n
                    return self.write_failed(os_error(err))
                k = 0
            self.sent += k
            if k == n:
                return 0
            outq_push(&self.outq, PyBytes_FromStringAndSize(p + k, n - k))
            return self.update_interest()
        finally:
            if have_view:
                PyBuffer_Release(&view)

    cdef int write_failed(self, exc) except -1:
        if self.in_call:
            self.io_error = exc     # after the callback returns
            outq_clear(&self.outq)
            return 0
        return self.lose(exc)

    cdef uint64_t sent_total(self):
        return self.sent

    cdef int run_completions(self) except -1:
        cdef uint64_t sent = self.sent_total()
        while self.completions and self.completions[0][0] <= sent:
            _, callback = self.completions.popleft()
            self.srv.loop.call_soon(self.completed, callback, None)
        return 0

    cdef int completion_pending(self) except -1:
        return 0        # native: the write step runs the completions

    def completed(self, callback, err):
        try:
            callback(self, err)
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self.srv.report('write_threadsafe callback', exc, self)

    # -- close and detach

    cdef int begin_close(self, int kind) except -1:
        """CLOSE or DETACH once the pending output is written."""
        if self.state != OPEN:
            return 0
        self.state = CLOSING if kind == CLOSE else DETACHING
        if self.outq.size:
            return self.update_interest()   # write interest only
        if kind == CLOSE:
            return self.finish_close(None)
        return self.finish_detach()

    cdef int lose(self, exc) except -1:
        """A fatal error: drop the output, close now, closed(conn, exc)."""
        outq_clear(&self.outq)
        return self.finish_close(exc, True)

    cdef int finish_close(self, err, bint abort=False) except -1:
        cdef ServerCore srv = self.srv
        if self.state >= CLOSED:
            return 0
        self.state = CLOSED
        self.close_io(abort)
        self.fd = -1
        outq_clear(&self.outq)
        srv.conns.discard(self)
        self.tail = None
        self.fail_completions(err)
        if srv.cb_closed is not None:
            self.in_call = True
            try:
                r = srv.cb_closed(self, err)
            except (SystemExit, KeyboardInterrupt):
                raise
            except BaseException as exc:
                srv.report('closed', exc, self)
            else:
                srv.honour(r, 'closed', self)
            self.in_call = False
        return 0

    cdef int close_io(self, bint abort) except -1:
        if self.fd >= 0:
            self.srv.core.unregister(self)
            close_fd(self.fd)
        return 0

    cdef int fail_completions(self, err) except -1:
        if not self.completions:
            return 0
        reason = err if err is not None else ConnectionError('the connection was closed')
        while self.completions:
            _, callback = self.completions.popleft()
            self.srv.loop.call_soon(self.completed, callback, reason)
        return 0

    cdef int finish_detach(self) except -1:
        cdef ServerCore srv = self.srv
        sock = self.detach_socket()
        sock.setblocking(True)
        self.state = DETACHED
        self.fd = -1
        srv.conns.discard(self)
        self.fail_completions(None)
        if srv.cb_detached is None:
            sock.close()        # nobody takes it: as evio, it is closed
            return 0
        self.in_call = True
        try:
            r = srv.cb_detached(self, sock)
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            srv.report('detached', exc, self)
        else:
            srv.honour(r, 'detached', self)
        self.in_call = False
        return 0

    cdef object detach_socket(self):
        """The socket detached() gets; the loop forgets the fd."""
        self.srv.core.unregister(self)
        return socket.socket(self.family, socket.SOCK_STREAM, 0, fileno=self.fd)

    cdef int request_close(self) except -1:
        if self.in_call:
            self.close_requested = True
        else:
            self.begin_close(CLOSE)
        return 0

    def _shutdown_close(self):
        """Server shutdown: one last non-blocking write, then closed(conn, None)."""
        if self.state >= CLOSED:
            return
        self.last_write()
        self.finish_close(None, bool(self.output_size()))

    cdef int last_write(self) except -1:
        if self.outq.size and self.fd >= 0:
            outq_send(&self.outq, self.fd)
        return 0

    # -- the public face (docs/events.md)

    @property
    def remote_addr(self):
        return self._remote_addr        # from accept(), or the host transport

    @property
    def local_addr(self):
        cdef sockaddr_storage ss
        cdef socklen_t n = sizeof(ss)
        if self._local_addr is None and self.fd >= 0:
            if getsockname(self.fd, <sockaddr *>&ss, &n) == 0:
                self._local_addr = peer_address(&ss, n)
        return self._local_addr

    @property
    def output_buffered(self):
        if self.state >= CLOSED:
            return 0
        return self.output_size()

    def write(self, data):
        """Write now: one send attempt, only the rest is queued (loop thread)."""
        check_out(data, 'Conn.write')
        self.send(data)
        if not self.in_call:
            self.after_call(NONE)

    def writelines(self, list_of_data):
        """write() each item; they go out in order (loop thread)."""
        for data in list_of_data:
            self.write(data)

    def write_threadsafe(self, data, callback=None):
        """Queue data for the loop to write, from any thread (docs/events.md)."""
        if type(data) is not bytes:
            data = bytes(memoryview(data))
        n = len(data)
        if self.threadsafe_pending + self.output_buffered + n > 4 * self.high:
            raise BufferError(f'write_threadsafe: {self.threadsafe_pending} bytes queued '
                              f'and {self.output_buffered} unsent; the bound is '
                              f'{4 * self.high} (4 x write_buffer_high)')
        self.threadsafe_pending += n
        self.srv.loop.call_soon_threadsafe(self._write_from_thread, data, callback)

    def _write_from_thread(self, bytes data, callback):
        self.threadsafe_pending -= len(data)
        if self.state != OPEN:
            if callback is not None:
                self.completed(callback, ConnectionError('the connection is closed'))
            return
        self.send(data)
        self.after_call(NONE)
        if callback is None:
            return
        if self.state >= CLOSED:
            pass                    # fail_completions has nothing for this one
        elif self.sent_total() >= self.written:
            self.completed(callback, None)
            return
        else:
            if self.completions is None:
                self.completions = collections.deque()
            self.completions.append((self.written, callback))
            if len(self.completions) == 1:
                self.completion_pending()
            return
        self.completed(callback, ConnectionError('the connection was lost'))

    def wake(self):
        """From any thread: call data(conn, None) on the loop (merged, dropped
        once closed)."""
        if self.wake_pending or self.state >= CLOSED:
            return
        self.wake_pending = True
        self.srv.loop.call_soon_threadsafe(self._on_wake)

    def _on_wake(self):
        self.wake_pending = False
        if self.state == OPEN:
            self.deliver(None)

    def close(self):
        """From any thread: close once the pending output is written."""
        if threading.get_ident() == self.srv.thread_id:
            self.request_close()
        else:
            self.srv.loop.call_soon_threadsafe(self._close)

    def _close(self):
        self.request_close()

    def pause_reading(self):
        self.user_paused = True
        self.update_interest()

    def resume_reading(self):
        self.user_paused = False
        self.update_interest()

    def is_reading(self):
        return self.state == OPEN and not self.user_paused and not self.water_paused

    # -- the pull reader (inside data only)

    cdef int check_reader(self) except -1:
        if not self.in_data:
            raise RuntimeError('the pull reader (peek/next/discard/inbound_buffered) '
                               'works only inside Events.data()')
        self.reader_used = True
        return 0

    cdef Py_ssize_t available(self):
        cdef Py_ssize_t n = self.cur_len - self.cur_pos
        if self.tail is not None:
            n += len(self.tail) - self.tail_pos
        return n

    cdef bytes take(self, Py_ssize_t n, bint consume):
        cdef Py_ssize_t avail = self.available(), t = 0
        cdef bytes head = b''
        if n < 0 or n > avail:
            n = avail
        if self.tail is not None:
            t = min(n, len(self.tail) - self.tail_pos)
            head = self.tail[self.tail_pos:self.tail_pos + t]
        if t < n:
            head = head + bytes(self.cur_in[self.cur_pos:self.cur_pos + n - t])
        if consume:
            self.tail_pos += t
            self.cur_pos += n - t
        return head

    def peek(self, Py_ssize_t n=-1):
        """Up to n bytes of input (-1: all), not consumed."""
        self.check_reader()
        return self.take(n, False)

    def next(self, Py_ssize_t n=-1):
        """Up to n bytes of input (-1: all), consumed."""
        self.check_reader()
        return self.take(n, True)

    def discard(self, Py_ssize_t n=-1):
        """Drop up to n bytes of input (-1: all); how many were dropped."""
        cdef Py_ssize_t avail, t = 0
        self.check_reader()
        avail = self.available()
        if n < 0 or n > avail:
            n = avail
        if self.tail is not None:
            t = min(n, len(self.tail) - self.tail_pos)
            self.tail_pos += t
        self.cur_pos += n - t
        return n

    @property
    def inbound_buffered(self):
        self.check_reader()
        return self.available()

    cdef str mode(self):
        return 'native'

    def __repr__(self):
        state = ('open', 'closing', 'detaching', 'closed', 'detached')[self.state]
        return f'<evioloop.Conn {self.mode()} fd={self.fd} {state} addr_index={self.addr_index}>'


cdef class NativeListener(Listener):
    """A listening socket of an Events server: accept, then opened at once
    (evio's loopAccept then loopOpened, without its extra poll round)."""
    cdef ServerCore srv
    cdef int addr_index

    cdef int open_conn(self, int cfd, peername) except -1:
        cdef Conn c = Conn.__new__(Conn)
        c.srv = self.srv
        c.fd = cfd
        c.family = self.family
        c.addr_index = self.addr_index
        c._remote_addr = peername
        c.ctx = self.srv.ctx.copy()
        try:
            self.loop.register(c, 0)
        except BaseException:
            close_fd(cfd)
            raise
        PyContext_Enter(c.ctx)
        try:
            c.opened_step()
        finally:
            PyContext_Exit(c.ctx)
        return 0


def start_native_listener(ServerCore srv, sock, int addr_index, int backlog):
    cdef NativeListener ln = NativeListener()
    ln.srv = srv
    ln.loop = srv.core
    ln.addr_index = addr_index
    ln.fd = sock.fileno()
    ln.sock = sock
    ln.family, ln.socktype, ln.proto = sock.family, sock.type, sock.proto
    ln.backlog = max(1, backlog)
    srv.core.register(ln, EVP_READ)
    return ln


# ---------------------------------------------------------------- UDP
