"""Debug mode: set_debug, PYTHONASYNCIODEBUG, slow callbacks, unclosed-loop
ResourceWarning, source tracebacks, and the debug-only checks."""
import asyncio
import gc
import logging
import os
import re
import subprocess
import sys
import threading
import time
import warnings

import pytest

import evioloop


def run_one_iteration(loop):
    loop.call_soon(loop.stop)
    loop.run_forever()


def test_set_debug(loop):
    assert loop.get_debug() is False or os.environ.get('PYTHONASYNCIODEBUG')
    loop.set_debug(True)
    assert loop.get_debug() is True
    loop.set_debug(False)
    assert loop.get_debug() is False


@pytest.mark.parametrize('env, args, expected', [
    ({'PYTHONASYNCIODEBUG': '1'}, [], 'True'),
    ({}, ['-X', 'dev'], 'True'),
    ({}, [], 'False'),
])
def test_debug_from_the_environment(tmp_path, env, args, expected):
    code = ('import asyncio, evioloop\n'
            'for lp in (evioloop.new_event_loop(), asyncio.new_event_loop()):\n'
            '    print(lp.get_debug())\n'
            '    lp.close()\n')
    base = {k: v for k, v in os.environ.items()
            if k not in ('PYTHONASYNCIODEBUG', 'PYTHONDEVMODE')}
    out = subprocess.run([sys.executable, *args, '-c', code], env={**base, **env},
                         cwd=str(tmp_path), capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == [expected, expected]


def test_evioloop_run_debug_argument():
    async def main():
        return asyncio.get_running_loop().get_debug()
    assert evioloop.run(main(), debug=True) is True
    assert evioloop.run(main(), debug=False) is False


def _slow_records(caplog):
    return [r.getMessage() for r in caplog.records
            if r.name == 'asyncio' and r.getMessage().startswith('Executing ')]


def test_slow_callback_is_logged(loop, caplog):
    loop.set_debug(True)
    loop.slow_callback_duration = 0.01

    def sleepy_callback():
        time.sleep(0.03)

    loop.call_soon(sleepy_callback)
    with caplog.at_level(logging.WARNING, logger='asyncio'):
        run_one_iteration(loop)
    # (on a loaded machine other callbacks may be slow too: look for ours)
    msgs = [m for m in _slow_records(caplog) if 'sleepy_callback' in m]
    assert len(msgs) == 1, _slow_records(caplog)
    assert re.match(r'Executing <Handle .*sleepy_callback.*> took \d+\.\d{3} seconds$', msgs[0])
    took = float(msgs[0].rsplit(' ', 2)[-2])
    assert took >= 0.03


def test_slow_timer_and_task_step_are_logged(loop, caplog):
    loop.set_debug(True)
    loop.slow_callback_duration = 0.01

    def sleepy_timer():
        time.sleep(0.02)

    async def sleepy_task():
        time.sleep(0.02)

    loop.call_later(0.001, sleepy_timer)
    with caplog.at_level(logging.WARNING, logger='asyncio'):
        loop.run_until_complete(sleepy_task())
        loop.run_until_complete(asyncio.sleep(0.01))
    msgs = _slow_records(caplog)
    assert any('sleepy_timer' in m and 'TimerHandle' in m for m in msgs), msgs
    assert any('sleepy_task' in m and 'Task' in m for m in msgs), msgs


def test_slow_reader_callback_is_logged(loop, caplog):
    import socket
    loop.set_debug(True)
    loop.slow_callback_duration = 0.01
    a, b = socket.socketpair()
    try:
        def sleepy_reader():
            a.recv(10)
            time.sleep(0.02)
        loop.add_reader(a, sleepy_reader)
        b.send(b'x')
        with caplog.at_level(logging.WARNING, logger='asyncio'):
            loop.run_until_complete(asyncio.sleep(0.05))
        loop.remove_reader(a)
    finally:
        a.close()
        b.close()
    msgs = [m for m in _slow_records(caplog) if 'sleepy_reader' in m]
    assert len(msgs) == 1, _slow_records(caplog)


def test_slow_callback_not_logged_without_debug(loop, caplog):
    loop.set_debug(False)
    loop.slow_callback_duration = 0.001
    loop.call_soon(time.sleep, 0.01)
    with caplog.at_level(logging.WARNING, logger='asyncio'):
        run_one_iteration(loop)
    assert _slow_records(caplog) == []


def test_cancelled_slow_handle_keeps_its_name(loop, caplog):
    # a callback that cancels its own handle while running: the log still names it
    loop.set_debug(True)
    loop.slow_callback_duration = 0.01
    handles = []

    def self_cancelling():
        handles[0].cancel()
        time.sleep(0.02)

    handles.append(loop.call_soon(self_cancelling))
    with caplog.at_level(logging.WARNING, logger='asyncio'):
        run_one_iteration(loop)
    msgs = [m for m in _slow_records(caplog) if 'self_cancelling' in m]
    assert len(msgs) == 1, _slow_records(caplog)


@pytest.mark.parametrize('factory', [evioloop.new_event_loop, evioloop.Loop,
                                     asyncio.SelectorEventLoop])
def test_unclosed_loop_resource_warning(factory):
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter('always')
        lp = factory()
        lp_repr = repr(lp)
        del lp
        gc.collect()
    msgs = [str(x.message) for x in w if issubclass(x.category, ResourceWarning)]
    assert msgs == [f'unclosed event loop {lp_repr}']
    # (the fd check of conftest.py makes sure the collected loop closed its fds)


def test_closed_loop_no_resource_warning(loop):
    loop.close()
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter('always')
        del loop
        gc.collect()
    assert [x for x in w if issubclass(x.category, ResourceWarning)] == []


def _caller_frame_of(handle):
    tb = handle._source_traceback
    assert tb, 'no _source_traceback'
    return tb[-1]


def test_source_traceback_in_debug(loop):
    loop.set_debug(True)
    h1 = loop.call_soon(print)
    h2 = loop.call_later(10, print)
    h3 = loop.call_at(loop.time() + 10, print)
    h4 = loop.call_soon_threadsafe(print)
    fut = loop.create_future()
    for h in (h1, h2, h3, h4):
        frame = _caller_frame_of(h)
        assert frame.name == 'test_source_traceback_in_debug'
        assert frame.filename == __file__
        h.cancel()
    # the stock loop's last frame is its own create_future(); the caller is there
    assert 'test_source_traceback_in_debug' in [f.name for f in fut._source_traceback[-2:]]
    assert 'created at' in repr(h1)
    fut.cancel()


def test_no_source_traceback_without_debug(loop):
    loop.set_debug(False)
    h = loop.call_soon(print)
    t = loop.call_later(10, print)
    assert not h._source_traceback
    assert not t._source_traceback
    h.cancel()
    t.cancel()


def test_source_traceback_reaches_the_exception_handler(loop):
    loop.set_debug(True)
    contexts = []
    loop.set_exception_handler(lambda lp, ctx: contexts.append(ctx))
    loop.call_soon(lambda: 1 / 0)
    run_one_iteration(loop)
    assert len(contexts) == 1
    assert contexts[0]['source_traceback'][-1].name == \
        'test_source_traceback_reaches_the_exception_handler'


def test_debug_checks_thread(loop):
    loop.set_debug(True)
    errors = []

    def other():
        for call in (lambda: loop.call_soon(print), lambda: loop.call_later(1, print),
                     lambda: loop.call_at(1, print)):
            try:
                call()
            except RuntimeError as exc:
                errors.append(str(exc))

    async def main():
        t = threading.Thread(target=other)
        t.start()
        t.join()

    loop.run_until_complete(main())
    assert len(errors) == 3
    assert all('Non-thread-safe operation' in e for e in errors), errors


@pytest.mark.parametrize('method', ['call_soon', 'call_later', 'call_at', 'call_soon_threadsafe'])
def test_debug_rejects_coroutine_functions(evloop, stockloop, method):
    async def coro_func():
        pass
    got = []
    for lp in (stockloop, evloop):
        lp.set_debug(True)
        args = (coro_func,) if method in ('call_soon', 'call_soon_threadsafe') else (1, coro_func)
        try:
            getattr(lp, method)(*args)
            got.append('accepted')
        except TypeError as exc:
            got.append(str(exc))
    if method == 'call_later':
        # the stock call_later() checks in call_at() and names that
        assert got[0] == 'coroutines cannot be used with call_at()'
        assert got[1] in (got[0], 'coroutines cannot be used with call_later()')
    else:
        assert got[0] == f'coroutines cannot be used with {method}()'
        assert got[1] == got[0]


@pytest.mark.parametrize('method', ['call_soon', 'call_later', 'call_soon_threadsafe'])
def test_debug_rejects_non_callables(evloop, stockloop, method):
    got = []
    for lp in (stockloop, evloop):
        lp.set_debug(True)
        args = (42,) if method != 'call_later' else (1, 42)
        try:
            getattr(lp, method)(*args)
            got.append('accepted')
        except TypeError as exc:
            got.append(str(exc))
    assert got[0].startswith('a callable object was expected')
    if method == 'call_later':
        # the stock call_later() checks in call_at() and names that
        assert got[1] in (got[0], got[0].replace('call_at()', 'call_later()'))
    else:
        assert got[1] == got[0]


def test_coroutine_origin_tracking_in_debug(loop):
    loop.set_debug(True)
    before = sys.get_coroutine_origin_tracking_depth()

    async def main():
        return sys.get_coroutine_origin_tracking_depth()

    depth = loop.run_until_complete(main())
    assert depth > 0
    assert sys.get_coroutine_origin_tracking_depth() == before


def test_no_origin_tracking_without_debug(loop):
    async def main():
        return sys.get_coroutine_origin_tracking_depth()
    assert loop.run_until_complete(main()) == 0


def test_current_handle_in_debug(loop):
    loop.set_debug(True)
    seen = []
    h = loop.call_soon(lambda: seen.append(loop._current_handle))
    run_one_iteration(loop)
    assert seen == [h]
