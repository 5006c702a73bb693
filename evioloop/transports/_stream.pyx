# cython: language_level=3
"""Layer 3: listening stream sockets (TCP and Unix), evio's loopAccept.

A listening socket's owner (`Listener`) accepts a bounded batch of
connections per ready event and hands each to its own owner, a `StreamConn`
(_streamconn.pyx: the connection, its transport and its flow control), in a
copy of the context create_server ran in. The Events API's listener
(events/_conn.pyx) subclasses Listener to open its own kind of connection.

This module is also the stream layer's face for loop.py: the connection
side's names are re-exported here.
"""
from libc.errno cimport errno, EAGAIN, EINTR, EMFILE, ENFILE, ENOBUFS, ENOMEM
from posix.unistd cimport close as close_fd

from evioloop.core._core cimport CoreLoop
from evioloop.transports._streamconn cimport StreamConn
from evioloop.transports._sockutil cimport (
    EWOULDBLOCK, ECONNABORTED, socklen_t, sockaddr_storage, evs_accept, os_error, peer_address)
from evioloop._poller cimport EVP_READ
from evioloop.core._context cimport PyContext_Enter, PyContext_Exit, PyContext_CopyCurrent

from asyncio import constants as _constants
from asyncio import trsock as _trsock

from evioloop.transports import _streamconn


cdef object TransportSocket = _trsock.TransportSocket
cdef double ACCEPT_RETRY_DELAY = _constants.ACCEPT_RETRY_DELAY

# the connection side, under the names loop.py and the tests use
StreamTransport = _streamconn.StreamTransport
make_stream_transport = _streamconn.make_stream_transport
is_open_stream = _streamconn.is_open_stream


cdef class Listener(FdOwner):
    """A listening socket's owner: evio's loopAccept (fields in _stream.pxd)."""

    cdef int on_ready(self, unsigned int mask) except -1:
        cdef int _, cfd, err
        cdef sockaddr_storage addr
        cdef socklen_t addrlen
        # a bounded batch per wake-up, so that one busy listener cannot
        # starve the connections it already has
        for _ in range(self.backlog):
            cfd = evs_accept(self.fd, &addr, &addrlen)
            if cfd < 0:
                err = errno
                if err == EINTR:
                    continue
                if err == EAGAIN or err == EWOULDBLOCK or err == ECONNABORTED:
                    return 0
                if err == EMFILE or err == ENFILE or err == ENOBUFS or err == ENOMEM:
                    # Linux keeps reporting the listener ready: stop watching
                    # it for a while instead of spinning, as the stock loop does
                    self.loop.call_exception_handler({
                        'message': 'socket.accept() out of system resource',
                        'exception': os_error(err),
                        'socket': TransportSocket(self.sock),
                    })
                    self.loop.modify(self, 0)
                    self.retry_handle = self.loop.call_later(ACCEPT_RETRY_DELAY, self._resume)
                    return 0
                self.loop.call_exception_handler({
                    'message': 'Error on accepting a connection',
                    'exception': os_error(err),
                    'socket': TransportSocket(self.sock),
                })
                return 0
            self.open_conn(cfd, peer_address(&addr, addrlen))
        return 0

    cdef int open_conn(self, int cfd, peername) except -1:
        # the factory and the new connection get a copy of the context that
        # create_server ran in (the stock loop makes them in a task of it)
        cdef object ctx = self.ctx.copy()
        PyContext_Enter(ctx)
        try:
            conn = self.make_conn(cfd, peername)
        finally:
            PyContext_Exit(ctx)
        if conn is not None:
            (<StreamConn>conn)._start(None)
        return 0

    cdef object make_conn(self, int cfd, peername):
        cdef StreamConn conn
        try:
            protocol = self.protocol_factory()
        except (SystemExit, KeyboardInterrupt):
            close_fd(cfd)
            raise
        except BaseException as exc:
            close_fd(cfd)
            self.loop.call_exception_handler({
                'message': 'Error on transport creation for incoming connection',
                'exception': exc,
            })
            return None
        conn = StreamConn()
        try:
            conn.init(self.loop, cfd, None, self.family, self.socktype, self.proto,
                      protocol, None if peername is None else {'peername': peername},
                      self.server)
        except BaseException:
            if not conn.closed and self.loop.owner_of(cfd) is not conn:
                close_fd(cfd)
            raise
        return conn

    def _resume(self):
        self.retry_handle = None
        if self.loop.owner_of(self.fd) is self:
            self.loop.modify(self, EVP_READ)

    def _stop(self):
        if self.retry_handle is not None:
            self.retry_handle.cancel()
            self.retry_handle = None
        self.loop.unregister(self)

    def __repr__(self):
        return f'<Listener fd={self.fd}>'


def start_serving(CoreLoop loop, protocol_factory, sock, server, int backlog):
    """Watch a listening socket (the stock _start_serving without TLS)."""
    cdef Listener ln
    fd = sock.fileno()
    owner = loop.owner_of(fd)
    if isinstance(owner, Listener):
        ln = <Listener>owner
    else:
        ln = Listener()
        ln.loop = loop
        ln.fd = fd
        ln.sock = sock
        ln.family, ln.socktype, ln.proto = sock.family, sock.type, sock.proto
        loop.register(ln, 0)
    ln.protocol_factory = protocol_factory
    ln.ctx = PyContext_CopyCurrent()
    ln.server = server
    ln.backlog = max(1, backlog)
    loop.modify(ln, EVP_READ)


def stop_serving(CoreLoop loop, sock):
    """Stop watching a listening socket; False if it was not ours."""
    owner = loop.owner_of(sock.fileno())
    if not isinstance(owner, Listener):
        return False
    owner._stop()
    return True
