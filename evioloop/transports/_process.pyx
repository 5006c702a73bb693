# cython: language_level=3
"""Layer 3: subprocesses, with each child's exit watched in the loop's own dispatch.

The transport is asyncio's BaseSubprocessTransport of the running Python
(base_subprocess.py: returncodes, wait(), kill()/terminate()/send_signal() and
the order of the pipe and exit callbacks are that version's) started with
subprocess.Popen as the stock Unix loop starts it, and its pipes are the
compiled ones (`_pipe.pyx`) because it connects them through the loop.

What replaces asyncio's child watchers:

    pidfd      `PidWatch`: `os.pidfd_open(pid)` (Linux 5.3+) is readable once
               the child has exited; it is one fd owner in the dispatch, which
               reaps the child (waitpid) and closes the pidfd
    fallback   where there is no pidfd (another platform, an old kernel, a
               sandbox that refuses the call): a daemon thread per child that
               blocks in os.waitpid and hands the exit to the loop with
               call_soon_threadsafe

No SIGCHLD handler is installed and no process-wide state is shared, so loops
in several threads each run their own children.
"""
from posix.unistd cimport close as close_fd
from libc.stdint cimport uint32_t

from evioloop.core._core cimport CoreLoop, FdOwner
from evioloop._poller cimport EVP_READ
from evioloop.core._context cimport PyContext_CopyCurrent

import contextvars
import os
import subprocess
import sys
import threading
from asyncio import base_events as _base_events
from asyncio import base_subprocess as _base_subprocess

cdef object logger = _base_events.logger
cdef object waitstatus_to_exitcode = os.waitstatus_to_exitcode
# 3.10's loop hands the exit to the transport one step later than 3.11+ does
# (its _child_watcher_callback does call_soon_threadsafe(call_soon, ...))
cdef bint EXIT_TWO_STEPS = sys.version_info < (3, 11)
# The context process_exited runs in is that of the stock default watcher:
# from 3.12 the pidfd one, whose reader is added (a copy of the context) in
# subprocess_exec's own; before, a thread's, which starts with an empty one.
cdef bint EXIT_IN_CALLER_CONTEXT = sys.version_info >= (3, 12)


cdef object exit_context():
    if EXIT_IN_CALLER_CONTEXT:
        return PyContext_CopyCurrent()
    return contextvars.Context()


cdef object exit_code_of(int pid, transp):
    """Reap pid; its returncode (None if it has not exited after all)."""
    try:
        wpid, status = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        # reaped by someone else: by the transport's own Popen.poll() (in
        # close()) when it raced the exit, whose returncode is the real one;
        # else as asyncio's watchers do
        proc = transp._proc
        if proc is not None and proc.returncode is not None:
            return proc.returncode
        logger.warning('child process pid %d exit status already read: '
                       ' will report returncode 255', pid)
        return 255
    if wpid == 0:
        return None
    return waitstatus_to_exitcode(status)


cdef int deliver_exit(CoreLoop loop, transp, returncode, ctx) except -1:
    # in the loop's thread, from the dispatch
    if EXIT_TWO_STEPS:
        loop.call_soon(loop.call_soon, transp._process_exited, returncode, context=ctx)
    else:
        loop.call_soon(transp._process_exited, returncode, context=ctx)
    return 0


cdef class PidWatch(FdOwner):
    """A child's pidfd: readable once the child has exited."""
    cdef CoreLoop loop
    cdef int pid
    cdef object transp
    cdef object ctx                 # the context process_exited runs in
    cdef bint reaped

    cdef int on_ready(self, uint32_t mask) except -1:
        rc = exit_code_of(self.pid, self.transp)
        if rc is None:
            return 0                # not a zombie yet: the pidfd tells us again
        self.reaped = True
        transp, self.transp = self.transp, None
        self.release()
        deliver_exit(self.loop, transp, rc, self.ctx)
        return 0

    cdef int release(self) except -1:
        if self.fd < 0:
            return 0
        self.loop.unregister(self)
        close_fd(self.fd)
        self.fd = -1
        return 0

    def __dealloc__(self):
        # the loop was closed with the child still running: the pidfd goes,
        # and a thread reaps the child when it ends, so that it leaves no zombie
        if self.fd >= 0:
            close_fd(self.fd)
            self.fd = -1
        if not self.reaped and self.pid > 0:
            try:
                reap_in_thread(self.pid)
            except BaseException:       # never raise from a deallocator
                pass

    def __repr__(self):
        return f'<PidWatch pid={self.pid} fd={self.fd}>'


def _reap(pid):
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        pass


cdef reap_in_thread(int pid):
    threading.Thread(target=_reap, args=(pid,), name=f'evioloop-reap-{pid}',
                     daemon=True).start()


def _wait_in_thread(loop, pid, transp, ctx):
    """The fallback: block in waitpid, then hand the exit to the loop."""
    try:
        _, status = os.waitpid(pid, 0)
    except ChildProcessError:
        proc = transp._proc
        if proc is not None and proc.returncode is not None:
            returncode = proc.returncode
        else:
            logger.warning('Unknown child process pid %d, will report returncode 255', pid)
            returncode = 255
    else:
        returncode = waitstatus_to_exitcode(status)
    if loop.is_closed():
        logger.warning('Loop %r that handles pid %r is closed', loop, pid)
        return
    try:
        if EXIT_TWO_STEPS:
            loop.call_soon_threadsafe(loop.call_soon, transp._process_exited, returncode,
                                      context=ctx)
        else:
            loop.call_soon_threadsafe(transp._process_exited, returncode, context=ctx)
    except RuntimeError:
        # closed between the check and the call
        logger.warning('Loop %r that handles pid %r is closed', loop, pid)


cdef int watch_child(CoreLoop loop, transp) except -1:
    cdef PidWatch w
    cdef int pid = transp.get_pid()
    ctx = exit_context()
    pidfd_open = getattr(os, 'pidfd_open', None)
    fd = -1
    if pidfd_open is not None:
        try:
            fd = pidfd_open(pid)
        except OSError:
            fd = -1                 # ENOSYS, EPERM (seccomp), ...: the thread
    if fd < 0:
        threading.Thread(target=_wait_in_thread, args=(loop, pid, transp, ctx),
                         name=f'evioloop-waitpid-{pid}', daemon=True).start()
        return 0
    w = PidWatch()
    w.loop = loop
    w.pid = pid
    w.transp = transp
    w.ctx = ctx
    w.fd = fd
    try:
        loop.register(w, EVP_READ)
    except BaseException:
        close_fd(fd)
        w.fd = -1
        w.reaped = True             # the thread below owns the child now
        threading.Thread(target=_wait_in_thread, args=(loop, pid, transp, ctx),
                         name=f'evioloop-waitpid-{pid}', daemon=True).start()
    return 0


class SubprocessTransport(_base_subprocess.BaseSubprocessTransport):
    """asyncio.SubprocessTransport over a Popen child (the stock Unix one, without
    its AIX-only socketpair for stdin)."""

    def _start(self, args, shell, stdin, stdout, stderr, bufsize, **kwargs):
        self._proc = subprocess.Popen(
            args, shell=shell, stdin=stdin, stdout=stdout, stderr=stderr,
            universal_newlines=False, bufsize=bufsize, **kwargs)


async def make_subprocess_transport(CoreLoop loop, protocol, args, shell, stdin, stdout,
                                    stderr, bufsize, extra=None, **kwargs):
    """The stock _make_subprocess_transport, with no child watcher."""
    loop.check_open()
    waiter = loop.create_future()
    transp = SubprocessTransport(loop, protocol, args, shell, stdin, stdout, stderr,
                                 bufsize, waiter=waiter, extra=extra, **kwargs)
    watch_child(loop, transp)
    try:
        await waiter
    except (SystemExit, KeyboardInterrupt):
        raise
    except BaseException:
        transp.close()
        await transp._wait()
        raise
    return transp


def pidfd_watches(CoreLoop loop):
    """The pids whose exit the loop watches through a pidfd (for tests)."""
    return sorted((<PidWatch>o).pid for o in loop.owners
                  if isinstance(o, PidWatch))
