"""call_soon_threadsafe from many threads, waking a blocked loop, executors."""
import collections
import concurrent.futures
import sys
import threading
import time

import pytest

N_THREADS = 8
PER_THREAD = 100_000 // N_THREADS


def test_8_threads_100k_call_soon_threadsafe_each_runs_once(loop, watchdog):
    watchdog(120)
    runs = []                     # appended on the loop thread only
    done = loop.create_future()
    loop_thread = threading.get_ident()
    wrong_thread = []

    def cb(tid, i):
        if threading.get_ident() != loop_thread:
            wrong_thread.append((tid, i))
        runs.append((tid, i))
        if len(runs) == N_THREADS * PER_THREAD and not done.done():
            done.set_result(None)

    start = threading.Barrier(N_THREADS)

    def producer(tid):
        start.wait()
        for i in range(PER_THREAD):
            loop.call_soon_threadsafe(cb, tid, i)
            if i % 5000 == 0:
                time.sleep(0.001)   # let the loop block in between

    async def main():
        threads = [threading.Thread(target=producer, args=(t,)) for t in range(N_THREADS)]
        for t in threads:
            t.start()
        try:
            await done
        finally:
            for t in threads:
                await loop.run_in_executor(None, t.join)

    loop.run_until_complete(main())
    run_one_iteration(loop)       # anything extra would run now
    assert len(runs) == N_THREADS * PER_THREAD
    assert len(set(runs)) == len(runs)
    per_thread = collections.defaultdict(list)
    for tid, i in runs:
        per_thread[tid].append(i)
    assert sorted(per_thread) == list(range(N_THREADS))
    for tid, seq in per_thread.items():
        # each producer's callbacks run once each, in the order it queued them
        assert seq == list(range(PER_THREAD)), tid
    assert wrong_thread == []


def run_one_iteration(loop):
    loop.call_soon(loop.stop)
    loop.run_forever()


def test_call_soon_threadsafe_wakes_a_blocked_loop(loop, watchdog):
    # nothing scheduled: the loop blocks in the kernel with no timeout
    watchdog(10)
    fut = loop.create_future()

    def later():
        time.sleep(0.2)
        loop.call_soon_threadsafe(fut.set_result, 'woken')

    t = threading.Thread(target=later)
    t.start()
    try:
        assert loop.run_until_complete(fut) == 'woken'
    finally:
        t.join()


def test_stop_from_another_thread_wakes_run_forever(loop, watchdog):
    watchdog(10)
    t = threading.Timer(0.1, loop.call_soon_threadsafe, args=(loop.stop,))
    t.start()
    try:
        loop.run_forever()
    finally:
        t.join()
    assert not loop.is_running()


def test_no_lost_wakeups_in_a_race(loop, watchdog):
    # the other thread queues while the loop is entering or leaving its wait
    watchdog(60)
    for i in range(300):
        fut = loop.create_future()
        t = threading.Thread(target=loop.call_soon_threadsafe, args=(fut.set_result, i))
        t.start()
        assert loop.run_until_complete(fut) == i
        t.join()


def test_wakeup_with_a_far_timer_pending(loop, watchdog):
    watchdog(10)
    far = loop.call_later(3600, print)
    fut = loop.create_future()
    t = threading.Timer(0.05, loop.call_soon_threadsafe, args=(fut.set_result, 1))
    t.start()
    try:
        assert loop.run_until_complete(fut) == 1
    finally:
        t.join()
        far.cancel()


def test_call_soon_threadsafe_on_closed_loop(evloop, stockloop):
    for lp in (stockloop, evloop):
        lp.close()
        with pytest.raises(RuntimeError, match='Event loop is closed'):
            lp.call_soon_threadsafe(print)


def test_call_soon_threadsafe_returns_a_cancellable_handle(loop):
    got = []
    h = loop.call_soon_threadsafe(got.append, 1)
    h.cancel()
    loop.call_soon_threadsafe(got.append, 2)
    run_one_iteration(loop)
    assert got == [2]


# ---------------------------------------------------------------- executors

def test_run_in_executor(loop):
    def work(a, b):
        return a + b, threading.get_ident()
    result, tid = loop.run_until_complete(loop.run_in_executor(None, work, 2, 3))
    assert result == 5
    assert tid != threading.get_ident()


def test_run_in_executor_exception(loop):
    def work():
        raise LookupError('from executor')
    with pytest.raises(LookupError, match='from executor'):
        loop.run_until_complete(loop.run_in_executor(None, work))


def test_run_in_executor_explicit_executor(loop):
    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix='explicit') as ex:
        name = loop.run_until_complete(
            loop.run_in_executor(ex, lambda: threading.current_thread().name))
    assert name.startswith('explicit')


def test_set_default_executor(loop):
    ex = concurrent.futures.ThreadPoolExecutor(2, thread_name_prefix='mydefault')
    loop.set_default_executor(ex)
    name = loop.run_until_complete(
        loop.run_in_executor(None, lambda: threading.current_thread().name))
    assert name.startswith('mydefault')
    loop.run_until_complete(loop.shutdown_default_executor())
    assert ex._shutdown


def test_set_default_executor_rejects_other_executors(evloop, stockloop):
    class NotAThreadPool(concurrent.futures.Executor):
        pass
    outcomes = []
    for lp in (stockloop, evloop):
        try:
            with pytest.warns(DeprecationWarning) if sys.version_info < (3, 11) \
                    else _nothing():
                lp.set_default_executor(NotAThreadPool())
            outcomes.append('accepted')
        except TypeError as exc:
            outcomes.append(('TypeError', str(exc)))
    assert outcomes[0] == outcomes[1]


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_shutdown_default_executor_then_run_in_executor(loop):
    loop.run_until_complete(loop.run_in_executor(None, time.sleep, 0))
    loop.run_until_complete(loop.shutdown_default_executor())
    with pytest.raises(RuntimeError, match='Executor shutdown has been called'):
        loop.run_in_executor(None, time.sleep, 0)


def test_shutdown_default_executor_without_executor(loop):
    assert loop.run_until_complete(loop.shutdown_default_executor()) is None


def _shutdown_with_timeout(loop):
    """(warned, returned before the work finished) for a 0.2 s timeout."""
    import warnings
    release = threading.Event()
    started = threading.Event()

    def blocker():
        started.set()
        release.wait(10)

    loop.run_in_executor(None, blocker)
    started.wait(10)
    releaser = threading.Timer(1.5, release.set)
    releaser.start()
    try:
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter('always')
            loop.run_until_complete(loop.shutdown_default_executor(timeout=0.2))
            early = not release.is_set()
    finally:
        release.set()
        releaser.cancel()
        releaser.join()
    warned = [str(x.message) for x in w if issubclass(x.category, RuntimeWarning)]
    return warned, early


@pytest.mark.skipif(sys.version_info < (3, 12),
                    reason='the stock loop has shutdown_default_executor(timeout) from 3.12')
def test_shutdown_default_executor_timeout_same_as_stock(evloop, stockloop):
    # 3.12.1 waits for the work despite the timeout, 3.13 stops waiting:
    # whatever this Python's stock loop does is right
    assert _shutdown_with_timeout(evloop) == _shutdown_with_timeout(stockloop)


@pytest.mark.skipif(sys.version_info < (3, 13),
                    reason='before 3.13 the stock loop waits for the work despite the timeout')
def test_shutdown_default_executor_timeout(loop):
    warned, early = _shutdown_with_timeout(loop)
    assert early
    assert len(warned) == 1 and 'within 0.2 seconds' in warned[0]


@pytest.mark.skipif(sys.version_info >= (3, 12),
                    reason='evioloop provides the timeout itself only before 3.12')
def test_evioloop_shutdown_default_executor_timeout_before_312(evloop):
    warned, early = _shutdown_with_timeout(evloop)
    assert early
    assert len(warned) == 1 and 'within 0.2 seconds' in warned[0]


def test_shutdown_default_executor_waits_for_work(loop):
    got = []

    def work():
        time.sleep(0.1)
        got.append('done')

    loop.run_in_executor(None, work)
    loop.run_until_complete(loop.shutdown_default_executor())
    assert got == ['done']


def test_run_in_executor_on_closed_loop(evloop, stockloop):
    for lp in (stockloop, evloop):
        lp.close()
        with pytest.raises(RuntimeError, match='Event loop is closed'):
            lp.run_in_executor(None, print)


def test_run_in_executor_coroutine_function(evloop, stockloop):
    async def coro():
        pass
    outcomes = []
    for lp in (stockloop, evloop):
        try:
            fut = lp.run_in_executor(None, coro)
        except TypeError as exc:
            outcomes.append(('TypeError', str(exc)))
        else:
            res = lp.run_until_complete(fut)
            outcomes.append(('ran', type(res).__name__))
            res.close()
    assert outcomes[0] == outcomes[1]
