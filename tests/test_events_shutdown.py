"""The Events API: shutting down, and tick (docs/events.md, "Actions", "Events").

Covers: the SHUTDOWN action from data (through listen and serve_async),
closed, detached and tick, with evio's order (every open conn closed exactly
once with closed(conn, None), listeners closed and Unix socket files removed,
then shutdown(server), then serve_async returns); the last non-blocking write
attempt at shutdown (a prefix of the pending output, never other bytes);
other actions from closed ignored; a failing serving (raises, serves nobody);
a failing shutdown hook; tick (first call at start, delays in seconds, as a
timedelta or in a tuple, no delay meaning the next iteration without
starving I/O, on the loop thread and never during another callback,
SHUTDOWN, a failing or wrong-typed tick stops the ticks). Each test
runs native, on the stock loop and on uvloop (some also portable on evioloop).
"""
import asyncio
import datetime
import os
import socket
import threading
import time

import pytest

import evioloop
from evioloop import Action, Events
from events_helpers import (
    ALL_MODES, MODES, ConnLog, dup_sock, fill_pattern, harness, spin, target_of, until)


@pytest.fixture(params=MODES)
def h(request):
    yield from harness(request.param)


@pytest.fixture(params=ALL_MODES)
def hn(request):
    yield from harness(request.param)


def echo(conn, in_):
    return in_


# -- SHUTDOWN -------------------------------------------------------------------
@pytest.mark.parametrize('via', ['listen', 'serve_async'])
def test_shutdown_action_from_data(hn, via):
    """Every open conn is closed once, Unix files gone and listeners closed, then shutdown."""
    log = ConnLog()
    servers = []
    path = hn.unix_path()
    seen_at_shutdown = {}

    class E(Events):
        def serving(self, server):
            log.note('serving')
            servers.append(server)

        def opened(self, conn):
            log.note('opened', conn)

        def data(self, conn, in_):
            log.note('data', conn)
            if in_ == b'shutdown':
                return b'last words', Action.SHUTDOWN
            return in_

        def closed(self, conn, err):
            log.note('closed', conn)
            log.closed_errs[log.key(conn)] = err

        def shutdown(self, server):
            log.note('shutdown')
            seen_at_shutdown['unix file'] = os.path.exists(path)
            seen_at_shutdown['count'] = server.count_connections()
            fam, target = target_of(server.addrs[0])
            s = socket.socket(fam, socket.SOCK_STREAM)
            s.settimeout(2)
            try:
                seen_at_shutdown['connect'] = s.connect_ex(target)
            finally:
                s.close()

    async def main():
        addrs = hn.addr('tcp://127.0.0.1:0'), hn.addr(f'unix://{path}')
        task = None
        if via == 'listen':
            server = await evioloop.listen(E(), *addrs)
        else:
            task = asyncio.ensure_future(evioloop.serve_async(E(), *addrs))
            await until(lambda: servers, what='serving')
            server = servers[0]
        assert os.path.exists(path)
        a = await hn.connect(server, 0)
        b = await hn.connect(server, 1)
        c = await hn.connect(server, 0)
        for cl in (a, b, c):
            await cl.send(b'hi')
            assert await cl.recv_exactly(2) == b'hi'
        await a.send(b'shutdown')
        if task is not None:
            assert await asyncio.wait_for(task, 10) is None
        await asyncio.wait_for(server.wait_closed(), 10)
        assert await a.recv_until_eof() == b'last words'
        await b.expect_eof()
        await c.expect_eof()
        assert not os.path.exists(path)
    hn.run(main())
    assert len(log.conns) == 3
    for k in range(3):
        log.check_conn(k)
        assert log.closed_errs[k] is None
    names = log.names()
    assert names[0] == 'serving' and names[-1] == 'shutdown'
    assert names.count('shutdown') == 1
    assert seen_at_shutdown['unix file'] is False
    assert seen_at_shutdown['count'] == 0
    assert seen_at_shutdown['connect'] != 0     # the listener is closed


@pytest.mark.parametrize('where', ['closed', 'detached'])
def test_shutdown_honoured_from_closed_and_detached(h, where):
    socks = []

    def data(conn, in_):
        return (Action.DETACH if where == 'detached' else Action.CLOSE)

    def closed(conn, err):
        return Action.SHUTDOWN

    def detached(conn, sock):
        socks.append(sock)
        return Action.SHUTDOWN

    async def main():
        events = Events(data=data, closed=closed, detached=detached)
        server = await evioloop.listen(events, h.addr('tcp://127.0.0.1:0'))
        other = await h.connect(server)
        c = await h.connect(server)
        await c.send(b'go')
        await asyncio.wait_for(server.wait_closed(), 10)
        await other.expect_eof()
        for s in socks:
            s.close()
    h.run(main())
    assert len(socks) == (1 if where == 'detached' else 0)


def test_other_actions_from_closed_are_ignored(h):
    closed = []

    def closed_cb(conn, err):
        closed.append(err)
        return Action.CLOSE

    async def main():
        async with h.serve(Events(data=echo, closed=closed_cb), 'tcp://127.0.0.1:0') as server:
            a = await h.connect(server)
            await a.send(b'1')
            assert await a.recv_exactly(1) == b'1'
            a.close()
            await until(lambda: closed)
            b = await h.connect(server)
            await b.send(b'2')
            assert await b.recv_exactly(1) == b'2'
            assert server.is_serving()
    h.run(main())
    assert closed == [None, None]


class Boom(Exception):
    pass


@pytest.mark.parametrize('how', ['raises', 'wrong type'])
def test_failing_serving_raises_and_serves_nobody(h, how):
    log = []
    path = h.unix_path()
    expected = Boom if how == 'raises' else TypeError

    def serving(server):
        log.append('serving')
        if how == 'raises':
            raise Boom('no')
        return 'shutdown please'

    async def main():
        h.expect_errors = True
        events = Events(serving=serving, opened=lambda c: log.append('opened'))
        with pytest.raises(expected):
            await asyncio.wait_for(evioloop.serve_async(
                events, h.addr('tcp://127.0.0.1:0'), h.addr(f'unix://{path}')), 10)
        assert not os.path.exists(path)
    h.run(main())
    assert log == ['serving']
    for ctx in h.errors:
        assert isinstance(ctx.get('exception'), expected), ctx


# -- tick -----------------------------------------------------------------------
def test_tick_first_call_at_start_on_loop_thread(h):
    calls = []

    def tick():
        calls.append((threading.get_ident(), asyncio.get_running_loop()))
        return 10.0

    async def main():
        async with h.serve(Events(tick=tick), 'tcp://127.0.0.1:0'):
            await until(lambda: calls, timeout=2, what='the first tick')
            await spin(0.1)
        assert calls == [(threading.get_ident(), asyncio.get_running_loop())]
    h.run(main())


@pytest.mark.parametrize('delay', [0.02, datetime.timedelta(milliseconds=20), (0.02, Action.NONE)])
def test_tick_delays_are_honoured_roughly(h, delay):
    calls = []

    def tick():
        calls.append(1)
        return delay

    async def main():
        async with h.serve(Events(tick=tick), 'tcp://127.0.0.1:0'):
            await asyncio.sleep(1.0)
            n = len(calls)
        # 20 ms for 1 s: 50 calls in theory; very generous bounds
        assert 5 <= n <= 60, n
    h.run(main())


def test_tick_runs_beside_data_never_at_the_same_time(h):
    busy = []
    overlaps = []
    ticks = []

    def tick():
        if busy:
            overlaps.append('tick during data')
        ticks.append(threading.get_ident())
        return 0.001

    def data(conn, in_):
        busy.append(1)
        try:
            return in_
        finally:
            busy.pop()

    async def main():
        async with h.serve(Events(tick=tick, data=data), 'tcp://127.0.0.1:0') as server:
            c = await h.connect(server)
            for _ in range(50):
                await c.send(b'abc')
                assert await c.recv_exactly(3) == b'abc'
            await until(lambda: len(ticks) > 5)
    h.run(main())
    assert overlaps == []
    assert set(ticks) == {threading.get_ident()}


def test_shutdown_from_tick(h):
    log = []

    def tick():
        log.append('tick')
        if 'opened' in log and log.count('tick') >= 3:
            return 0.01, Action.SHUTDOWN
        return 0.01

    async def main():
        events = Events(tick=tick, opened=lambda c: log.append('opened'),
                        closed=lambda c, e: log.append(('closed', e)),
                        shutdown=lambda s: log.append('shutdown'))
        server = await h.listen(events, 'tcp://127.0.0.1:0')
        c = await h.connect(server)
        await asyncio.wait_for(server.wait_closed(), 10)
        await c.expect_eof()
        assert not server.is_serving()
    h.run(main())
    assert log.count('tick') >= 3
    assert log[-2:] == [('closed', None), 'shutdown']
    assert log.count(('closed', None)) == 1


@pytest.mark.parametrize('how', ['raises', 'wrong type', 'bad tuple'])
def test_failing_tick_is_reported_and_ticks_stop(h, how):
    calls = []
    expected = ZeroDivisionError if how == 'raises' else TypeError

    def tick():
        calls.append(1)
        if len(calls) == 2:
            if how == 'raises':
                raise ZeroDivisionError('tick')
            return 'soon' if how == 'wrong type' else (0.01, Action.NONE, 'extra')
        return 0.01

    async def main():
        h.expect_errors = True
        async with h.serve(Events(tick=tick, data=echo), 'tcp://127.0.0.1:0') as server:
            await until(lambda: h.errors, what='the tick error')
            await asyncio.sleep(0.2)
            assert len(calls) == 2
            c = await h.connect(server)
            await c.send(b'still')
            assert await c.recv_exactly(5) == b'still'
    h.run(main())
    assert len(h.errors) == 1
    assert isinstance(h.errors[0].get('exception'), expected)


def test_shutdown_hook_failing_is_reported(h):
    async def main():
        h.expect_errors = True

        def shutdown(server):
            raise KeyError('shutdown hook')
        async with h.serve(Events(shutdown=shutdown), 'tcp://127.0.0.1:0'):
            pass
    h.run(main())
    assert [type(c.get('exception')) for c in h.errors] == [KeyError]


def test_shutdown_makes_one_last_attempt_at_pending_output(h):
    """What does not go out at once is dropped; the client never sees other bytes."""
    big = fill_pattern(16 << 20, seed=99)
    closed = []
    conns = []

    def opened(conn):
        conns.append(conn)
        with dup_sock(conn) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 16384)

    def data(conn, in_):
        return big

    async def main():
        events = Events(opened=opened, data=data, closed=lambda c, e: closed.append(e))
        server = await h.listen(events, 'tcp://127.0.0.1:0')
        c = await h.connect(server, rcvbuf=8192)
        await c.send(b'go')
        await until(lambda: conns and conns[0].output_buffered > 0, what='pending output')
        server.stop()
        await asyncio.wait_for(server.wait_closed(), 10)
        assert closed == [None]
        try:
            got = await c.recv_until_eof(chunk=1 << 16)
        except ConnectionResetError:
            got = None
        if got is not None:
            assert len(got) < len(big)
            assert got == big[:len(got)]
    h.run(main())


def test_close_inside_data_sends_out_first_and_closes_once(h):
    closed = []

    def data(conn, in_):
        conn.close()
        conn.close()
        return b'then closed'

    async def main():
        events = Events(data=data, closed=lambda c, e: closed.append(e))
        async with h.serve(events, 'tcp://127.0.0.1:0') as server:
            c = await h.connect(server)
            await c.send(b'x')
            assert await c.recv_until_eof() == b'then closed'
            await until(lambda: closed)
            await spin(0.05)
    h.run(main())
    assert closed == [None]


def test_reset_with_pending_output_closes_once(h):
    closed = []
    conns = []
    big = fill_pattern(8 << 20, seed=8)

    def opened(conn):
        conns.append(conn)
        with dup_sock(conn) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 16384)

    async def main():
        events = Events(opened=opened, data=lambda c, i: big,
                        closed=lambda c, e: closed.append(e))
        async with h.serve(events, 'tcp://127.0.0.1:0') as server:
            c = await h.connect(server, rcvbuf=8192)
            await c.send(b'go')
            await until(lambda: conns and conns[0].output_buffered > 0, what='pending output')
            c.reset()
            await until(lambda: closed, what='closed')
            await spin(0.1)
            assert server.count_connections() == 0
    h.run(main())
    assert len(closed) == 1
    assert isinstance(closed[0], OSError), closed


def test_stop_twice_and_after_closed(h):
    async def main():
        server = await h.listen(Events(), 'tcp://127.0.0.1:0')
        server.stop()
        server.stop()
        await asyncio.wait_for(server.wait_closed(), 10)
        server.stop()
        await asyncio.wait_for(server.wait_closed(), 1)
        assert not server.is_serving()
    h.run(main())


def test_shutdown_from_opened(h):
    log = []

    async def main():
        events = Events(opened=lambda c: (b'bye', None, Action.SHUTDOWN),
                        closed=lambda c, e: log.append(('closed', e)),
                        shutdown=lambda s: log.append('shutdown'))
        server = await h.listen(events, 'tcp://127.0.0.1:0')
        c = await h.connect(server)
        await asyncio.wait_for(server.wait_closed(), 10)
        assert await c.recv_until_eof() == b'bye'
    h.run(main())
    assert log == [('closed', None), 'shutdown']


@pytest.mark.parametrize('ret', [None, Action.NONE], ids=['None', 'Action.NONE'])
def test_tick_without_a_delay_runs_every_iteration_and_starves_nobody(h, ret):
    """No delay means 0, the next loop iteration; I/O goes on beside it."""
    calls = 0
    # A bound in time, should the test itself hang. It was 100,000 calls once,
    # and a quiet machine makes more than that during the 20 round trips and
    # the 0.2 s below.
    give_up = time.monotonic() + 60

    def tick():
        nonlocal calls
        calls += 1
        if time.monotonic() > give_up:
            return Action.SHUTDOWN
        return ret

    async def main():
        async with h.serve(Events(tick=tick, data=echo), 'tcp://127.0.0.1:0') as server:
            c = await h.connect(server)
            for i in range(20):
                await c.send(b'%02d' % i)
                assert await c.recv_exactly(2) == b'%02d' % i
            n = calls
            await asyncio.sleep(0.2)
            assert calls - n >= 10, calls - n
            assert server.is_serving()
    h.run(main())


@pytest.mark.parametrize('action', [Action.CLOSE, Action.DETACH], ids=['CLOSE', 'DETACH'])
def test_serving_and_tick_ignore_other_actions(h, action):
    """serving, tick, closed and detached honour only SHUTDOWN, as in evio."""
    ticks = []

    def tick():
        ticks.append(1)
        return 0.01, action

    async def main():
        events = Events(serving=lambda s: action, tick=tick, data=echo)
        async with h.serve(events, 'tcp://127.0.0.1:0') as server:
            await until(lambda: len(ticks) >= 3, what='ticks going on')
            c = await h.connect(server)
            await c.send(b'on')
            assert await c.recv_exactly(2) == b'on'
            assert server.is_serving()
    h.run(main())
