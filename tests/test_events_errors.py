"""The Events API: callbacks that fail (docs/events.md, "A callback that fails").

Covers: data and opened raising or returning the wrong type (a short tuple,
a long one, a str, an int, a bad action, values in the wrong order, a
non-contiguous buffer): the exception handler gets a context with
message, exception and conn, that connection alone is closed with
closed(conn, exc), and a second, healthy connection keeps echoing every byte;
closed, detached and pre_write raising, closed and detached returning the
wrong type (reported and otherwise ignored); what pre_write and shutdown
return being ignored. Each test runs native, on the stock loop and on uvloop.
"""
import asyncio
import time

import pytest

from evioloop import Action, Events
from events_helpers import MODES, fill_pattern, harness, sha, target_of, until


@pytest.fixture(params=MODES)
def h(request):
    yield from harness(request.param)


def echo(conn, in_):
    return in_


# -- failing callbacks ----------------------------------------------------------
class Boom(Exception):
    pass


WRONG = {
    'raises': lambda: (_ for _ in ()).throw(Boom('data failed')),
    'int': lambda: 42,
    'str': lambda: 'text is not bytes',
    'short-tuple': lambda: (b'x',),
    'long-tuple': lambda: (b'x', Action.NONE, 3),
    'tuple-bad-action': lambda: (b'x', 'close'),
    'tuple-order': lambda: (Action.NONE, b'x'),
}


@pytest.mark.parametrize('kind', list(WRONG))
def test_failing_data_closes_only_that_conn(h, kind):
    make = WRONG[kind]
    closed = {}
    conns = {}

    def opened(conn):
        conns[len(conns)] = conn
        conn.context = len(conns) - 1

    def data(conn, in_):
        if in_ == b'fail':
            return make()
        return in_

    def closed_cb(conn, err):
        closed.setdefault(conn.context, []).append(err)

    async def main():
        h.expect_errors = True
        events = Events(opened=opened, data=data, closed=closed_cb)
        async with h.serve(events, 'tcp://127.0.0.1:0') as server:
            bad = await h.connect(server)
            await until(lambda: len(conns) == 1)
            good = await h.connect(server)
            await until(lambda: len(conns) == 2)
            await bad.send(b'fail')
            await bad.expect_eof()
            await until(lambda: 0 in closed, what='closed of the failing conn')
            payload = fill_pattern(1 << 20, seed=3)
            await good.send(payload)
            back = await good.recv_exactly(len(payload))
            assert sha(back) == sha(payload)
            assert 1 not in closed
            assert server.count_connections() == 1
    h.run(main())
    assert len(closed[0]) == 1
    err = closed[0][0]
    assert len(h.errors) == 1, h.errors
    ctx = h.errors[0]
    assert ctx.get('exception') is err
    assert ctx.get('conn') is conns[0]
    assert ctx.get('message')
    if kind == 'raises':
        assert isinstance(err, Boom)
    else:
        assert isinstance(err, TypeError), repr(err)
        assert str(err)
    assert closed[1] == [None]


@pytest.mark.parametrize('kind', ['raises', 'int', 'str', 'bad-tuple'])
def test_failing_opened(h, kind):
    closed = []
    calls = []

    def opened(conn):
        if kind == 'raises':
            raise Boom('opened failed')
        return {'int': 7, 'str': 'nope', 'bad-tuple': (b'x', Action.NONE)}[kind]

    async def main():
        h.expect_errors = True
        events = Events(opened=opened, data=lambda c, i: calls.append(i),
                        closed=lambda c, e: closed.append(e))
        async with h.serve(events, 'tcp://127.0.0.1:0') as server:
            c = await h.connect(server)
            try:
                await c.send(b'ignored')
            except OSError:
                pass
            await c.expect_eof()
            await until(lambda: closed)
    h.run(main())
    assert calls == []
    assert len(closed) == 1
    assert isinstance(closed[0], Boom if kind == 'raises' else TypeError), closed
    assert [c.get('exception') for c in h.errors] == closed


@pytest.mark.parametrize('which', ['closed', 'pre_write', 'detached'])
def test_failing_secondary_callbacks_are_reported_and_ignored(h, which):
    def data(conn, in_):
        if in_ == b'detach':
            return Action.DETACH
        return in_

    def fail(*args):
        if which == 'detached':
            args[1].close()
        raise Boom(which)

    async def main():
        h.expect_errors = True
        events = Events(data=data, **{which: fail})
        async with h.serve(events, 'tcp://127.0.0.1:0') as server:
            a = await h.connect(server)
            await a.send(b'detach' if which == 'detached' else b'one')
            if which != 'detached':
                assert await a.recv_exactly(3) == b'one'
            a.close()
            await until(lambda: h.errors, what='the report')
            b = await h.connect(server)
            await b.send(b'two')
            assert await b.recv_exactly(3) == b'two'
            assert server.is_serving()
    h.run(main())
    assert h.errors
    assert all(isinstance(c.get('exception'), Boom) for c in h.errors), h.errors


@pytest.mark.parametrize('which', ['closed', 'detached'])
def test_wrong_type_from_closed_or_detached_is_reported(h, which):
    def data(conn, in_):
        return Action.DETACH if in_ == b'x' else in_

    def detached(conn, sock):
        sock.close()
        return 'not an action' if which == 'detached' else None

    def closed(conn, err):
        if which == 'closed':
            return b'not an action'

    async def main():
        h.expect_errors = True
        events = Events(data=data if which == 'detached' else echo, detached=detached,
                        closed=closed)
        # closed: 'x' is echoed, then the client closes; detached: 'x' detaches
        async with h.serve(events, 'tcp://127.0.0.1:0') as server:
            a = await h.connect(server)
            await a.send(b'x')
            if which == 'closed':
                assert await a.recv_exactly(1) == b'x'
                a.close()
            else:
                await a.expect_eof()
            await until(lambda: h.errors, what='the report')
            b = await h.connect(server)
            await b.send(b'y')
            assert await b.recv_exactly(1) == b'y'
            assert server.is_serving()
    h.run(main())
    want = 2 if which == 'closed' else 1     # closed: a's, then b's at the shutdown
    assert [type(c.get('exception')) for c in h.errors] == [TypeError] * want, h.errors


def test_what_pre_write_and_shutdown_return_is_ignored(h):
    async def main():
        events = Events(data=echo, pre_write=lambda: 'whatever', shutdown=lambda s: 42)
        async with h.serve(events, 'tcp://127.0.0.1:0') as server:
            c = await h.connect(server)
            await c.send(b'ok')
            assert await c.recv_exactly(2) == b'ok'
    h.run(main())


@pytest.mark.parametrize('where', ['data', 'opened', 'udp'])
def test_non_contiguous_out(h, where):
    """A strided memoryview is not bytes-like: either it is sent as its bytes, or it
    is refused like any wrong type. The connection must not be left hanging, and
    nothing may escape into the loop's I/O step."""
    closed = []
    strided = memoryview(b'abcdef')[::2]

    def opened(conn):
        if where == 'opened':
            return strided

    def data(conn, in_):
        if in_ == b'strided':
            return strided
        return in_

    async def main():
        h.expect_errors = True
        events = Events(opened=opened, data=data, closed=lambda c, e: closed.append(e))
        if where == 'udp':
            async with h.serve(events, 'udp://127.0.0.1:0') as server:
                s = h.udp_client()
                s.sendto(b'strided', target_of(server.addrs[0])[1])
                try:
                    got, _ = await recv_dgram(s, 3)
                except AssertionError:
                    return 'refused'
                assert got == b'ace'
                s.sendto(b'fine', target_of(server.addrs[0])[1])
                assert (await recv_dgram(s))[0] == b'fine'
                return 'sent'
        async with h.serve(events, 'tcp://127.0.0.1:0') as server:
            c = await h.connect(server)
            await c.send(b'strided')
            outcome = await _outcome(c)
            assert outcome != 'hangs', ('neither sent nor refused: the connection hangs',
                                        h.errors)
            if outcome == 'refused':
                await until(lambda: closed, timeout=5, what='closed of the refused conn')
            other = await h.connect(server)
            await other.send(b'fine')
            if where == 'opened':
                assert await _outcome(other) == outcome
            else:
                assert await other.recv_exactly(4) == b'fine'
            return outcome

    outcome = h.run(main())
    if outcome == 'sent':
        assert h.errors == []
    else:
        assert h.errors, 'refused without a report'
        for ctx in h.errors:
            assert isinstance(ctx.get('exception'), TypeError), h.errors
            assert ctx.get('conn') is not None, h.errors
        if where != 'udp':
            assert len(closed) >= 1 and isinstance(closed[0], TypeError), closed


async def recv_dgram(sock, timeout=10):
    end = time.monotonic() + timeout
    while True:
        try:
            return sock.recvfrom(65536)
        except BlockingIOError:
            if time.monotonic() > end:
                raise AssertionError('no datagram came') from None
            await asyncio.sleep(0.001)


async def _outcome(c):
    """'sent' (b'ace' came back first), 'refused' (EOF or reset) or 'hangs'."""
    try:
        b = await c.recv(3, timeout=3)
    except ConnectionResetError:
        return 'refused'
    except (TimeoutError, AssertionError):
        return 'hangs'
    if b == b'':
        return 'refused'
    assert b == b'ace', b
    return 'sent'
