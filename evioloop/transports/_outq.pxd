# Layer 3: a connection's output queue, shared by the stream transports
# (_streamconn.pyx), the pipe transports (_pipe.pyx) and the Events API's
# connections (events/_conn.pyx).
#
# A C array of strong references to bytes objects not yet fully sent: a list
# would free and reallocate its storage every time it empties, which is after
# nearly every write. `outq_write` hands up to MAX_IOV chunks to the kernel in
# one syscall (send/sendmsg for a socket, write/writev for a pipe) and
# `outq_consume` drops what went out.
from libc.errno cimport errno
from libc.stdlib cimport realloc, free
from libc.string cimport memmove
from cpython.object cimport PyObject
from cpython.ref cimport Py_INCREF, Py_DECREF
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE
from posix.uio cimport iovec, writev
from posix.unistd cimport write as c_write

from evioloop.transports._sockutil cimport evs_send, evs_sendv

cdef enum:
    OUTQ_MAX_IOV = 64

cdef struct OutQueue:
    PyObject **chunks
    Py_ssize_t len, cap
    Py_ssize_t sent       # bytes of chunks[0] already sent
    Py_ssize_t size       # unsent bytes in the queue


cdef inline int outq_push(OutQueue *q, bytes chunk) except -1:
    """Queue a non-empty bytes object (the queue keeps a reference)."""
    cdef Py_ssize_t cap
    cdef PyObject **grown
    if q.len == q.cap:
        cap = q.cap * 2 if q.cap else 8
        grown = <PyObject **>realloc(q.chunks, cap * sizeof(PyObject *))
        if grown is NULL:
            raise MemoryError()
        q.chunks = grown
        q.cap = cap
    Py_INCREF(chunk)
    q.chunks[q.len] = <PyObject *>chunk
    q.len += 1
    q.size += PyBytes_GET_SIZE(chunk)
    return 0


cdef inline void outq_pop(OutQueue *q, Py_ssize_t k):
    """Release the first k chunks."""
    cdef Py_ssize_t i
    for i in range(k):
        Py_DECREF(<object>q.chunks[i])
    if k < q.len:
        memmove(q.chunks, q.chunks + k, (q.len - k) * sizeof(PyObject *))
    q.len -= k


cdef inline void outq_clear(OutQueue *q):
    outq_pop(q, q.len)
    q.sent = q.size = 0


cdef inline void outq_free(OutQueue *q):
    outq_clear(q)
    free(q.chunks)
    q.chunks = NULL
    q.cap = 0


cdef inline void outq_consume(OutQueue *q, Py_ssize_t n):
    """Count n more bytes of the queue's head as gone to the kernel: release
    the chunks they finish, remember how far into the next one they reach."""
    cdef Py_ssize_t i = 0, size
    q.size -= n
    n += q.sent
    while n > 0:
        size = PyBytes_GET_SIZE(<object>q.chunks[i])
        if n < size:
            break
        n -= size
        i += 1
    if i:
        outq_pop(q, i)
    q.sent = n


cdef inline Py_ssize_t outq_write_once(OutQueue *q, int fd, bint is_socket,
                                       Py_ssize_t *offered_out):
    """One syscall for the queue's head, up to OUTQ_MAX_IOV chunks; sets
    *offered_out to the bytes it offered."""
    cdef iovec iov[OUTQ_MAX_IOV]
    cdef Py_ssize_t n, nchunks, i, offered
    cdef PyObject *chunk
    nchunks = q.len
    if nchunks == 1:
        chunk = q.chunks[0]
        offered = PyBytes_GET_SIZE(<object>chunk) - q.sent
        if is_socket:
            n = evs_send(fd, PyBytes_AS_STRING(<object>chunk) + q.sent, offered)
        else:
            n = c_write(fd, PyBytes_AS_STRING(<object>chunk) + q.sent, offered)
    else:
        if nchunks > OUTQ_MAX_IOV:
            nchunks = OUTQ_MAX_IOV
        offered = 0
        for i in range(nchunks):
            chunk = q.chunks[i]
            iov[i].iov_base = PyBytes_AS_STRING(<object>chunk)
            iov[i].iov_len = PyBytes_GET_SIZE(<object>chunk)
            offered += <Py_ssize_t>iov[i].iov_len
        iov[0].iov_base = <char *>iov[0].iov_base + q.sent
        iov[0].iov_len -= q.sent
        offered -= q.sent
        if is_socket:
            n = evs_sendv(fd, iov, <int>nchunks)
        else:
            n = writev(fd, iov, <int>nchunks)
    offered_out[0] = offered
    if n < 0:
        return -1
    outq_consume(q, n)
    return n


cdef inline Py_ssize_t outq_write(OutQueue *q, int fd, bint is_socket):
    """Hand the queue to the kernel until it takes less than it was offered:
    send/sendmsg on a socket (no SIGPIPE), write/writev on a pipe, up to
    OUTQ_MAX_IOV chunks per syscall; what went out is consumed. Returns the
    bytes written, or -1 with errno set if the first syscall failed.

    Several syscalls where the queue has more chunks than one takes: the
    stock transports send every write at once, so the kernel, not the
    number of chunks, must decide what stays queued (what stays counts
    toward pause_writing)."""
    cdef Py_ssize_t n, offered, total = 0
    while q.len:
        n = outq_write_once(q, fd, is_socket, &offered)
        if n < 0:
            return -1 if total == 0 else total
        total += n
        if n < offered:
            break                   # the kernel is full
    return total


cdef inline Py_ssize_t outq_send(OutQueue *q, int fd):
    """One send of a socket's queue; the bytes sent, or -1 with errno set."""
    return outq_write(q, fd, True)
