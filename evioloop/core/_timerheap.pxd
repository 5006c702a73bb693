# Layer 2: the timer heap's C primitives, split out of _core.pyx (which owns
# the heap array and the references): a binary min-heap of entries ordered by
# (when, seq), so that timers due at the same time fire in the order they
# were scheduled.
from libc.stdint cimport uint64_t
from cpython.object cimport PyObject


cdef struct TimerEntry:
    double when
    uint64_t seq          # ties on `when` fire in the order they were scheduled
    PyObject *handle      # a strong reference to a TimerHandle


cdef inline bint entry_lt(TimerEntry *a, TimerEntry *b) noexcept:
    return a.when < b.when or (a.when == b.when and a.seq < b.seq)


cdef inline void heap_push(TimerEntry *h, Py_ssize_t n, TimerEntry e) noexcept:
    """Add e to the heap h[0:n]; h has room for n + 1 entries."""
    cdef Py_ssize_t i = n, parent
    while i > 0:
        parent = (i - 1) >> 1
        if not entry_lt(&e, &h[parent]):
            break
        h[i] = h[parent]
        i = parent
    h[i] = e


cdef inline void sift_down(TimerEntry *h, Py_ssize_t n, Py_ssize_t i, TimerEntry e) noexcept:
    """Place e at slot i of the heap h[0:n], moving smaller children up."""
    cdef Py_ssize_t child
    while True:
        child = 2 * i + 1
        if child >= n:
            break
        if child + 1 < n and entry_lt(&h[child + 1], &h[child]):
            child += 1
        if not entry_lt(&h[child], &e):
            break
        h[i] = h[child]
        i = child
    h[i] = e


cdef inline void heap_pop(TimerEntry *h, Py_ssize_t n) noexcept:
    """Drop h[0] from the heap h[0:n] (the caller has taken it)."""
    if n > 1:
        sift_down(h, n - 1, 0, h[n - 1])


cdef inline void heapify(TimerEntry *h, Py_ssize_t n) noexcept:
    cdef Py_ssize_t start = n // 2 - 1
    while start >= 0:
        sift_down(h, n, start, h[start])
        start -= 1
