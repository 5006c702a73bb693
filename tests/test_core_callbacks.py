"""call_soon / call_later / call_at ordering, handles, contextvars, the
exception handler, and BaseExceptions escaping the loop.

Behaviour tests run on evioloop and on the stock loop (the `loop` fixture):
the expected values are the stock loop's.
"""
import asyncio
import contextvars
import logging
import socket

import pytest

import evioloop


def run_one_iteration(loop):
    """Run exactly the callbacks that are due now, as one run_forever turn."""
    loop.call_soon(loop.stop)
    loop.run_forever()


def scenario_mixed(loop):
    order = []
    loop.call_soon(order.append, 'soon1')
    loop.call_later(0, order.append, 'later0')
    loop.call_later(-1, order.append, 'later-1')
    loop.call_soon(order.append, 'soon2')
    loop.call_at(loop.time() - 10, order.append, 'at-10')
    loop.call_later(0, order.append, 'later0b')
    loop.call_at(loop.time() + 0.2, order.append, 'at+0.2')
    loop.call_later(0.1, order.append, 'later0.1')
    loop.run_until_complete(asyncio.sleep(0.25))
    return order


def test_mixed_ordering(loop):
    # call_soon callbacks first, then due timers by deadline (negative delays
    # and past deadlines first), then future timers by deadline.
    assert scenario_mixed(loop) == [
        'soon1', 'soon2', 'at-10', 'later-1', 'later0', 'later0b',
        'later0.1', 'at+0.2']


def test_mixed_ordering_same_as_stock(evloop, stockloop):
    assert scenario_mixed(evloop) == scenario_mixed(stockloop)


def scenario_nested(loop):
    order = []

    def first():
        order.append('first')
        loop.call_soon(order.append, 'soon-from-first')
        loop.call_later(0, order.append, 'later0-from-first')
        loop.call_later(-5, order.append, 'later-5-from-first')

    def third():
        order.append('third')
        loop.call_soon(order.append, 'soon-from-third')

    loop.call_soon(first)
    loop.call_soon(order.append, 'second')
    loop.call_soon(third)
    loop.run_until_complete(asyncio.sleep(0.01))
    return order


def test_callbacks_scheduled_by_callbacks_wait_for_next_iteration(loop):
    assert scenario_nested(loop) == [
        'first', 'second', 'third',
        'soon-from-first', 'soon-from-third',
        'later-5-from-first', 'later0-from-first']


def test_nested_ordering_same_as_stock(evloop, stockloop):
    assert scenario_nested(evloop) == scenario_nested(stockloop)


def test_what_a_timer_schedules_waits_for_next_iteration(loop):
    order = []

    def timer():
        order.append('timer')
        loop.call_soon(order.append, 'soon-from-timer')
        loop.call_later(-1, order.append, 'later-1-from-timer')
        loop.call_at(loop.time() - 5, order.append, 'at-5-from-timer')

    loop.call_later(0.001, timer)
    loop.run_until_complete(asyncio.sleep(0.02))
    assert order == ['timer', 'soon-from-timer', 'at-5-from-timer', 'later-1-from-timer']


def test_what_a_reader_schedules_waits_for_next_iteration(loop):
    order = []
    a, b = socket.socketpair()
    try:
        def reader():
            order.append(('reader', a.recv(10)))
            loop.remove_reader(a)
            loop.call_soon(order.append, 'soon-from-reader')
            loop.call_later(-1, order.append, 'later-1-from-reader')

        loop.add_reader(a, reader)
        b.send(b'x')
        loop.run_until_complete(asyncio.sleep(0.02))
    finally:
        a.close()
        b.close()
    assert order == [('reader', b'x'), 'soon-from-reader', 'later-1-from-reader']


def test_overdue_timer_rescheduling_itself_does_not_starve_the_loop(loop):
    # A timer that keeps scheduling itself in the past (a periodic job that
    # fell behind) runs once per iteration, so stop() and I/O still get in.
    ticks = []
    pending = []

    def tick():
        ticks.append(1)
        if len(ticks) < 100_000:
            pending[:] = [loop.call_later(-0.5, tick)]

    pending.append(loop.call_later(-0.5, tick))
    loop.call_soon(loop.stop)
    loop.run_forever()
    assert len(ticks) == 1
    loop.call_soon(loop.stop)
    loop.run_forever()
    assert len(ticks) == 2
    pending[0].cancel()


def test_call_soon_is_fifo(loop):
    got = []
    for i in range(5000):
        loop.call_soon(got.append, i)
    run_one_iteration(loop)
    assert got == list(range(5000))


def test_call_soon_args_and_return_value(loop):
    got = []
    h = loop.call_soon(lambda *a: got.append(a), 1, 'two', None)
    assert not h.cancelled()
    run_one_iteration(loop)
    assert got == [(1, 'two', None)]


def test_timers_fire_in_deadline_order_not_schedule_order(loop):
    got = []
    base = loop.time()   # one base: a slow machine must not reorder the deadlines
    for d in (0.03, 0.01, 0.02, 0.0, -0.01):
        loop.call_at(base + d, got.append, d)
    loop.run_until_complete(asyncio.sleep(0.06))
    assert got == [-0.01, 0.0, 0.01, 0.02, 0.03]


def test_equal_deadlines_keep_schedule_order(evloop):
    # The stock loop's heapq does not promise this (it gives a, c, b, d, e);
    # evioloop's heap breaks ties by a sequence number, as libuv/uvloop do.
    got = []
    when = evloop.time() + 0.01
    for name in 'abcdefghij':
        evloop.call_at(when, got.append, name)
    evloop.run_until_complete(asyncio.sleep(0.03))
    assert got == list('abcdefghij')


def test_stop_inside_callback_finishes_the_iteration(loop):
    got = []

    def a():
        got.append('a')
        loop.stop()
        loop.call_soon(got.append, 'b')

    loop.call_soon(a)
    loop.call_soon(got.append, 'c')
    loop.run_forever()
    assert got == ['a', 'c']
    assert not loop.is_running()
    # what was scheduled is still there for the next run
    run_one_iteration(loop)
    assert got == ['a', 'c', 'b']


def test_stop_before_run_forever_runs_one_iteration(loop):
    got = []
    loop.stop()
    loop.call_soon(lambda: (got.append(1), loop.call_soon(got.append, 2)))
    loop.run_forever()
    assert got == [1]
    run_one_iteration(loop)
    assert got == [1, 2]


def test_cancelled_handle_does_not_run(loop):
    got = []
    h = loop.call_soon(got.append, 'x')
    h2 = loop.call_soon(got.append, 'y')
    h.cancel()
    assert h.cancelled()
    h.cancel()  # twice is fine
    assert h.cancelled()
    assert 'cancelled' in repr(h)
    run_one_iteration(loop)
    assert got == ['y']
    assert not h2.cancelled()


def test_callback_cancels_a_later_callback_of_the_same_iteration(loop):
    got = []
    handles = {}

    def a():
        got.append('a')
        handles['b'].cancel()
        handles['t'].cancel()

    loop.call_soon(a)
    handles['b'] = loop.call_soon(got.append, 'b')
    handles['t'] = loop.call_later(0, got.append, 't')
    loop.call_soon(got.append, 'c')
    loop.run_until_complete(asyncio.sleep(0.01))
    assert got == ['a', 'c']


def test_timer_cancels_another_due_timer(loop):
    got = []
    handles = {}

    def first():
        got.append('first')
        handles['second'].cancel()

    loop.call_later(-1, first)
    handles['second'] = loop.call_later(0, got.append, 'second')
    loop.call_later(0.001, got.append, 'third')
    loop.run_until_complete(asyncio.sleep(0.02))
    assert got == ['first', 'third']


# ---------------------------------------------------------------- handles

def test_handle_repr_names_the_callback(loop):
    def my_callback():
        pass
    h = loop.call_soon(my_callback)
    t = loop.call_later(10, my_callback)
    assert 'my_callback' in repr(h)
    assert 'my_callback' in repr(t)
    assert 'when=' in repr(t)
    t.cancel()
    h.cancel()


def test_handle_get_context(loop):
    ctx = contextvars.copy_context()
    h = loop.call_soon(print, context=ctx)
    t = loop.call_later(10, print, context=ctx)
    a = loop.call_at(loop.time() + 10, print, context=ctx)
    if not hasattr(h, 'get_context'):
        pytest.skip('asyncio.Handle.get_context() is new in Python 3.12')
    assert h.get_context() is ctx
    assert t.get_context() is ctx
    assert a.get_context() is ctx
    d = loop.call_soon(print)
    assert isinstance(d.get_context(), contextvars.Context)
    assert d.get_context() is not contextvars.copy_context()
    for x in (h, t, a, d):
        x.cancel()


def test_evioloop_handle_get_context_on_every_python(evloop):
    ctx = contextvars.copy_context()
    assert evloop.call_soon(print, context=ctx).get_context() is ctx
    assert evloop.call_later(1, print, context=ctx).get_context() is ctx
    evloop.call_later(1, print).cancel()


# ---------------------------------------------------------------- contextvars

var = contextvars.ContextVar('var', default='default')


def _ctx_with(value):
    ctx = contextvars.copy_context()
    ctx.run(var.set, value)
    return ctx


def test_context_argument_everywhere(loop):
    seen = {}
    loop.call_soon(lambda: seen.setdefault('soon', var.get()), context=_ctx_with('s'))
    loop.call_later(0, lambda: seen.setdefault('later', var.get()), context=_ctx_with('l'))
    loop.call_at(loop.time(), lambda: seen.setdefault('at', var.get()), context=_ctx_with('a'))
    loop.call_soon_threadsafe(lambda: seen.setdefault('threadsafe', var.get()),
                              context=_ctx_with('t'))
    loop.run_until_complete(asyncio.sleep(0.01))
    assert seen == {'soon': 's', 'later': 'l', 'at': 'a', 'threadsafe': 't'}
    assert var.get() == 'default'


def test_context_argument_from_another_thread(loop):
    import threading
    seen = []
    done = loop.create_future()

    def cb():
        seen.append(var.get())
        done.set_result(None)

    t = threading.Thread(target=loop.call_soon_threadsafe, args=(cb,),
                         kwargs={'context': _ctx_with('from-thread')})
    t.start()
    loop.run_until_complete(asyncio.wait_for(done, 10))
    t.join()
    assert seen == ['from-thread']


@pytest.mark.skipif(not hasattr(asyncio.Task, 'get_context'),
                    reason='create_task(context=) is new in Python 3.11')
def test_create_task_context(loop):
    async def coro():
        return var.get()
    task = loop.create_task(coro(), context=_ctx_with('task'))
    assert task.get_context().get(var) == 'task'
    assert loop.run_until_complete(task) == 'task'


def test_default_context_is_a_copy_taken_at_schedule_time(loop):
    got = []
    token = var.set('at-schedule')
    try:
        loop.call_soon(lambda: got.append(var.get()))
        loop.call_later(0, lambda: got.append(var.get()))
        var.set('after-schedule')
    finally:
        var.reset(token)

    def setter():
        var.set('set-by-callback')   # changes only this callback's copy
    loop.call_soon(setter)
    loop.call_soon(lambda: got.append(var.get()))
    loop.run_until_complete(asyncio.sleep(0.01))
    assert got == ['at-schedule', 'default', 'at-schedule']
    assert var.get() == 'default'


def test_shared_explicit_context_sees_earlier_callbacks_changes(loop):
    ctx = contextvars.copy_context()
    got = []
    loop.call_soon(var.set, 'first', context=ctx)
    loop.call_soon(lambda: got.append(var.get()), context=ctx)
    run_one_iteration(loop)
    assert got == ['first']
    assert ctx[var] == 'first'


def test_callback_context_is_exited_after_an_exception(loop):
    ctx = _ctx_with('x')
    loop.set_exception_handler(lambda loop, context: None)
    loop.call_soon(lambda: 1 / 0, context=ctx)
    # entering the same context again fails if it was left entered
    loop.call_soon(lambda: None, context=ctx)
    got = []
    loop.call_soon(lambda: got.append(var.get()))
    run_one_iteration(loop)
    assert got == ['default']
    assert ctx.run(var.get) == 'x'


# ---------------------------------------------------------------- exceptions

def test_exception_in_callback_reaches_handler_and_loop_goes_on(loop):
    contexts = []
    loop.set_exception_handler(lambda lp, ctx: contexts.append((lp, ctx)))
    assert loop.get_exception_handler() is not None
    got = []

    def boom():
        raise ZeroDivisionError('boom')

    h = loop.call_soon(boom)
    loop.call_soon(got.append, 'after')
    loop.call_later(0.001, boom)
    loop.call_later(0.002, got.append, 'timer after')
    loop.run_until_complete(asyncio.sleep(0.02))
    assert got == ['after', 'timer after']
    assert len(contexts) == 2
    lp, ctx = contexts[0]
    assert lp is loop
    assert {'message', 'exception', 'handle'} <= set(ctx)
    assert ctx['message'].startswith('Exception in callback')
    assert 'boom' in ctx['message']
    assert isinstance(ctx['exception'], ZeroDivisionError)
    assert ctx['handle'] is h
    assert isinstance(contexts[1][1]['exception'], ZeroDivisionError)
    assert loop.run_until_complete(asyncio.sleep(0, 'still runs')) == 'still runs'


def test_exception_in_reader_callback_reaches_handler(loop):
    contexts = []
    loop.set_exception_handler(lambda lp, ctx: contexts.append(ctx))
    a, b = socket.socketpair()
    try:
        def reader():
            a.recv(10)
            raise ValueError('in reader')
        loop.add_reader(a, reader)
        b.send(b'x')
        loop.run_until_complete(asyncio.sleep(0.02))
        loop.remove_reader(a)
    finally:
        a.close()
        b.close()
    assert len(contexts) == 1
    assert isinstance(contexts[0]['exception'], ValueError)
    assert contexts[0]['message'].startswith('Exception in callback')
    assert 'handle' in contexts[0]


def test_default_exception_handler_logs(loop, caplog):
    def boom():
        raise KeyError('logged')
    loop.call_soon(boom)
    with caplog.at_level(logging.ERROR, logger='asyncio'):
        loop.run_until_complete(asyncio.sleep(0.01))
    records = [r for r in caplog.records if r.name == 'asyncio']
    assert len(records) == 1
    assert records[0].getMessage().startswith('Exception in callback')
    assert records[0].exc_info[0] is KeyError


def test_error_in_exception_handler_is_logged(loop, caplog):
    def handler(lp, ctx):
        raise RuntimeError('handler broke')
    loop.set_exception_handler(handler)
    loop.call_soon(lambda: 1 / 0)
    with caplog.at_level(logging.ERROR, logger='asyncio'):
        loop.run_until_complete(asyncio.sleep(0.01))
    msgs = [r.getMessage() for r in caplog.records if r.name == 'asyncio']
    assert any('Unhandled error in exception handler' in m for m in msgs), msgs


def test_set_exception_handler_rejects_non_callable(loop):
    with pytest.raises(TypeError):
        loop.set_exception_handler(42)
    loop.set_exception_handler(None)
    assert loop.get_exception_handler() is None


@pytest.mark.parametrize('exc_type', [KeyboardInterrupt, SystemExit])
def test_base_exceptions_propagate_from_callbacks(loop, exc_type):
    got = []

    def raiser():
        got.append('raiser')
        raise exc_type()

    loop.call_soon(raiser)
    loop.call_soon(got.append, 'next')
    with pytest.raises(exc_type):
        loop.run_forever()
    assert not loop.is_running()
    assert got == ['raiser']
    # the loop is usable again and the pending callback runs
    run_one_iteration(loop)
    assert got == ['raiser', 'next']


@pytest.mark.parametrize('exc_type', [KeyboardInterrupt, SystemExit])
def test_base_exceptions_propagate_from_run_until_complete(loop, exc_type):
    async def main():
        await asyncio.sleep(0)
        raise exc_type()

    with pytest.raises(exc_type):
        loop.run_until_complete(main())
    assert not loop.is_running()
    assert loop.run_until_complete(asyncio.sleep(0, 'ok')) == 'ok'


@pytest.mark.parametrize('exc_type', [KeyboardInterrupt, SystemExit])
def test_base_exceptions_propagate_from_timers(loop, exc_type):
    def raiser():
        raise exc_type()
    loop.call_later(0.001, raiser)
    sleeper = loop.create_task(asyncio.sleep(10))
    with pytest.raises(exc_type):
        loop.run_until_complete(sleeper)
    assert not sleeper.done()
    sleeper.cancel()
    with pytest.raises(asyncio.CancelledError):
        loop.run_until_complete(sleeper)


def test_evioloop_handle_types_are_exported():
    assert evioloop.Handle is not None
    assert issubclass(evioloop.TimerHandle, evioloop.Handle)


def call_soon_argument_forms(loop):
    """Each way of calling call_soon: what ran (with which context value), or
    the exception type. evioloop's call_soon is a C method with its own fast
    path for `context=`; every other form goes to the generic parser."""
    var = contextvars.ContextVar('var', default='default')
    seen = []

    def cb(*args):
        seen.append((args, var.get()))

    ctx = contextvars.copy_context()
    ctx.run(var.set, 'explicit')
    forms = {
        'positional': lambda: loop.call_soon(cb, 1, 2),
        'context kw': lambda: loop.call_soon(cb, 3, context=ctx),
        'context None': lambda: loop.call_soon(cb, 4, context=None),
        'callback kw': lambda: loop.call_soon(callback=cb),
        'callback and context kw': lambda: loop.call_soon(context=ctx, callback=cb),
        'no callback': lambda: loop.call_soon(),
        'unknown kw': lambda: loop.call_soon(cb, foo=1),
        'context twice': lambda: loop.call_soon(cb, context=ctx, **{'context': ctx}),
        'kwargs dict': lambda: loop.call_soon(cb, 5, **{'context': ctx}),
    }
    results = {}
    for name, call in forms.items():
        try:
            h = call()
            results[name] = type(h).__name__ in ('Handle', 'evioloop.Handle')
        except TypeError:
            results[name] = 'TypeError'
    run_one_iteration(loop)

    async def from_a_task():
        # a C Task passes context= with its own (not interned) ('context',)
        # tuple on every step; the value set here must be seen after a step
        var.set('task')
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        return var.get()

    results['task'] = loop.run_until_complete(from_a_task())
    return results, seen


def test_call_soon_argument_forms_as_on_stock(evloop, stockloop):
    assert call_soon_argument_forms(evloop) == call_soon_argument_forms(stockloop)
    results, seen = call_soon_argument_forms(evloop)
    assert results['context kw'] is True and results['unknown kw'] == 'TypeError'
    assert ((3,), 'explicit') in seen and ((4,), 'default') in seen
