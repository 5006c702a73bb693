# cython: language_level=3
"""Layer 5, compiled: UDP listeners of an Events server.

As in evio, each datagram gets a throwaway conn (`UdpConn`: the sender's
address, no context, no wake) and `out` goes back to the sender. In native
mode `UdpOwner` is the listener's fd owner: it reads up to UDP_BATCH
datagrams per wake-up into the loop's buffer and keeps replies the kernel
refused (EAGAIN, ENOBUFS) in a bounded queue until the socket is writable.
"""
from libc.errno cimport errno, EAGAIN, EINTR, ENOBUFS
from cpython.bytes cimport PyBytes_FromStringAndSize
from cpython.buffer cimport PyObject_GetBuffer, PyBuffer_Release, PyBUF_SIMPLE

from evioloop.core._core cimport CoreLoop, FdOwner
from evioloop._poller cimport EVP_READ, EVP_WRITE
from evioloop.transports._sockutil cimport (
    EWOULDBLOCK, socklen_t, sockaddr_storage, evs_recvfrom, evs_sendto, os_error, peer_address)
from evioloop.events._server cimport (ServerCore, SHUTDOWN, UDP_QUEUE_MAX, check_out,
                                      data_result)
from evioloop.core._context cimport PyContext_Enter, PyContext_Exit

import collections


cdef enum:
    UDP_BATCH = 64          # datagrams read per wake-up


cdef class UdpOwner(FdOwner)


cdef class UdpConn:
    """One datagram's conn, as in evio: no context, no wake, no reader."""
    cdef readonly int addr_index
    cdef readonly object remote_addr
    cdef object _local_addr
    cdef ServerCore srv
    cdef UdpOwner owner         # native
    cdef object transport       # portable
    cdef sockaddr_storage ss
    cdef socklen_t sslen

    @property
    def local_addr(self):
        return self._local_addr

    @property
    def fd(self):
        if self.owner is not None:
            return self.owner.fd
        sock = self.transport.get_extra_info('socket')
        return -1 if sock is None else sock.fileno()

    def sendto(self, data, addr):
        """Send a datagram to any address from this listener."""
        check_out(data, 'UdpConn.sendto')
        if self.owner is not None:
            self.owner.send_py(bytes(data), addr)
        else:
            portable_sendto(self, bytes(data), addr)

    def __repr__(self):
        return f'<evioloop.UdpConn from {self.remote_addr!r} addr_index={self.addr_index}>'


cdef str QUEUE_FULL = f'send queue full ({UDP_QUEUE_MAX} datagrams)'


def portable_send_refused(ServerCore srv, exc):
    """Portable mode: the host loop's datagram transport dropped a datagram
    the kernel refused with ENOBUFS (asyncio's transports queue only what
    EAGAIN refuses); count it as native mode counts an overflow."""
    srv.count_dropped(f'send refused ({exc.strerror}) and dropped by the host loop')


cdef int portable_sendto(UdpConn c, bytes data, addr) except -1:
    # the host transport buffers what the kernel refused; bound it here
    if c.transport.get_write_buffer_size() > UDP_QUEUE_MAX * 2048:
        c.srv.count_dropped(QUEUE_FULL)
        return 0
    c.transport.sendto(data, addr)
    return 0


cdef int deliver_datagram(ServerCore srv, UdpConn c, data) except -1:
    """data(conn, datagram); out goes back to the sender."""
    cdef int action
    if srv.cb_data is None:
        return 0
    try:
        out = data_result(srv.cb_data(c, data), &action)
    except (SystemExit, KeyboardInterrupt):
        raise
    except BaseException as exc:
        srv.report('data', exc, c)
        return 0
    if out is not None and len(out):
        if c.owner is not None:
            c.owner.reply(c, out)
        else:
            portable_sendto(c, bytes(out), c.remote_addr)
    if action == SHUTDOWN:
        srv.request_shutdown()
    return 0


cdef class UdpOwner(FdOwner):
    """A UDP listener in native mode: batches of datagrams per wake-up, and a
    bounded queue for replies the kernel could not take at once."""
    cdef ServerCore srv
    cdef object sock
    cdef int addr_index
    cdef object local_addr
    cdef object queue           # deque of (bytes, address)
    cdef object ctx             # a copy of listen()'s context, for the callbacks

    cdef int on_ready(self, unsigned int mask) except -1:
        if mask & EVP_WRITE and self.queue:
            self.flush_queue()
        if not mask & EVP_READ:
            return 0
        PyContext_Enter(self.ctx)
        try:
            return self.read_batch()
        finally:
            PyContext_Exit(self.ctx)

    cdef int read_batch(self) except -1:
        cdef CoreLoop core = self.srv.core
        cdef UdpConn c
        cdef ssize_t n
        cdef int _, err
        for _ in range(UDP_BATCH):
            c = UdpConn.__new__(UdpConn)
            n = evs_recvfrom(self.fd, core.packet, core.packet_size, &c.ss, &c.sslen)
            if n < 0:
                err = errno
                if err == EAGAIN or err == EWOULDBLOCK:
                    return 0
                if err != EINTR:
                    # e.g. an ICMP error reported on the socket: not fatal
                    core.call_exception_handler({
                        'message': 'Events server: UDP receive error',
                        'exception': os_error(err),
                    })
                    return 0
                continue
            c.owner = self
            c.srv = self.srv
            c.addr_index = self.addr_index
            c._local_addr = self.local_addr
            c.remote_addr = peer_address(&c.ss, c.sslen)
            deliver_datagram(self.srv, c, PyBytes_FromStringAndSize(core.packet, n))
            if self.srv.stopping or self.mask == 0:
                return 0
        return 0

    cdef int reply(self, UdpConn c, out) except -1:
        cdef Py_buffer view
        cdef ssize_t n
        cdef int err
        if self.queue:
            return self.enqueue(bytes(out), c.remote_addr)
        try:
            PyObject_GetBuffer(out, &view, PyBUF_SIMPLE)
        except BufferError:
            out = bytes(memoryview(out))    # strided: one contiguous copy
            PyObject_GetBuffer(out, &view, PyBUF_SIMPLE)
        n = evs_sendto(self.fd, <const char *>view.buf, view.len, &c.ss, c.sslen)
        err = errno
        PyBuffer_Release(&view)
        if n < 0:
            if err == EAGAIN or err == EWOULDBLOCK or err == ENOBUFS or err == EINTR:
                return self.enqueue(bytes(out), c.remote_addr)
            self.srv.loop.call_exception_handler({
                'message': 'Events server: UDP send error',
                'exception': os_error(err),
            })
        return 0

    cdef int send_py(self, bytes data, addr) except -1:
        if self.queue:
            return self.enqueue(data, addr)
        try:
            self.sock.sendto(data, addr)
        except (BlockingIOError, InterruptedError):
            self.enqueue(data, addr)
        except OSError as exc:
            if exc.errno != ENOBUFS:
                raise
            self.enqueue(data, addr)
        return 0

    cdef int enqueue(self, bytes data, addr) except -1:
        if self.queue is None:
            self.queue = collections.deque()
        if len(self.queue) >= UDP_QUEUE_MAX:
            return self.srv.count_dropped(QUEUE_FULL)
        self.queue.append((data, addr))
        self.srv.core.modify(self, EVP_READ | EVP_WRITE)
        return 0

    cdef int flush_queue(self) except -1:
        while self.queue:
            data, addr = self.queue[0]
            try:
                self.sock.sendto(data, addr)
            except (BlockingIOError, InterruptedError):
                return 0
            except OSError as exc:
                if exc.errno == ENOBUFS:
                    return 0
                self.srv.loop.call_exception_handler({
                    'message': 'Events server: UDP send error',
                    'exception': exc,
                })
            self.queue.popleft()
        self.srv.core.modify(self, EVP_READ)
        return 0

    def _stop(self):
        self.srv.core.unregister(self)

    def __repr__(self):
        return f'<evioloop UdpOwner fd={self.fd}>'


def start_native_udp(ServerCore srv, sock, int addr_index):
    cdef UdpOwner u = UdpOwner()
    u.srv = srv
    u.sock = sock
    u.fd = sock.fileno()
    u.addr_index = addr_index
    u.local_addr = sock.getsockname()
    u.ctx = srv.ctx.copy()
    srv.core.register(u, EVP_READ)
    return u


def portable_datagram(ServerCore srv, transport, int addr_index, data, addr):
    """A datagram the host loop's transport received (portable mode)."""
    cdef UdpConn c = UdpConn.__new__(UdpConn)
    c.srv = srv
    c.transport = transport
    c.addr_index = addr_index
    c._local_addr = transport.get_extra_info('sockname')
    c.remote_addr = addr
    deliver_datagram(srv, c, data)
