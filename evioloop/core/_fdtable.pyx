# cython: language_level=3
"""Layer 2, lower half: the fd table and the dispatch of what the poller found.

evio's fdconns and the I/O half of its `iter`: `FdTable` maps each watched fd
to its one `FdOwner`, keeps the poller's registrations in step with it
(register / modify / unregister), hands every event of a wait to its owner's
next step (`dispatch`), recognises events of registrations it no longer knows,
and flushes the output owners queued during an iteration. It knows nothing of
callbacks or timers: `_core.CoreLoop` builds the run loop on top of it.
"""
from libc.stdint cimport uint32_t

from evioloop._poller cimport Poller, evp_event, EVP_READ, EVP_WRITE


# ---------------------------------------------------------------- fd owners


cdef class FdOwner:

    def __cinit__(self, *args, **kwargs):
        self.fd = -1

    cdef int on_ready(self, uint32_t mask) except -1:
        return 0

    cdef int flush(self) except -1:
        return 0

    def _interest(self):
        """The interest registered with the poller: 1 read, 2 write."""
        return self.mask


# ---------------------------------------------------------------- the table

cdef class FdTable:
    """The fd table of a loop (the base of _core.CoreLoop)."""

    def __cinit__(self, *args, **kwargs):
        self.poller = Poller()
        self.owners = []
        self.flushing = []

    cdef int check_open(self) except -1:
        if self._closed:
            raise RuntimeError('Event loop is closed')
        return 0

    cdef FdOwner owner_of(self, long long fd):
        if 0 <= fd < len(self.owners):
            return <FdOwner>self.owners[fd]
        return None

    cdef int register(self, FdOwner owner, uint32_t mask) except -1:
        cdef int fd = owner.fd
        self.check_open()
        if fd >= len(self.owners):
            self.owners.extend([None] * (fd + 1 - len(self.owners)))
        if self.owners[fd] is not None:
            raise RuntimeError(f'fd {fd} is already watched by {self.owners[fd]!r}')
        self.next_gen += 1                   # a uint32_t: wraps around
        owner.gen = self.next_gen
        if mask:
            self.poller.add(fd, mask, pack(owner))
            self.nkernel += 1
        owner.mask = mask
        self.owners[fd] = owner
        return 0

    cdef int modify(self, FdOwner owner, uint32_t mask) except -1:
        # Interest 0 takes the fd out of the kernel queue but keeps its owner:
        # epoll reports errors and hang-ups even to an empty interest set, and
        # a paused connection must not make the loop spin.
        if mask == owner.mask:
            return 0
        if mask == 0:
            self.poller.delete(owner.fd, owner.mask)
        elif owner.mask == 0:
            self.poller.add(owner.fd, mask, pack(owner))
        else:
            try:
                self.poller.mod(owner.fd, owner.mask, mask, pack(owner))
            except FileNotFoundError:
                # the fd was closed behind our back (the kernel dropped its
                # registration) and its number now names another file
                self.poller.add(owner.fd, mask, pack(owner))
        self.nkernel += (mask != 0) - (owner.mask != 0)
        owner.mask = mask
        return 0

    cdef int unregister(self, FdOwner owner) except -1:
        cdef int fd = owner.fd
        if fd < len(self.owners) and self.owners[fd] is owner:
            self.owners[fd] = None
        if owner.mask:
            if not self.poller.closed:
                self.poller.delete(fd, owner.mask)
            self.nkernel -= 1
        owner.mask = 0
        return 0

    cdef int close_table(self) except -1:
        """Forget every owner and close the kernel queue (the loop closes)."""
        cdef FdOwner owner
        for owner in self.owners:
            if owner is not None:
                owner.mask = 0
        self.owners = []
        self.nkernel = 0
        self.poller.close()
        return 0

    def _watched_fds(self):
        return [fd for fd, o in enumerate(self.owners) if o is not None]

    def _kernel_fds(self):
        """(the count kept of owners registered with the kernel, the actual
        count in the table): the two must agree (for tests)."""
        return self.nkernel, sum(1 for o in self.owners
                                 if o is not None and (<FdOwner>o).mask)

    def _owner(self, fd):
        """The FdOwner of fd, or None (for tests and debugging)."""
        return self.owner_of(fileobj_to_fd(fd))

    # -- output flushed before the loop blocks again

    cdef int queue_flush(self, FdOwner owner) except -1:
        if not owner.flush_queued:
            owner.flush_queued = True
            self.flushing.append(owner)
        return 0

    cdef int flush_queued(self) except -1:
        # Everything written during this iteration goes out now, one syscall
        # per connection however many writes the protocol made.
        cdef FdOwner owner
        cdef list owners
        while self.flushing:
            owners = self.flushing
            self.flushing = []
            for owner in owners:
                if owner.flush_queued:
                    owner.flush_queued = False
                    try:
                        owner.flush()
                    except (SystemExit, KeyboardInterrupt):
                        raise
                    except BaseException as exc:
                        self.report_owner_error(owner, exc)
        return 0

    cdef int dispatch(self, int n) except -1:
        cdef int i, fd
        cdef uint32_t gen
        cdef evp_event ev
        cdef FdOwner owner
        for i in range(n):
            ev = self.poller.p.out[i]
            fd = <int><uint32_t>ev.data          # the low half; see pack()
            gen = <uint32_t>(ev.data >> 32)
            owner = self.owner_of(fd)
            if owner is None or owner.gen != gen:
                self.note_stale(fd, owner)
            elif owner.mask:
                try:
                    owner.on_ready(ev.mask)
                except (SystemExit, KeyboardInterrupt):
                    raise
                except BaseException as exc:
                    # an owner's step failed outside the protocol callbacks
                    # it guards itself; the other fds of this batch still run
                    self.report_owner_error(owner, exc)
        self.stale_prev = self.stale_now
        self.stale_now = None
        return 0

    cdef int report_owner_error(self, FdOwner owner, exc) except -1:
        self.call_exception_handler({
            'message': f'Exception in the I/O step of {owner!r}',
            'exception': exc,
        })
        return 0

    cdef int note_stale(self, int fd, FdOwner owner) except -1:
        # An event from a registration the table no longer knows. Within one
        # batch that is normal (a callback before it unregistered the fd);
        # seen again after a wait, the registration outlived its fd number
        # (closed behind our back while a duplicate lives) and would make the
        # loop spin forever: only a fresh kernel queue drops it.
        if self.stale_prev is not None and fd in self.stale_prev:
            self.rebuild_poller()
            return 0
        if owner is None:
            self.poller.delete(fd, EVP_READ | EVP_WRITE)
        if self.stale_now is None:
            self.stale_now = set()
        self.stale_now.add(fd)
        return 0

    cdef int rebuild_poller(self) except -1:
        cdef FdOwner owner
        self.poller.reopen()
        for owner in self.owners:
            if owner is not None and owner.mask:
                try:
                    self.poller.add(owner.fd, owner.mask, pack(owner))
                except OSError:
                    # the fd is gone; its owner learns that on its next syscall
                    owner.mask = 0
                    self.nkernel -= 1
        self.stale_now = None
        self.stale_prev = None
        return 0
