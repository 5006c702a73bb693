# Layer 5, compiled: evio's conn. `Conn` (_conn.pyx) owns its fd in
# evioloop's dispatch; `PortableConn` (_portable.pyx) is the same Conn over a
# host loop's transport, overriding only the I/O steps declared last here.
from libc.stdint cimport uint64_t

from evioloop.core._core cimport FdOwner
from evioloop.transports._outq cimport OutQueue
from evioloop.events._server cimport ServerCore

# a Conn's life
cdef enum:
    OPEN = 0
    CLOSING = 1      # CLOSE asked: the output drains, then the socket closes
    DETACHING = 2    # DETACH asked: the output drains, then detached()
    CLOSED = 3
    DETACHED = 4


cdef class Conn(FdOwner):
    cdef ServerCore srv
    cdef public object context
    cdef readonly int addr_index
    cdef object _local_addr, _remote_addr
    cdef int family
    cdef int state
    cdef bint in_call              # inside one of this conn's callbacks
    cdef bint close_requested      # close() during a callback: after its output
    cdef object io_error           # an I/O error met during a callback
    cdef bint reuse, user_paused, water_paused, wake_pending
    cdef OutQueue outq
    cdef Py_ssize_t high, low, max_inbound
    cdef Py_ssize_t threadsafe_pending   # bytes queued by write_threadsafe
    cdef uint64_t written, sent          # totals, for the completion callbacks
    cdef object completions              # deque of (written total, callback)
    # the pull reader: an earlier call's unread tail, then this call's input
    cdef bint in_data, reader_used
    cdef bytes tail
    cdef Py_ssize_t tail_pos
    cdef object cur_in
    cdef Py_ssize_t cur_pos, cur_len
    cdef object ctx                 # this connection's copy of listen()'s context

    cdef int opened_step(self) except -1
    cdef int apply_options(self, opts) except -1
    cdef int setopt(self, int level, int name, int value) except -1
    cdef int io_step(self, unsigned int mask) except -1
    cdef int write_step(self) except -1
    cdef int read_step(self) except -1
    cdef int deliver(self, object in_) except -1
    cdef int end_data(self, bint keep) except -1
    cdef int deliver_view(self, Py_ssize_t n) except -1
    cdef int after_call(self, int action) except -1
    cdef int callback_failed(self, str what, exc) except -1
    cdef int write_failed(self, exc) except -1
    cdef int run_completions(self) except -1
    cdef int lose(self, exc) except -1
    cdef int finish_close(self, err, bint abort=*) except -1
    cdef int fail_completions(self, err) except -1
    cdef int finish_detach(self) except -1
    cdef int request_close(self) except -1
    cdef int check_reader(self) except -1
    cdef Py_ssize_t available(self)
    cdef bytes take(self, Py_ssize_t n, bint consume)

    # the I/O steps, which portable mode does through the host transport
    cdef int update_interest(self) except -1
    cdef Py_ssize_t output_size(self)
    cdef int send(self, object out) except -1
    cdef uint64_t sent_total(self)
    cdef int completion_pending(self) except -1
    cdef int begin_close(self, int kind) except -1
    cdef int close_io(self, bint abort) except -1
    cdef object detach_socket(self)
    cdef int last_write(self) except -1
    cdef str mode(self)
