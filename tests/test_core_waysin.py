"""The ways in: evioloop.run, new_event_loop, Loop, asyncio.Runner,
asyncio.run(loop_factory=), EventLoopPolicy / install(), and pytest-asyncio."""
import asyncio
import contextvars
import os
import subprocess
import sys
import textwrap
import warnings

import pytest

import evioloop


async def _loop_type(value=None):
    await asyncio.sleep(0)
    return type(asyncio.get_running_loop()), value


@pytest.fixture
def restore_policy():
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', DeprecationWarning)
        old = asyncio.get_event_loop_policy()
    yield
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', DeprecationWarning)
        asyncio.set_event_loop_policy(old)


# ---------------------------------------------------------------- evioloop.run

def test_run_returns_the_value():
    assert evioloop.run(_loop_type(7)) == (evioloop.Loop, 7)


def test_run_raises_the_exception():
    async def main():
        await asyncio.sleep(0)
        raise LookupError('from main')
    with pytest.raises(LookupError, match='from main'):
        evioloop.run(main())


def test_run_rejects_non_coroutines_like_asyncio_run():
    msgs = []
    for run in (asyncio.run, evioloop.run):
        with pytest.raises(ValueError) as ei:
            run(42)
        msgs.append(str(ei.value))
    assert msgs[1] == msgs[0]


def test_run_inside_a_running_loop_like_asyncio_run():
    outcomes = []

    async def main(run):
        coro = _loop_type()
        try:
            with warnings.catch_warnings(record=True) as w:
                warnings.simplefilter('always')
                try:
                    run(coro)
                except RuntimeError as exc:
                    outcomes.append(str(exc))
                import gc
                gc.collect()
            outcomes.append([str(x.message) for x in w])
        finally:
            coro.close()

    for run in (asyncio.run, evioloop.run):
        evioloop.run(main(run))
    stock_msg, stock_warnings, evio_msg, evio_warnings = outcomes
    assert stock_msg == 'asyncio.run() cannot be called from a running event loop'
    assert stock_warnings == []
    # fails fast, as asyncio.run(): no loop created and run, nothing left un-awaited
    assert 'cannot be called from a running event loop' in evio_msg
    assert evio_warnings == []


def test_run_closes_the_loop_and_cleans_up():
    log = []
    loops = []

    async def agen():
        try:
            yield 1
            yield 2
        finally:
            log.append('agen closed')

    async def background():
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            log.append('background cancelled')
            raise

    async def main():
        loops.append(asyncio.get_running_loop())
        asyncio.get_running_loop().run_in_executor(None, log.append, 'executor ran')
        g = agen()
        await g.__anext__()
        loops.append(g)
        asyncio.ensure_future(background())
        await asyncio.sleep(0.01)
        return 'done'

    assert evioloop.run(main()) == 'done'
    loop = loops[0]
    assert loop.is_closed()
    assert sorted(log) == ['agen closed', 'background cancelled', 'executor ran']
    assert loop._default_executor is None or loop._executor_shutdown_called
    with pytest.raises(RuntimeError):
        asyncio.get_running_loop()


def test_run_debug():
    async def main():
        return asyncio.get_running_loop().get_debug()
    assert evioloop.run(main(), debug=True) is True
    assert evioloop.run(main()) is False or os.environ.get('PYTHONASYNCIODEBUG')


def test_run_twice_in_a_row_gives_fresh_loops():
    async def main():
        return asyncio.get_running_loop()
    a = evioloop.run(main())
    b = evioloop.run(main())
    assert a is not b
    assert a.is_closed() and b.is_closed()


def test_run_keyboard_interrupt_cancels_the_main_task_like_asyncio_run():
    # raised inside the coroutine: the same traceback on both
    async def main():
        await asyncio.sleep(0)
        raise KeyboardInterrupt
    for run in (asyncio.run, evioloop.run):
        with pytest.raises(KeyboardInterrupt):
            run(main())


# ---------------------------------------------------------------- the factories

def test_new_event_loop():
    a = evioloop.new_event_loop()
    b = evioloop.new_event_loop()
    try:
        assert type(a) is evioloop.Loop
        assert a is not b
        assert isinstance(a, asyncio.AbstractEventLoop)
        assert isinstance(a, asyncio.BaseEventLoop)
        assert a.run_until_complete(_loop_type(1)) == (evioloop.Loop, 1)
    finally:
        a.close()
        b.close()


def test_loop_class_directly():
    lp = evioloop.Loop()
    try:
        assert lp.run_until_complete(_loop_type(2)) == (evioloop.Loop, 2)
    finally:
        lp.close()


def test_loop_subclass():
    class MyLoop(evioloop.Loop):
        def __init__(self):
            super().__init__()
            self.custom = True

    lp = MyLoop()
    try:
        assert lp.custom
        assert lp.run_until_complete(_loop_type(3)) == (MyLoop, 3)
    finally:
        lp.close()


@pytest.mark.skipif(sys.version_info < (3, 11), reason='asyncio.Runner is new in 3.11')
def test_asyncio_runner():
    var = contextvars.ContextVar('var', default=None)

    async def setter():
        var.set('kept')
        return type(asyncio.get_running_loop())

    async def getter():
        return var.get()

    with asyncio.Runner(loop_factory=evioloop.new_event_loop) as runner:
        loop = runner.get_loop()
        assert type(loop) is evioloop.Loop
        assert runner.run(setter()) is evioloop.Loop
        # the runner's context carries over from one run to the next
        assert runner.run(getter()) == 'kept'
        assert runner.get_loop() is loop
    assert loop.is_closed()


@pytest.mark.skipif(sys.version_info < (3, 11), reason='asyncio.Runner is new in 3.11')
def test_asyncio_runner_debug():
    async def main():
        return asyncio.get_running_loop().get_debug()
    with asyncio.Runner(debug=True, loop_factory=evioloop.new_event_loop) as runner:
        assert runner.run(main()) is True


@pytest.mark.skipif(sys.version_info < (3, 12),
                    reason='asyncio.run(loop_factory=) is new in 3.12')
def test_asyncio_run_loop_factory():
    assert asyncio.run(_loop_type(5), loop_factory=evioloop.new_event_loop) == \
        (evioloop.Loop, 5)
    assert asyncio.run(_loop_type(6), loop_factory=evioloop.Loop) == (evioloop.Loop, 6)


# ---------------------------------------------------------------- policies

def test_event_loop_policy(restore_policy):
    policy = evioloop.EventLoopPolicy()
    lp = policy.new_event_loop()
    try:
        assert type(lp) is evioloop.Loop
    finally:
        lp.close()
    assert 'evioloop' in repr(policy)
    asyncio.set_event_loop_policy(policy)
    lp = asyncio.new_event_loop()
    try:
        assert type(lp) is evioloop.Loop
    finally:
        lp.close()
    assert asyncio.run(_loop_type(8)) == (evioloop.Loop, 8)


def test_install(restore_policy):
    evioloop.install()
    assert isinstance(asyncio.get_event_loop_policy(), evioloop.EventLoopPolicy)
    lp = asyncio.new_event_loop()
    try:
        assert type(lp) is evioloop.Loop
    finally:
        lp.close()
    assert asyncio.run(_loop_type(9)) == (evioloop.Loop, 9)


def test_policy_set_event_loop(restore_policy):
    asyncio.set_event_loop_policy(evioloop.EventLoopPolicy())
    lp = asyncio.new_event_loop()
    try:
        asyncio.set_event_loop(lp)
        with warnings.catch_warnings():
            warnings.simplefilter('ignore', DeprecationWarning)
            assert asyncio.get_event_loop() is lp
    finally:
        asyncio.set_event_loop(None)
        lp.close()


@pytest.mark.skipif(sys.version_info >= (3, 14), reason='policies warn on 3.14+')
def test_policy_does_not_warn_before_314(restore_policy):
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        evioloop.EventLoopPolicy()
        evioloop.install()


def test_exported_names():
    for name in ('Loop', 'new_event_loop', 'run', 'install', 'EventLoopPolicy'):
        assert name in evioloop.__all__
        assert hasattr(evioloop, name)


# ---------------------------------------------------------------- pytest-asyncio

PYTEST_ASYNCIO_TEST = textwrap.dedent('''
    import asyncio
    import pytest
    import pytest_asyncio
    import evioloop

    @pytest.mark.asyncio
    async def test_runs_on_evioloop():
        assert type(asyncio.get_running_loop()) is evioloop.Loop

    @pytest_asyncio.fixture
    async def loop_of_fixture():
        return asyncio.get_running_loop()

    @pytest.mark.asyncio
    async def test_async_fixture_shares_the_loop(loop_of_fixture):
        assert loop_of_fixture is asyncio.get_running_loop()
        assert type(loop_of_fixture) is evioloop.Loop
''')

CONFTEST_HOOK = textwrap.dedent('''
    import evioloop

    def pytest_asyncio_loop_factories(config, item):
        return {'evioloop': evioloop.new_event_loop}
''')

CONFTEST_POLICY = textwrap.dedent('''
    import pytest
    import evioloop

    @pytest.fixture(scope='session')
    def event_loop_policy():
        return evioloop.EventLoopPolicy()
''')


def _pytest_asyncio_has_loop_factories_hook():
    import pytest_asyncio.plugin as plugin
    return hasattr(getattr(plugin, 'PytestAsyncioSpecs', None),
                   'pytest_asyncio_loop_factories')


def _run_inner_pytest(tmp_path, conftest):
    (tmp_path / 'conftest.py').write_text(conftest)
    (tmp_path / 'test_inner.py').write_text(PYTEST_ASYNCIO_TEST)
    (tmp_path / 'pytest.ini').write_text(
        '[pytest]\nasyncio_mode = strict\nasyncio_default_fixture_loop_scope = function\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith('PYTEST_')}
    return subprocess.run(
        [sys.executable, '-m', 'pytest', '-p', 'no:cacheprovider', '-q',
         '-W', 'ignore::DeprecationWarning', str(tmp_path)],
        cwd=str(tmp_path), env=env, capture_output=True, text=True, timeout=120)


def test_pytest_asyncio_loop_factories_hook(tmp_path):
    pytest.importorskip('pytest_asyncio')
    if not _pytest_asyncio_has_loop_factories_hook():
        pytest.skip('this pytest-asyncio has no pytest_asyncio_loop_factories hook')
    res = _run_inner_pytest(tmp_path, CONFTEST_HOOK)
    assert res.returncode == 0, res.stdout + res.stderr
    assert '2 passed' in res.stdout


def test_pytest_asyncio_event_loop_policy_fixture(tmp_path):
    # the way for pytest-asyncio 0.23 .. 1.x (deprecated by 1.3's hook)
    pytest.importorskip('pytest_asyncio')
    res = _run_inner_pytest(tmp_path, CONFTEST_POLICY)
    assert res.returncode == 0, res.stdout + res.stderr
    assert '2 passed' in res.stdout
