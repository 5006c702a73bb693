"""Shared fixtures of the unit tests.

* `check_fds` (autouse): the file descriptors open after a test are exactly
  the ones open before it, so a leaked socket, pipe, eventfd or epoll fd (or
  an fd closed that the test did not own) fails the test that caused it.
* `check_zombies` (autouse): no child that a test started is left running,
  or exited and unreaped (a zombie), after it: every transport, watcher and
  helper that starts a child must also wait for it.
* `loop`: parametrized over evioloop and the stock loop, so that behaviour
  tests take the stock loop's answer as the expected one.
* `evloop`: an evioloop loop only, for evioloop internals.
"""
import asyncio
import gc
import os
import sys
import time

import pytest

import evioloop

_PROC_FD = '/proc/self/fd'


def _open_fds():
    """{fd: what it points to}; None where the platform cannot tell."""
    if not os.path.isdir(_PROC_FD):
        return None
    fds = {}
    for name in os.listdir(_PROC_FD):
        try:
            # the fd of the listdir itself is closed by now: readlink fails
            fds[int(name)] = os.readlink(f'{_PROC_FD}/{name}')
        except OSError:
            pass
    return fds


def _fd_diff(before, after):
    leaked = {fd: t for fd, t in after.items() if before.get(fd) != t}
    closed = {fd: t for fd, t in before.items() if after.get(fd) != t}
    return leaked, closed


@pytest.fixture(autouse=True)
def check_fds(request):
    """Fail a test whose open fds differ afterwards from before it."""
    if request.node.get_closest_marker('no_fd_check'):
        yield
        return
    # No gc.collect() here (it costs ~50 ms a test): the check after every
    # test collects garbage whenever it sees a difference, so no garbage that
    # holds an fd outlives the test that made it.
    before = _open_fds()
    yield
    if before is None:
        return
    leaked, closed = _fd_diff(before, _open_fds())
    if not leaked and not closed:
        return
    # Finalizers and worker threads (executors, resolver threads) may still be
    # letting go of their fds: collect and give them a moment before judging.
    deadline = time.monotonic() + 2.0
    while True:
        gc.collect()
        leaked, closed = _fd_diff(before, _open_fds())
        if not leaked and not closed:
            return
        if time.monotonic() > deadline:
            break
        time.sleep(0.02)
    pytest.fail(f'fds leaked by the test: {leaked}; fds closed by the test that '
                f'it did not open: {closed}', pytrace=False)


def _zombie():
    """The pid of an exited child nobody has reaped yet, or None (not reaping it)."""
    if not hasattr(os, 'waitid'):
        return None
    try:
        info = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:   # no children at all
        return None
    return info.si_pid if info is not None else None


def _children():
    """Pids of this process's children, running or not; empty where /proc cannot tell."""
    try:
        os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except (ChildProcessError, AttributeError):
        return set()            # none (the usual case: no /proc scan)
    me = os.getpid()
    kids = set()
    for name in os.listdir('/proc') if os.path.isdir('/proc') else ():
        if name.isdigit():
            try:
                with open(f'/proc/{name}/stat', 'rb') as f:
                    fields = f.read().rpartition(b')')[2].split()
            except OSError:
                continue
            if int(fields[1]) == me:
                kids.add(int(name))
    return kids


@pytest.fixture(autouse=True)
def check_zombies():
    """Fail a test that leaves a child it started running, or exited and unreaped."""
    before = _children()
    yield
    left = _children() - before
    if not left and _zombie() is None:
        return
    # a watcher thread, a finalizer or the child's own exit may be a moment away
    deadline = time.monotonic() + 2.0
    while (left or _zombie() is not None) and time.monotonic() < deadline:
        gc.collect()
        time.sleep(0.02)
        left = _children() - before
    zombie = _zombie()
    if not left and zombie is None:
        return
    # reap (and stop) what is left, so that the next test is not blamed too
    for pid in left:
        try:
            os.kill(pid, 9)
        except OSError:
            pass
    for pid in left | ({zombie} if zombie else set()):
        try:
            os.waitpid(pid, 0)
        except ChildProcessError:
            pass
    pytest.fail(f'the test left children running or unreaped (zombies): '
                f'{sorted(left | ({zombie} if zombie else set()))}', pytrace=False)


def pytest_configure(config):
    config.addinivalue_line(
        'markers', 'no_fd_check: the test legitimately changes the set of open fds')


def _stock_loop():
    # What asyncio.new_event_loop() gives on Unix with the default policy.
    return asyncio.SelectorEventLoop()


LOOP_FACTORIES = {
    'evioloop': evioloop.new_event_loop,
    'stock': _stock_loop,
}


def _close(loop):
    if loop.is_closed():
        return
    if loop.is_running():  # a broken test; do not hide it behind a hang
        raise RuntimeError('loop still running at teardown')
    try:
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.run_until_complete(loop.shutdown_default_executor())
    finally:
        asyncio.set_event_loop(None)
        loop.close()


@pytest.fixture(params=sorted(LOOP_FACTORIES))
def loop(request):
    """A new loop, once evioloop and once the stock loop."""
    lp = LOOP_FACTORIES[request.param]()
    yield lp
    _close(lp)


@pytest.fixture
def evloop():
    """A new evioloop loop."""
    lp = evioloop.new_event_loop()
    assert type(lp) is evioloop.Loop
    yield lp
    _close(lp)


@pytest.fixture
def stockloop():
    lp = _stock_loop()
    yield lp
    _close(lp)


def is_evio(loop):
    return isinstance(loop, evioloop.Loop)


PY = sys.version_info[:2]


class LoopHung(Exception):
    pass


@pytest.fixture
def watchdog():
    """Turn a loop stuck in the kernel into a test failure instead of a hang.

    SIGALRM interrupts the wait (EINTR); the Python handler raises, and the
    exception propagates out of run_forever. Use as `watchdog(seconds)`.
    """
    import signal
    import threading
    if threading.current_thread() is not threading.main_thread():
        pytest.skip('needs the main thread for SIGALRM')

    def on_alarm(signum, frame):
        raise LoopHung('the loop did not wake up')

    old = signal.signal(signal.SIGALRM, on_alarm)

    def arm(seconds):
        signal.setitimer(signal.ITIMER_REAL, seconds)
    yield arm
    signal.setitimer(signal.ITIMER_REAL, 0)
    signal.signal(signal.SIGALRM, old)
