"""run_forever / run_until_complete / stop / close, futures and tasks,
task factories, async generators, and the run_until_complete done callback."""
import asyncio
import inspect
import sys

import pytest

import evioloop


async def _value(v):
    await asyncio.sleep(0)
    return v


def test_run_until_complete_returns_the_result(loop):
    assert loop.run_until_complete(_value(42)) == 42
    fut = loop.create_future()
    loop.call_soon(fut.set_result, 'fut')
    assert loop.run_until_complete(fut) == 'fut'
    task = loop.create_task(_value('task'))
    assert loop.run_until_complete(task) == 'task'


def test_run_until_complete_raises_the_exception(loop):
    async def fail():
        await asyncio.sleep(0)
        raise LookupError('failed')
    with pytest.raises(LookupError, match='failed'):
        loop.run_until_complete(fail())


def test_run_until_complete_rejects_non_awaitables(evloop, stockloop):
    msgs = []
    for lp in (stockloop, evloop):
        with pytest.raises(TypeError) as ei:
            lp.run_until_complete(42)
        msgs.append(str(ei.value))
    assert msgs[0] == msgs[1]


def test_run_until_complete_future_of_another_loop(evloop, stockloop):
    msgs = []
    for lp, other in ((stockloop, evloop), (evloop, stockloop)):
        fut = other.create_future()
        with pytest.raises(ValueError) as ei:
            lp.run_until_complete(fut)
        msgs.append(str(ei.value))
    assert msgs[0] == msgs[1]


def test_run_until_complete_stopped_early(loop):
    fut = loop.create_future()
    loop.call_soon(loop.stop)
    with pytest.raises(RuntimeError, match='Event loop stopped before Future completed'):
        loop.run_until_complete(fut)
    fut.cancel()


def test_is_running(loop):
    seen = []
    loop.call_soon(lambda: seen.append(loop.is_running()))
    assert not loop.is_running()
    loop.run_until_complete(asyncio.sleep(0))
    assert seen == [True]
    assert not loop.is_running()


def test_running_loop_is_set_only_while_running(loop):
    async def main():
        return asyncio.get_running_loop()
    assert loop.run_until_complete(main()) is loop
    with pytest.raises(RuntimeError):
        asyncio.get_running_loop()


@pytest.mark.parametrize('nested', ['run_forever', 'run_until_complete'])
def test_running_the_running_loop_raises(loop, nested):
    # one nested call per loop: after a refused nested run_forever(), 3.13's
    # stock loop forgets that it is running (its cleanup runs on the refusal)
    errors = []

    def again():
        coro = _value(1)
        try:
            if nested == 'run_forever':
                loop.run_forever()
            else:
                loop.run_until_complete(coro)
        except RuntimeError as exc:
            errors.append(str(exc))
        finally:
            coro.close()
        errors.append(loop.is_running())
        loop.stop()

    loop.call_soon(again)
    loop.run_forever()
    assert errors[0] == 'This event loop is already running'
    if isinstance(loop, evioloop.Loop) or not (sys.version_info[:2] == (3, 13)
                                              and nested == 'run_forever'):
        # 3.13's stock run_forever() runs its cleanup when it refuses, and the
        # loop then forgets that it is running (a CPython bug evioloop avoids)
        assert errors[1] is True
    assert not loop.is_running()


def test_running_a_loop_inside_another_loop_raises(evloop, stockloop):
    outcomes = []
    for outer, inner in ((stockloop, evloop), (evloop, stockloop)):
        errors = []

        def nested(inner=inner, errors=errors):
            coro = _value(1)
            try:
                inner.run_until_complete(coro)
            except RuntimeError as exc:
                errors.append(str(exc))
            finally:
                coro.close()

        outer.call_soon(nested)
        outer.run_until_complete(asyncio.sleep(0.001))
        outcomes.append(errors)
    assert outcomes[0] == outcomes[1]
    assert outcomes[0] == ['Cannot run the event loop while another loop is running']


def test_close_while_running_raises(loop):
    errors = []

    def try_close():
        try:
            loop.close()
        except RuntimeError as exc:
            errors.append(str(exc))

    loop.call_soon(try_close)
    loop.run_until_complete(asyncio.sleep(0))
    assert errors == ['Cannot close a running event loop']
    assert not loop.is_closed()


def test_close(loop):
    assert not loop.is_closed()
    loop.close()
    assert loop.is_closed()
    loop.close()  # idempotent
    assert loop.is_closed()


@pytest.mark.parametrize('call', [
    lambda lp: lp.call_soon(print),
    lambda lp: lp.call_later(1, print),
    lambda lp: lp.call_at(1, print),
    lambda lp: lp.call_soon_threadsafe(print),
    lambda lp: lp.run_forever(),
    lambda lp: lp.run_until_complete(asyncio.sleep(0)),
    lambda lp: lp.create_task(asyncio.sleep(0)),
    lambda lp: lp.run_in_executor(None, print),
    lambda lp: lp.add_reader(0, print),
    lambda lp: lp.add_writer(1, print),
], ids=['call_soon', 'call_later', 'call_at', 'call_soon_threadsafe', 'run_forever',
        'run_until_complete', 'create_task', 'run_in_executor', 'add_reader', 'add_writer'])
def test_closed_loop_refuses(loop, call):
    import warnings
    loop.close()
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', RuntimeWarning)  # the never-awaited coroutines
        with pytest.raises(RuntimeError, match='Event loop is closed'):
            call(loop)


def test_closed_loop_remove_reader_returns_false(loop):
    loop.close()
    assert loop.remove_reader(0) is False
    assert loop.remove_writer(1) is False


def test_close_drops_pending_callbacks(loop):
    got = []
    loop.call_soon(got.append, 1)
    loop.call_later(0, got.append, 2)
    loop.close()
    assert got == []


def test_stop_then_run_again(loop):
    got = []
    loop.call_later(0.005, loop.stop)
    loop.run_forever()
    loop.call_soon(got.append, 'again')
    loop.call_soon(loop.stop)
    loop.run_forever()
    assert got == ['again']


# ---------------------------------------------------------------- futures, tasks

def test_create_future(loop):
    fut = loop.create_future()
    assert isinstance(fut, asyncio.Future)
    assert fut.get_loop() is loop
    assert not fut.done()
    fut.cancel()


def test_create_task_name(loop):
    t = loop.create_task(_value(1), name='my-task')
    assert t.get_name() == 'my-task'
    assert isinstance(t, asyncio.Task)
    assert t.get_loop() is loop
    t2 = loop.create_task(_value(2))
    assert t2.get_name().startswith('Task-')
    assert loop.run_until_complete(asyncio.gather(t, t2)) == [1, 2]


def test_create_task_rejects_non_coroutines(evloop, stockloop):
    outcomes = []
    for lp in (stockloop, evloop):
        with pytest.raises(TypeError) as ei:
            lp.create_task(42)
        outcomes.append(str(ei.value))
    assert outcomes[0] == outcomes[1]


def test_create_task_unknown_keyword(evloop, stockloop):
    outcomes = []
    for lp in (stockloop, evloop):
        coro = _value(1)
        try:
            lp.create_task(coro, no_such_keyword=1)
        except TypeError:
            outcomes.append('TypeError')
        else:
            outcomes.append('accepted')
        finally:
            coro.close()
    assert outcomes[0] == outcomes[1]


_TASK_TAKES_EAGER_START = 'eager_start' in inspect.signature(asyncio.Task).parameters


def test_create_task_eager_start_wherever_the_task_takes_it(evloop):
    # 3.13.3+ and 3.14 hand create_task's keywords on to the Task; evioloop
    # does so on every Python whose Task knows the keyword (3.13.0's stock
    # loop refuses it), and where the Task does not, its TypeError stands.
    started = []

    async def body():
        started.append('ran')
        return 'done'

    async def main():
        coro = body()
        try:
            task = evloop.create_task(coro, eager_start=True)
        except TypeError:
            coro.close()
            return 'TypeError'
        ran_before_return = list(started)
        return ran_before_return, await task

    outcome = evloop.run_until_complete(main())
    if _TASK_TAKES_EAGER_START:
        assert outcome == (['ran'], 'done')
    else:
        assert outcome == 'TypeError'


@pytest.mark.skipif(not _TASK_TAKES_EAGER_START, reason='Task has no eager_start before 3.12')
def test_create_task_keywords_reach_the_task_factory(evloop):
    seen = []

    def factory(lp, coro, **kwargs):
        seen.append(sorted(kwargs.items()))
        return asyncio.Task(coro, loop=lp, **kwargs)

    evloop.set_task_factory(factory)
    t = evloop.create_task(_value(3), name='n', eager_start=False)
    assert evloop.run_until_complete(t) == 3
    assert seen == [[('eager_start', False), ('name', 'n')]]


def _factory_scenario(loop):
    calls = []

    class MyTask(asyncio.Task):
        pass

    def factory(lp, coro, **kwargs):
        calls.append((lp is loop, sorted(kwargs)))
        return MyTask(coro, loop=lp, **kwargs)

    assert loop.get_task_factory() is None
    loop.set_task_factory(factory)
    assert loop.get_task_factory() is factory
    t = loop.create_task(_value('v'), name='named')
    assert type(t) is MyTask
    assert t.get_name() == 'named'
    result = loop.run_until_complete(t)
    inner = []

    async def main():
        inner.append(type(asyncio.ensure_future(_value(1))).__name__)
        await asyncio.sleep(0)
    loop.run_until_complete(main())
    loop.set_task_factory(None)
    assert loop.get_task_factory() is None
    assert type(loop.create_task(_value(1))) is not MyTask
    loop.run_until_complete(asyncio.sleep(0.001))
    return result, calls, inner


def test_task_factory(loop):
    result, calls, inner = _factory_scenario(loop)
    assert result == 'v'
    assert calls and all(same_loop for same_loop, _ in calls)
    assert inner == ['MyTask']


def test_task_factory_same_as_stock(evloop, stockloop):
    assert _factory_scenario(evloop) == _factory_scenario(stockloop)


def test_set_task_factory_rejects_non_callable(loop):
    with pytest.raises(TypeError):
        loop.set_task_factory(42)


# ---------------------------------------------------------------- async generators

def _asyncgen_scenario(loop):
    log = []

    async def agen(tag):
        try:
            log.append(f'{tag} start')
            yield 1
            yield 2
        finally:
            log.append(f'{tag} finally')

    gens = []

    async def main():
        for tag in ('a', 'b'):
            g = agen(tag)
            gens.append(g)
            await g.__anext__()

    loop.run_until_complete(main())
    assert log == ['a start', 'b start']
    loop.run_until_complete(loop.shutdown_asyncgens())
    return sorted(log)


def test_shutdown_asyncgens_finalizes_suspended_generators(loop):
    assert _asyncgen_scenario(loop) == ['a finally', 'a start', 'b finally', 'b start']


def test_asyncgen_after_shutdown_warns(loop):
    loop.run_until_complete(loop.shutdown_asyncgens())

    async def agen():
        yield 1

    async def main():
        g = agen()
        await g.__anext__()
        await g.aclose()

    with pytest.warns(ResourceWarning, match='shutdown_asyncgens'):
        loop.run_until_complete(main())


def test_asyncgen_hooks_are_restored(loop):
    before = sys.get_asyncgen_hooks()
    seen = []

    async def main():
        seen.append(sys.get_asyncgen_hooks())
    loop.run_until_complete(main())
    assert sys.get_asyncgen_hooks() == before
    assert seen[0].firstiter is not None and seen[0].finalizer is not None


def test_asyncgen_garbage_is_finalized_on_the_loop(loop):
    log = []

    async def agen():
        try:
            yield 1
            yield 2
        finally:
            log.append(asyncio.get_running_loop() is loop)

    async def main():
        g = agen()
        await g.__anext__()
        del g
        import gc
        gc.collect()
        for _ in range(5):
            await asyncio.sleep(0)

    loop.run_until_complete(main())
    assert log == [True]


# ---------------------------------------------------------------- the done callback anyio looks for

def test_run_until_complete_adds_the_stock_done_callback(loop):
    from asyncio import base_events
    found = []

    async def main():
        task = asyncio.current_task()
        found.extend(cb for cb, _ctx in task._callbacks)

    loop.run_until_complete(main())
    assert base_events._run_until_complete_cb in found


def test_run_until_complete_removes_the_done_callback(loop):
    from asyncio import base_events
    task = loop.create_task(_value(1))
    loop.run_until_complete(task)
    assert base_events._run_until_complete_cb not in [cb for cb, _ in (task._callbacks or ())]


def test_evioloop_run_root_task_has_the_done_callback():
    from asyncio import base_events

    async def main():
        return [cb for cb, _ctx in asyncio.current_task()._callbacks]

    assert base_events._run_until_complete_cb in evioloop.run(main())


def test_anyio_finds_the_root_task():
    anyio = pytest.importorskip('anyio')
    # anyio's own lookup: the task that carries _run_until_complete_cb
    backend = pytest.importorskip('anyio._backends._asyncio')
    find_root_task = getattr(backend, 'find_root_task', None)
    if find_root_task is None:
        pytest.skip('this anyio has no find_root_task()')

    async def child():
        return find_root_task()

    async def main():
        return await asyncio.create_task(child()), asyncio.current_task()

    found, root = evioloop.run(main())
    assert found is root
    assert anyio is not None
