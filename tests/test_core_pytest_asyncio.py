"""pytest-asyncio selecting evioloop, in this very session.

pytest-asyncio 0.23 .. 1.x builds each test's loop from the policy that the
`event_loop_policy` fixture returns, so overriding that fixture (here, for
this module only) selects evioloop. pytest-asyncio 1.3+ deprecates the
override in favour of a `pytest_asyncio_loop_factories` hook in conftest.py;
test_core_waysin.py runs both ways in an inner pytest.
"""
import asyncio

import pytest

import evioloop

pytest_asyncio = pytest.importorskip('pytest_asyncio')

pytestmark = pytest.mark.filterwarnings(
    'ignore:Overriding the "event_loop_policy" fixture is deprecated')


@pytest.fixture(scope='module')
def event_loop_policy():
    return evioloop.EventLoopPolicy()


@pytest.mark.asyncio
async def test_async_test_runs_on_evioloop():
    loop = asyncio.get_running_loop()
    assert type(loop) is evioloop.Loop
    assert await asyncio.sleep(0.001, 'slept') == 'slept'


@pytest_asyncio.fixture
async def running_loop():
    return asyncio.get_running_loop()


@pytest.mark.asyncio
async def test_async_fixture_runs_on_the_same_evioloop(running_loop):
    assert running_loop is asyncio.get_running_loop()
    assert type(running_loop) is evioloop.Loop


@pytest.mark.asyncio
async def test_tasks_and_executor_on_evioloop():
    loop = asyncio.get_running_loop()
    task = asyncio.create_task(asyncio.sleep(0, 'task'))
    assert await task == 'task'
    assert await loop.run_in_executor(None, sum, [1, 2, 3]) == 6
