"""The garbage collector and the loop: cycles through handles are collected.

The ready queue and the timer heap are C arrays, which the collector cannot
see unless the loop shows them to it (`_core.pyx`, "the collector"). These
tests build the cycles a user builds (an object keeping the handle of its own
bound method, a callback reaching its loop, a context variable holding a
handle) and check, on evioloop and on the stock loop, that what is garbage is
collected and what is still scheduled is not. The autouse fd check adds that a
collected loop closed its kernel queue and wake-up fds.
"""
import asyncio
import contextvars
import gc
import socket
import warnings
import weakref

import pytest

import evioloop

FACTORIES = {'evioloop': evioloop.new_event_loop, 'stock': asyncio.SelectorEventLoop}


@pytest.fixture(params=sorted(FACTORIES))
def make_loop(request):
    """A loop factory; the test may drop its loops without closing them."""
    made = []

    def make():
        lp = FACTORIES[request.param]()
        made.append(weakref.ref(lp))
        return lp
    yield make
    for ref in made:
        lp = ref()
        if lp is not None and not lp.is_closed():
            lp.close()


class Owner:
    """Keeps the handle of its own bound method: owner -> handle -> method -> owner."""

    fired = False

    def __init__(self, log=None):
        self.log = log

    def fire(self):
        self.fired = True
        if self.log is not None:
            self.log.append(self)


def schedule(loop, how, owner, delay):
    if how == 'call_soon':
        return loop.call_soon(owner.fire)
    if how == 'call_later':
        return loop.call_later(delay, owner.fire)
    if how == 'call_at':
        return loop.call_at(loop.time() + delay, owner.fire)
    if how == 'threadsafe':
        return loop.call_soon_threadsafe(owner.fire)
    raise AssertionError(how)


def collect():
    # twice: the first pass may run finalizers (the loop's __del__ closes it)
    # whose releases only the second pass can free
    gc.collect()
    gc.collect()


HOWS = ['call_soon', 'call_later', 'call_at', 'threadsafe']


@pytest.mark.parametrize('how', HOWS)
@pytest.mark.parametrize('ending', ['ran', 'cancelled', 'loop-closed'])
def test_cycle_through_a_finished_handle_is_collected(make_loop, how, ending):
    loop = make_loop()
    owner = Owner()
    owner.handle = schedule(loop, how, owner, 0 if ending == 'ran' else 3600)
    if ending == 'ran':
        loop.run_until_complete(asyncio.sleep(0.01))
        assert owner.fired
    elif ending == 'cancelled':
        owner.handle.cancel()
    else:
        loop.close()
    ref = weakref.ref(owner)
    del owner
    collect()
    assert ref() is None


@pytest.mark.parametrize('how', HOWS)
def test_scheduled_handle_keeps_its_callback_alive(make_loop, how):
    # the other side of the coin: the loop is alive, so the owner is reachable
    # through the queued handle and must survive a collection, and still fire
    loop = make_loop()
    log = []
    owner = Owner(log)
    owner.handle = schedule(loop, how, owner, 0)
    ref = weakref.ref(owner)
    del owner
    collect()
    assert ref() is not None
    loop.run_until_complete(asyncio.sleep(0.01))
    assert [o.fired for o in log] == [True]
    loop.close()


@pytest.mark.parametrize('how', HOWS)
def test_loop_dropped_without_close_with_a_cycle_queued_is_collected(make_loop, how):
    loop = make_loop()
    owner = Owner()
    owner.handle = schedule(loop, how, owner, 3600)
    owner.loop = loop           # and a cycle back to the loop itself
    loop_repr = repr(loop)
    refs = weakref.ref(loop), weakref.ref(owner)
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter('always')
        del loop, owner
        collect()
    assert [r() for r in refs] == [None, None]
    msgs = [str(x.message) for x in w if issubclass(x.category, ResourceWarning)]
    assert msgs == [f'unclosed event loop {loop_repr}']


def test_loop_dropped_with_many_queued_callbacks_and_timers_is_collected(make_loop):
    loop = make_loop()
    owners = [Owner() for _ in range(300)]
    for i, owner in enumerate(owners):
        owner.handle = schedule(loop, HOWS[i % len(HOWS)], owner, 1 + i)
        owner.loop = loop
    refs = [weakref.ref(o) for o in owners] + [weakref.ref(loop)]
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', ResourceWarning)
        del loop, owners, owner
        collect()
    assert sum(r() is not None for r in refs) == 0


def test_reader_callback_cycle_on_a_dropped_loop_is_collected(make_loop):
    loop = make_loop()
    a, b = socket.socketpair()
    owner = Owner()
    owner.sock = a
    loop.add_reader(a, owner.fire)
    owner.loop = loop
    refs = weakref.ref(loop), weakref.ref(owner)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', ResourceWarning)
        del loop, owner
        collect()
    assert [r() for r in refs] == [None, None]
    a.close()
    b.close()


def test_context_variable_holding_its_own_handle_is_collected(make_loop):
    # handle -> context -> value -> handle, where the handle is still queued
    # on a loop that is dropped
    loop = make_loop()
    var = contextvars.ContextVar('var')
    ctx = contextvars.copy_context()
    box = []
    handle = loop.call_later(3600, box.append, 1, context=ctx)
    ctx.run(var.set, (handle, box))
    box.append(handle)
    refs = weakref.ref(loop), weakref.ref(handle)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', ResourceWarning)
        del loop, handle, ctx, box
        collect()
    assert [r() for r in refs] == [None, None]


def test_task_pending_on_a_dropped_loop_is_collected(make_loop):
    # a coroutine asleep in a timer: task -> coroutine frame -> future ->
    # timer handle -> loop -> heap -> handle -> future's callback -> task
    loop = make_loop()

    async def sleeper():
        await asyncio.sleep(3600)

    task = loop.create_task(sleeper())
    loop.run_until_complete(asyncio.sleep(0))
    refs = weakref.ref(loop), weakref.ref(task)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', ResourceWarning)
        # the stock loop logs "Task was destroyed but it is pending"; so do we
        loop.set_exception_handler(lambda lp, ctx: None)
        del loop, task
        collect()
    assert [r() for r in refs] == [None, None]
