"""After os.fork(): a fresh loop works in the child; the parent's loop
refuses to run there, with a clear error."""
import asyncio
import os
import sys

import pytest

import evioloop
from net_helpers import run_in_fork

pytestmark = [
    pytest.mark.skipif(not hasattr(os, 'fork'), reason='needs os.fork'),
    # 3.12+ warns when forking a process that has threads (executor workers
    # of earlier tests): that is about the test process, not about evioloop
    pytest.mark.filterwarnings('ignore:This process .* is multi-threaded'),
]


def _in_child(child_main):
    """Run child_main() in a forked child; return (exit code, what it wrote)."""
    return run_in_fork(child_main)


async def _exercise():
    """Timers, a thread's wake-up, an fd, the executor: the loop's moving parts."""
    import socket
    import threading
    loop = asyncio.get_running_loop()
    await asyncio.sleep(0.01)
    fut = loop.create_future()
    threading.Timer(0.01, loop.call_soon_threadsafe, args=(fut.set_result, 'woken')).start()
    woken = await asyncio.wait_for(fut, 5)
    a, b = socket.socketpair()
    with a, b:
        a.setblocking(False)
        loop.call_later(0.01, b.send, b'data')
        data = await asyncio.wait_for(loop.sock_recv(a, 10), 5)
    ex = await loop.run_in_executor(None, sum, [1, 2])
    return f'{type(loop).__name__} {woken} {data!r} {ex}'


def test_child_runs_a_fresh_loop():
    def child():
        lp = evioloop.new_event_loop()
        try:
            return lp.run_until_complete(_exercise())
        finally:
            lp.run_until_complete(lp.shutdown_default_executor())
            lp.close()
    code, out = _in_child(child)
    assert (code, out) == (0, "Loop woken b'data' 3")


def test_child_runs_evioloop_run():
    code, out = _in_child(lambda: evioloop.run(_exercise()))
    assert (code, out) == (0, "Loop woken b'data' 3")


def test_child_of_a_process_with_a_loop_runs_a_fresh_loop(evloop):
    # the parent has a loop, with a reader and a timer registered, when it forks
    import socket
    a, b = socket.socketpair()
    try:
        evloop.add_reader(a, print)
        evloop.call_later(3600, print)
        evloop.run_until_complete(asyncio.sleep(0.001))
        code, out = _in_child(lambda: evioloop.run(_exercise()))
        assert (code, out) == (0, "Loop woken b'data' 3")
        # the parent's loop is unharmed
        assert evloop.run_until_complete(_exercise()) == "Loop woken b'data' 3"
        evloop.remove_reader(a)
    finally:
        a.close()
        b.close()


def test_parents_loop_refuses_to_run_in_the_child(evloop):
    evloop.run_until_complete(asyncio.sleep(0))

    def child():
        outcomes = []
        for run in (lambda: evloop.run_until_complete(asyncio.sleep(0)),
                    evloop.run_forever):
            try:
                run()
            except RuntimeError as exc:
                outcomes.append(str(exc))
            else:
                outcomes.append('ran')
        return '\n'.join(outcomes)

    code, out = _in_child(child)
    assert code == 0, out
    msgs = out.split('\n')
    assert len(msgs) == 2
    for msg in msgs:
        assert 'fork' in msg
        assert str(os.getpid()) in msg   # names the process the loop belongs to
    # and in the parent it still runs
    assert evloop.run_until_complete(asyncio.sleep(0, 'parent ok')) == 'parent ok'


@pytest.mark.skipif(sys.version_info < (3, 12),
                    reason='asyncio resets the running loop in a forked child from 3.12')
def test_fork_from_inside_a_running_loop(evloop):
    # a child forked from a callback starts a new loop of its own
    async def main():
        return _in_child(lambda: evioloop.run(_exercise()))
    code, out = evloop.run_until_complete(main())
    assert (code, out) == (0, "Loop woken b'data' 3")
