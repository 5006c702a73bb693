# cython: language_level=3
"""Layer 3: the datagram transport (UDP over IPv4/IPv6, Unix datagram sockets).

A datagram socket's owner in the core's dispatch is a `DgramConn`: `_start`
(connection_made, then reading), reads (one recvfrom per wake-up, or recvmmsg
batches while datagrams queue up), sendto() straight to the kernel (what it
refuses with EAGAIN is queued until writable), close / abort. The behaviour is
the stock `_SelectorDatagramTransport`'s, version for version (checks,
exception types, error_received, write-buffer accounting, contexts), but for
one thing uvloop does too: on a socket connected to an unnamed peer (a
socketpair), sendto(data) with no address sends to it instead of failing.
The protocol sees `DgramTransport`, an asyncio.DatagramTransport with
asyncio's own _FlowControlMixin (water marks, pause/resume_writing).
"""
from libc.errno cimport errno, EAGAIN, EINTR
from cpython.bytes cimport PyBytes_FromStringAndSize, PyBytes_AS_STRING, PyBytes_GET_SIZE
from cpython.object cimport PyObject
from cpython.buffer cimport PyObject_GetBuffer, PyBuffer_Release, PyBUF_SIMPLE

from evioloop.core._core cimport CoreLoop
from evioloop.transports._flow cimport FlowConn
from evioloop._poller cimport EVP_READ, EVP_WRITE
from evioloop.transports._sockutil cimport EWOULDBLOCK, os_error
from evioloop.core._context cimport PyContext_Enter, PyContext_Exit, PyContext_CopyCurrent

import collections
import socket
import sys
from asyncio import base_events as _base_events
from asyncio import selector_events as _selector_events
from asyncio import transports as _transports
from asyncio import trsock as _trsock

from evioloop.transports._flow import (ConnTransport, ReadFlowTransport, SocketTransport,
                                       WriteFlowTransport)

cdef extern from "Python.h":
    object PyObject_VectorcallMethod(object name, PyObject **args, size_t nargsf,
                                     PyObject *kwnames)
    object PyUnicode_DecodeFSDefault(const char *s)

cdef extern from "dgramio.h" nogil:
    const int EVD_BATCH_MAX
    ctypedef unsigned int socklen_t
    ctypedef struct evd_addr:
        socklen_t len
    ctypedef struct evd_rx:
        int n
        int err
    evd_rx *evd_rx_new(size_t slot, int n)
    void evd_rx_free(evd_rx *rx)
    int evd_recv_batch(int fd, evd_rx *rx)
    int evd_recv_one(int fd, evd_rx *rx)
    const char *evd_rx_buf(const evd_rx *rx, int i)
    size_t evd_rx_len(const evd_rx *rx, int i)
    evd_addr *evd_rx_addr(evd_rx *rx, int i)
    int evd_addr_eq(const evd_addr *a, const evd_addr *b)
    void evd_addr_copy(evd_addr *dst, const evd_addr *src)
    int evd_family(const evd_addr *a)
    ssize_t evd_send(int fd, const char *buf, size_t len)
    ssize_t evd_sendto(int fd, const char *buf, size_t len, const evd_addr *a)
    int evd_inet4(const char *host, unsigned long port, evd_addr *out)
    int evd_inet6(const char *host, unsigned long port, unsigned long flowinfo,
                  unsigned long scope_id, evd_addr *out)
    int evd_host_text(const evd_addr *a, char *host, size_t hostlen)
    unsigned evd_port(const evd_addr *a)
    unsigned evd_flowinfo(const evd_addr *a)
    unsigned evd_scope_id(const evd_addr *a)
    const char *evd_sun_path(const evd_addr *a)
    size_t evd_sun_path_len(const evd_addr *a)

cdef object TransportSocket = _trsock.TransportSocket
cdef object logger = _base_events.logger
cdef int AF_INET = socket.AF_INET
cdef int AF_INET6 = socket.AF_INET6
cdef int AF_UNIX = socket.AF_UNIX
cdef int SOCK_DGRAM = socket.SOCK_DGRAM

# One datagram per wake-up (a recvfrom, as the stock loop) until a socket is
# found readable PROBE_EVERY times in a row; then batches, while they find
# more than one datagram, at most READ_BATCHES (recvmmsg calls) per wake-up so
# that one busy socket cannot starve the others.
cdef int READ_BATCHES = 4
cdef int PROBE_EVERY = 8
# receive slots: a UDP datagram has at most 65535 bytes; a Unix one is read up
# to the stock max_size (256 KiB)
cdef size_t UDP_SLOT = 64 * 1024
cdef size_t UNIX_SLOT = _selector_events._SelectorDatagramTransport.max_size
cdef int UNIX_BATCH = 4

cdef str DATAGRAM_RECEIVED = 'datagram_received'

# what became of a datagram handed to send_one
cdef enum:
    SENT, REFUSED, FAILED


# -- the stock write-buffer accounting per version, as its selector_events.py
# has it (_SelectorDatagramTransport's get_write_buffer_size, sendto and
# _sendto_ready; _SelectorTransport._force_close):
#   summed      get_write_buffer_size() sums the queue (3.10: abort() resets
#               it); later ones keep a counter, which abort() leaves alone
#   push / pop  bytes counted beyond its length per datagram queued / sent
#   drop_empty  sendto(b'') returns at once (3.10-3.12; 3.13 sends it)
# 3.13.0 counts 8 header bytes when it queues and none when it sends (the
# count never returns to 0); gh-135444 (3.14, and a 3.13 bug-fix release)
# uncounts them too, naming them in the class attribute `_header_size`.
STOCK_ACCOUNTING = {
    # (major, minor): (summed, push, pop, drop_empty)
    (3, 10): (True, 0, 0, True),
    (3, 11): (False, 0, 0, True),
    (3, 12): (False, 0, 0, True),
    (3, 13): (False, 8, 0, False),
    (3, 14): (False, 8, 8, False),
}
# from 3.13 on, pop is the class's `_header_size` (0 without one)


def stock_accounting(version=None, cls=None):
    """(summed, push, pop, drop_empty) of the stock datagram transport of
    `version` (default: this Python's; a later one is taken to be 3.14's)."""
    if version is None:
        version = sys.version_info[:2]
    if cls is None:
        cls = _selector_events._SelectorDatagramTransport
    key = min(tuple(version), max(STOCK_ACCOUNTING))
    summed, push, pop, drop_empty = STOCK_ACCOUNTING[key]
    if key >= (3, 13):
        pop = getattr(cls, '_header_size', 0)
    return summed, push, pop, drop_empty


_summed, _push, _pop, _drop_empty = stock_accounting()
cdef bint BUFFER_SUMMED = _summed
cdef Py_ssize_t PUSH_OVERHEAD = _push
cdef Py_ssize_t POP_OVERHEAD = _pop
cdef bint DROP_EMPTY = _drop_empty


cdef class RxBuffer:
    """A loop's receive buffer for one slot size (the loop runs one step at a
    time, so its datagram sockets share it)."""
    cdef evd_rx *rx

    def __dealloc__(self):
        evd_rx_free(self.rx)
        self.rx = NULL


cdef RxBuffer rx_buffer(loop, int family):
    cdef RxBuffer buf
    bufs = getattr(loop, '_evioloop_dgram_rx', None)
    if bufs is None:
        bufs = {}
        loop._evioloop_dgram_rx = bufs
    unix = family == AF_UNIX
    buf = bufs.get(unix)
    if buf is None:
        buf = RxBuffer()
        if unix:
            buf.rx = evd_rx_new(UNIX_SLOT, UNIX_BATCH)
        else:
            buf.rx = evd_rx_new(UDP_SLOT, EVD_BATCH_MAX)
        if buf.rx is NULL:
            raise MemoryError()
        bufs[unix] = buf
    return buf


cdef object sender_address(evd_addr *a):
    """A received datagram's sender as the socket module's recvfrom gives it."""
    cdef char host[128]
    cdef const char *path
    cdef size_t n
    cdef int family
    if a.len == 0:
        return None
    family = evd_family(a)
    if family == AF_INET or family == AF_INET6:
        if evd_host_text(a, host, sizeof(host)) < 0:
            raise OSError('cannot read the sender address')
        if family == AF_INET:
            return (host.decode('ascii'), evd_port(a))
        return (host.decode('ascii'), evd_port(a), evd_flowinfo(a), evd_scope_id(a))
    if family == AF_UNIX:
        path = evd_sun_path(a)
        n = evd_sun_path_len(a)
        if n > 0 and path[0] == 0:
            return path[:n]                 # Linux abstract namespace: bytes
        return PyUnicode_DecodeFSDefault(path)
    return None


cdef bytes ascii_or_none(str host):
    try:
        return host.encode('ascii')
    except UnicodeError:
        return None


cdef class DgramConn(FlowConn):
    """A datagram socket's owner. FlowConn's byte queue stays empty: the
    output is `buffer`, datagrams with their addresses, accounted as the
    stock transport does (output_size)."""
    cdef object sock                 # the Python socket (None once closed)
    cdef int family
    cdef object address              # the remote address given at creation
    cdef object peername
    cdef bint use_send               # connected: send() rather than sendto()
    cdef bint send_unnamed           # connected to an unnamed peer (see sendto)
    cdef bint python_io              # a socket subclass: its own methods do the I/O
    cdef object buffer               # deque of (bytes, addr) the kernel refused
    cdef Py_ssize_t buffer_size      # as the stock get_write_buffer_size()
    cdef object ctx_io, ctx_write
    cdef RxBuffer rxbuf
    cdef evd_addr rx_last            # the last sender seen, and its Python form
    cdef object rx_last_obj
    cdef object tx_last_obj          # the last address sent to, and its sockaddr
    cdef evd_addr tx_last
    cdef list pending                # datagrams read but not delivered (paused)
    cdef bint rx_batches             # read batches (recvmmsg), not one datagram
    cdef int rx_singles              # single reads in a row that found a datagram
    cdef bint has_address            # a remote address was given at creation

    cdef int init(self, CoreLoop loop, sock, protocol, address, extra) except -1:
        self.loop = loop
        self.sock = sock
        self.fd = sock.fileno()
        self.family = sock.family
        self.address = address
        self.has_address = bool(address)
        self.buffer = collections.deque()
        self.extra = dict(extra) if extra else {}
        # as _SelectorTransport.__init__: the addresses are read once, now
        self.extra['socket'] = TransportSocket(sock)
        try:
            self.extra['sockname'] = sock.getsockname()
        except OSError:
            self.extra['sockname'] = None
        if 'peername' not in self.extra:
            try:
                self.extra['peername'] = sock.getpeername()
            except OSError:
                self.extra['peername'] = None
        self.peername = self.extra['peername']
        self.use_send = bool(self.peername)
        # a socketpair's peer has no name ('' on Linux): the stock transport
        # takes it for unconnected and fails on sendto(data); uvloop sends
        self.send_unnamed = not self.use_send and self.peername is not None
        # a subclass may override send/sendto/recvfrom (tests inject faults
        # that way): its methods are called, as the stock transport does
        self.python_io = type(sock) is not socket.socket
        self.rxbuf = rx_buffer(loop, self.family)
        # connection_made and the reads: a copy of the context each (stock)
        self.ctx_made = PyContext_CopyCurrent()
        self.ctx_io = PyContext_CopyCurrent()
        self.transport = DgramTransport(self)
        self.protocol = protocol
        loop.register(self, 0)
        return 0

    cdef int update_interest(self) except -1:
        cdef unsigned int mask = 0
        if self.closed:
            return 0
        # datagrams read before a pause_reading() go first (_deliver_pending)
        if self.started and not (self.paused or self.closing or self.pending):
            mask |= EVP_READ
        if self.writing:
            mask |= EVP_WRITE
        self.loop.modify(self, mask)
        return 0

    # -- dispatch

    cdef int on_ready(self, unsigned int mask) except -1:
        # the stock selector loop runs the reader before the writer
        if mask & EVP_READ and self.mask & EVP_READ:
            PyContext_Enter(self.ctx_io)
            try:
                self.read_ready()
            finally:
                PyContext_Exit(self.ctx_io)
        if mask & EVP_WRITE and self.writing:
            ctx = self.ctx_write        # sendto_ready may drop it
            PyContext_Enter(ctx)
            try:
                self.sendto_ready()
            finally:
                PyContext_Exit(ctx)
        return 0

    # -- read

    cdef int read_ready(self) except -1:
        if self.python_io:
            return self.read_python()
        if self.rx_batches:
            return self.read_batches()
        return self.read_one()

    cdef int read_one(self) except -1:
        cdef evd_rx *rx = self.rxbuf.rx
        cdef int err
        if self.conn_lost or self.paused or self.closing:
            return 0
        if evd_recv_one(self.fd, rx) < 0:
            err = errno
            self.rx_singles = 0
            if err != EAGAIN and err != EWOULDBLOCK and err != EINTR:
                self.report_error(os_error(err))
            return 0
        data = PyBytes_FromStringAndSize(evd_rx_buf(rx, 0), evd_rx_len(rx, 0))
        addr = self.sender(evd_rx_addr(rx, 0))
        self.rx_singles += 1
        if self.rx_singles >= PROBE_EVERY:
            # readable every time: the next wake-up reads batches, which
            # tells whether datagrams are queueing up
            self.rx_singles = 0
            self.rx_batches = True
        return self.received(data, addr)

    cdef object sender(self, evd_addr *a):      # one object per sender in a row
        if self.rx_last_obj is None or not evd_addr_eq(a, &self.rx_last):
            self.rx_last_obj = sender_address(a)
            evd_addr_copy(&self.rx_last, a)
        return self.rx_last_obj

    cdef int read_batches(self) except -1:
        cdef evd_rx *rx = self.rxbuf.rx
        cdef int b, i, got, err
        cdef list datagrams
        for b in range(READ_BATCHES):
            if self.conn_lost or self.paused or self.closing:
                return 0
            got = evd_recv_batch(self.fd, rx)
            err = errno
            if b == 0 and got <= 1:
                self.rx_batches = False         # no queue: back to single reads
            if got < 0:
                if err != EAGAIN and err != EWOULDBLOCK and err != EINTR:
                    self.report_error(os_error(err))
                return 0
            # Every datagram of the batch becomes an object before any
            # callback runs: a callback may reach the buffer again.
            datagrams = []
            for i in range(got):
                datagrams.append((PyBytes_FromStringAndSize(evd_rx_buf(rx, i),
                                                            evd_rx_len(rx, i)),
                                  self.sender(evd_rx_addr(rx, i))))
            err = rx.err
            self.deliver(datagrams, 0)
            if err:
                self.report_error(os_error(err))
                return 0
            if got < rx.n:
                return 0
        return 0

    cdef int read_python(self) except -1:
        # the stock _read_ready: one datagram per wake-up
        try:
            data, addr = self.sock.recvfrom(UNIX_SLOT)
        except (BlockingIOError, InterruptedError):
            return 0
        except OSError as exc:
            return self.report_error(exc)
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            return self.fatal_error(exc, 'Fatal read error on datagram transport')
        return self.deliver([(data, addr)], 0)

    cdef int deliver(self, list datagrams, Py_ssize_t start) except -1:
        cdef Py_ssize_t i, n = len(datagrams)
        cdef tuple dg
        for i in range(start, n):
            if self.conn_lost or self.closing:
                return 0        # the stock loop would not have read them
            if self.paused:
                # read already: they wait for resume_reading()
                self.pending = datagrams[i:]
                return 0
            dg = <tuple>datagrams[i]
            self.received(dg[0], dg[1])
        return 0

    cdef int received(self, data, addr) except -1:
        # protocol.datagram_received(data, addr), looked up on every call as
        # the stock transport does, without making a bound method
        proto = self.protocol       # held: the callback may set another one
        cdef PyObject *args[3]
        args[:] = [<PyObject *>proto, <PyObject *>data, <PyObject *>addr]
        try:
            PyObject_VectorcallMethod(DATAGRAM_RECEIVED, args, 3, NULL)
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            # as a stock _read_ready callback that raised: reported, and
            # the next datagram is delivered all the same
            self.report_callback_error(exc)
        return 0

    def _deliver_pending(self):
        pending, self.pending = self.pending, None
        if pending:
            self.deliver(pending, 0)
            if not self.pending:
                self.update_interest()

    cdef int report_error(self, exc) except -1:
        try:
            self.protocol.error_received(exc)
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as cb_exc:
            self.report_callback_error(cb_exc)
        return 0

    cdef int report_callback_error(self, exc) except -1:
        return self.report_to_loop('Exception in callback DgramTransport._read_ready()', exc)

    cdef int report_to_loop(self, str message, exc) except -1:
        self.loop.call_exception_handler({'message': message, 'exception': exc,
                                          'transport': self.transport,
                                          'protocol': self.protocol})
        return 0

    # -- write

    def sendto(self, data, addr=None):
        if type(data) is bytes:
            if DROP_EMPTY and PyBytes_GET_SIZE(data) == 0:
                return
        elif not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f'data argument must be a bytes-like object, '
                            f'not {type(data).__name__!r}')
        elif DROP_EMPTY and not data:
            return
        if self.has_address:
            if addr not in (None, self.address):
                raise ValueError(f'Invalid address: must be None or {self.address}')
            addr = self.address
        if self.conn_lost and self.has_address:
            self.lost_write('socket.send() raised exception.')
            return
        if not self.buffer:
            if self.send_one(data, addr) != REFUSED:
                return
        # the kernel refused it (or more is queued): keep an immutable copy
        data = bytes(data)
        self.buffer.append((data, addr))
        self.buffer_size += len(data) + PUSH_OVERHEAD
        self.maybe_pause_protocol()

    cdef int send_one(self, data, addr) except -1:
        """Send one datagram now: SENT, REFUSED (EAGAIN: to be queued) or
        FAILED (error_received or a fatal error took it)."""
        cdef Py_buffer view
        cdef ssize_t n
        cdef int err, how
        if self.closed:
            # the stock transport's socket is gone: its sendto fails there
            raise AttributeError("'NoneType' object has no attribute 'sendto'")
        how = 0 if self.python_io else self.send_how(addr)
        if how == 0:
            return self.send_python(data, addr)
        if type(data) is bytes:
            n = self.send_raw(PyBytes_AS_STRING(data), PyBytes_GET_SIZE(data), how)
            err = errno
        else:
            PyObject_GetBuffer(data, &view, PyBUF_SIMPLE)
            n = self.send_raw(<const char *>view.buf, view.len, how)
            err = errno
            PyBuffer_Release(&view)
        if n >= 0:
            return SENT
        if err == EAGAIN or err == EWOULDBLOCK or err == EINTR:
            self.start_writing()
            return REFUSED
        self.protocol.error_received(os_error(err))
        return FAILED

    cdef inline ssize_t send_raw(self, const char *buf, Py_ssize_t size, int how) noexcept:
        # the syscall alone (errno tells the caller what failed)
        if how == 1:
            return evd_send(self.fd, buf, size)
        return evd_sendto(self.fd, buf, size, &self.tx_last)

    cdef int send_how(self, addr) except -1:
        """1: send(), 2: sendto(tx_last), 0: through the socket module."""
        cdef bytes host
        if self.use_send or (addr is None and self.send_unnamed):
            return 1
        if addr is None:
            return 0
        if addr is self.tx_last_obj:
            return 2
        if type(addr) is not tuple or self.family == AF_UNIX:
            return 0
        if self.family == AF_INET:
            if len(addr) != 2 or type(addr[0]) is not str or type(addr[1]) is not int:
                return 0
            host = ascii_or_none(addr[0])
            if (host is None or not (0 <= addr[1] <= 65535)
                    or not evd_inet4(host, addr[1], &self.tx_last)):
                self.tx_last_obj = None
                return 0
        elif self.family == AF_INET6:
            if not (2 <= len(addr) <= 4) or type(addr[0]) is not str:
                return 0
            for part in addr[1:]:
                if type(part) is not int or not (0 <= part <= 0xffffffff):
                    return 0
            host = ascii_or_none(addr[0])
            if host is None or not evd_inet6(
                    host, addr[1], addr[2] if len(addr) > 2 else 0,
                    addr[3] if len(addr) > 3 else 0, &self.tx_last):
                self.tx_last_obj = None
                return 0
        else:
            return 0
        self.tx_last_obj = addr
        return 2

    cdef int send_python(self, data, addr) except -1:
        # what the fast path does not parse (names, Unix paths, bad values):
        # the stock call, with the stock handling of what it raises
        try:
            if self.peername or (addr is None and self.send_unnamed):
                self.sock.send(data)
            else:
                self.sock.sendto(data, addr)
            return SENT
        except (BlockingIOError, InterruptedError):
            self.start_writing()
            return REFUSED
        except OSError as exc:
            self.protocol.error_received(exc)
            return FAILED
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self.fatal_error(exc, 'Fatal write error on datagram transport')
            return FAILED

    cdef int start_writing(self) except -1:
        if not self.writing:
            # the stock writer callback runs in a copy of this context
            self.ctx_write = PyContext_CopyCurrent()
            self.writing = True
            self.update_interest()
        return 0

    cdef int stop_writing(self) except -1:
        if self.writing:
            self.writing = False
            self.ctx_write = None
            self.update_interest()
        return 0

    cdef int sendto_ready(self) except -1:
        cdef int r
        while self.buffer:
            data, addr = self.buffer.popleft()
            self.buffer_size -= len(data) + POP_OVERHEAD
            # what error_received raises propagates, as from the stock writer
            r = self.send_one(data, addr)
            if r == REFUSED:
                self.buffer.appendleft((data, addr))     # try again later
                self.buffer_size += len(data) + POP_OVERHEAD
                break
            if r == FAILED:
                return 0        # the stock writer stops here (still watching)
        self.maybe_resume_protocol()                    # may queue more
        if not self.buffer:
            self.stop_writing()
            if self.closing:
                self.call_connection_lost(None)
        return 0

    # -- FlowConn's steps, over the datagram queue

    cdef Py_ssize_t output_size(self):
        return self.buffer_size

    cdef bint has_output(self):
        return bool(self.buffer)

    cdef int drop_output(self) except -1:
        if self.buffer:
            self.buffer.clear()
            if BUFFER_SUMMED:
                self.buffer_size = 0
            self.ctx_write = None
        return 0

    cdef int reading_resumed(self) except -1:
        if self.pending:
            self.loop.call_soon(self._deliver_pending, context=self.ctx_io)
        return 0

    cdef int close(self) except -1:
        if not self.closing:
            self.pending = None         # read, but never to be delivered
        return FlowConn.close(self)

    cdef int drained_close(self) except -1:
        self.conn_lost += 1             # later sendto()s are dropped and counted
        return self.stop_writing()

    cdef int force_close(self, exc) except -1:
        if self.conn_lost:
            return 0
        self.conn_lost += 1
        self.pending = None
        return FlowConn.force_close(self, exc)

    cdef int close_now(self) except -1:
        # out of the fd table first: the number may be reused once closed
        if self.closed:
            return 0
        self.closed = True
        self.writing = False
        self.loop.unregister(self)
        self.sock.close()
        return 0

    def __repr__(self):
        return f'<DgramConn fd={self.fd} mask={self.mask}>'


# 3.10's stock datagram transport is no asyncio.DatagramTransport (3.11 made
# it one); the bases follow the running version
_DatagramBase = (_transports.DatagramTransport if issubclass(
    _selector_events._SelectorDatagramTransport, _transports.DatagramTransport)
    else _transports.BaseTransport)         # in the MRO already: no change


# 3.10's has no pause/resume_reading, is_reading (3.11 added them)
_ReadBase = (ReadFlowTransport,) if 'pause_reading' in vars(
    _selector_events._SelectorTransport) else ()


class DgramTransport(SocketTransport, ConnTransport, *_ReadBase, WriteFlowTransport,
                     _transports._FlowControlMixin, _DatagramBase):
    """asyncio.DatagramTransport over a UDP or Unix datagram socket."""

    def __init__(self, conn):
        self._conn = conn
        self._extra = (<DgramConn>conn).extra
        # the hot call goes straight to the compiled method
        self.sendto = conn.sendto

    def sendto(self, data, addr=None):
        (<DgramConn>self._conn).sendto(data, addr)

    def get_write_buffer_size(self):
        return (<DgramConn>self._conn).buffer_size

    def close(self):
        (<DgramConn>self._conn).close()

    def abort(self):
        (<DgramConn>self._conn).force_close(None)

    # -- what stock code (and _FlowControlMixin) expects

    _protocol = property(lambda self: (<DgramConn>self._conn).protocol)
    _loop = property(lambda self: None if (<DgramConn>self._conn).closed
                     else (<DgramConn>self._conn).loop)
    _sock = property(lambda self: None if (<DgramConn>self._conn).closed
                     else (<DgramConn>self._conn).sock)
    _sock_fd = property(lambda self: (<DgramConn>self._conn).fd)
    _address = property(lambda self: (<DgramConn>self._conn).address)
    _closing = property(lambda self: (<DgramConn>self._conn).closing)
    _conn_lost = property(lambda self: (<DgramConn>self._conn).conn_lost)
    _buffer = property(lambda self: (<DgramConn>self._conn).buffer)

    def _fatal_error(self, exc, message='Fatal error on transport'):
        (<DgramConn>self._conn).fatal_error(exc, message)


def supports(sock):
    """True for the sockets this transport handles (others get the stock one)."""
    return sock.family in (AF_INET, AF_INET6, AF_UNIX) and sock.type == SOCK_DGRAM


def make_datagram_transport(CoreLoop loop, sock, protocol, address=None, waiter=None,
                            extra=None):
    """The stock _make_datagram_transport, compiled."""
    cdef DgramConn conn = DgramConn()
    conn.init(loop, sock, protocol, address, extra)
    # stock code finds the transport of an fd here (_ensure_fd_no_transport)
    loop._transports[conn.fd] = conn.transport
    # as the stock loop: connection_made, reading and the waiter come next step
    loop.call_soon(conn._start, waiter)
    return conn.transport
