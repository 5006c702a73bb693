# Layer 3's socket helpers, shared by the stream transports (_stream.pyx) and
# the Events API's connections (events/_conn.pyx): the syscalls of sockio.h,
# errno as the right OSError subclass, and a peer address as Python shows it.
from libc.string cimport strerror
from posix.uio cimport iovec

cdef extern from "string.h" nogil:
    size_t strnlen(const char *s, size_t maxlen)

cdef extern from "errno.h" nogil:
    const int EWOULDBLOCK
    const int ECONNABORTED

cdef extern from "sys/socket.h" nogil:
    ctypedef unsigned int socklen_t
    struct sockaddr_storage:
        pass
    struct sockaddr:
        pass

cdef extern from "sockio.h" nogil:
    int evs_accept(int fd, sockaddr_storage *addr, socklen_t *len)
    int evs_addr_parts(const sockaddr_storage *ss, socklen_t len, char *host, size_t hostlen,
                       unsigned *port, unsigned *flowinfo, unsigned *scope_id,
                       const char **path, size_t *pathlen)
    ssize_t evs_send(int fd, const char *buf, size_t len)
    ssize_t evs_recv(int fd, char *buf, size_t len)
    ssize_t evs_sendv(int fd, iovec *iov, int n)
    int evs_nodelay(int fd)
    int evs_setint(int fd, int level, int name, int value)
    ssize_t evs_recvfrom(int fd, char *buf, size_t len, sockaddr_storage *addr,
                         socklen_t *addrlen)
    ssize_t evs_sendto(int fd, const char *buf, size_t len, const sockaddr_storage *addr,
                       socklen_t addrlen)


cdef inline object os_error(int err):
    # OSError(errno, msg) picks the subclass, e.g. ConnectionResetError
    return OSError(err, strerror(err).decode())


cdef extern from "Python.h":
    object PyUnicode_DecodeFSDefaultAndSize(const char *s, Py_ssize_t size)

cdef extern from "sys/socket.h":
    const int AF_INET
    const int AF_INET6
    const int AF_UNIX


cdef inline object peer_address(sockaddr_storage *addr, socklen_t addrlen):
    """accept()'s or recvfrom()'s address as the socket module reports it, or None."""
    cdef char host[64]
    cdef unsigned port = 0, flowinfo = 0, scope_id = 0
    cdef const char *path = NULL
    cdef size_t pathlen = 0
    cdef int family = evs_addr_parts(addr, addrlen, host, sizeof(host), &port,
                                     &flowinfo, &scope_id, &path, &pathlen)
    if family == AF_INET:
        return (host.decode(), port)
    if family == AF_INET6:
        return (host.decode(), port, flowinfo, scope_id)
    if family == AF_UNIX:
        if pathlen and path[0] == 0:
            return path[:pathlen]           # Linux abstract namespace: bytes
        return PyUnicode_DecodeFSDefaultAndSize(path, strnlen(path, pathlen))
    return None
