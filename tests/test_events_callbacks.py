"""The Events API: what opened/data/closed/detached/pre_write return and do (docs/events.md).

Covers: every return shape of opened (None, out, Action, Options, the full
3-tuple) and data (None, out, Action, the 2-tuple); opened's out arriving
first; CLOSE from opened and from data (out fully delivered before EOF, also
4 MiB to a slow reader); closed(conn, None) after a clean close and
closed(conn, exc) after a RST; DETACH (a blocking socket handed over after
the pending output, closed not called; TCP and Unix); the callback order;
pre_write; a half-close from the client (every byte echoed before closed).
Each test runs native, on the stock loop and on uvloop (some also portable
on evioloop through tcp-net://).
"""
import asyncio
import socket
import threading

import pytest

from evioloop import Action, Events, Options
from events_helpers import ALL_MODES, MODES, ConnLog, fill_pattern, harness, sha, spin, until


@pytest.fixture(params=MODES)
def h(request):
    yield from harness(request.param)


@pytest.fixture(params=ALL_MODES)
def hn(request):
    yield from harness(request.param)


def echo(conn, in_):
    return in_


OPENED_SHAPES = {
    'None': (None, b''),
    'bytes': (b'hello', b'hello'),
    'bytearray': (bytearray(b'hello'), b'hello'),
    'memoryview': (memoryview(b'xhellox')[1:6], b'hello'),
    'Action.NONE': (Action.NONE, b''),
    'Options': (Options(), b''),
    'tuple': ((b'hello', Options(), Action.NONE), b'hello'),
    'tuple-no-out': ((None, Options(), Action.NONE), b''),
    'tuple-empty-out': ((b'', Options(tcp_nodelay=False), Action.NONE), b''),
}


@pytest.mark.parametrize('shape', list(OPENED_SHAPES))
def test_opened_return_shapes_and_out_first(hn, shape):
    ret, greeting = OPENED_SHAPES[shape]
    order = []

    def opened(conn):
        order.append('opened')
        return ret

    def data(conn, in_):
        order.append('data')
        return in_

    async def main():
        async with hn.serve(Events(opened=opened, data=data), 'tcp://127.0.0.1:0') as server:
            c = await hn.connect(server)
            await c.send(b'echo')
            assert await c.recv_exactly(len(greeting) + 4) == greeting + b'echo'
    hn.run(main())
    assert order[0] == 'opened' and order.count('opened') == 1
    assert 'data' in order


@pytest.mark.parametrize('ret', [Action.CLOSE, (b'goodbye', Options(), Action.CLOSE)],
                         ids=['action', 'tuple'])
def test_close_from_opened(h, ret):
    log = []

    def opened(conn):
        log.append('opened')
        return ret

    async def main():
        events = Events(opened=opened, data=lambda c, i: log.append('data'),
                        closed=lambda c, e: log.append(('closed', e)))
        async with h.serve(events, 'tcp://127.0.0.1:0') as server:
            c = await h.connect(server)
            want = b'goodbye' if isinstance(ret, tuple) else b''
            assert await c.recv_until_eof() == want
            await until(lambda: len(log) == 2, what='closed')
    h.run(main())
    assert log == ['opened', ('closed', None)]


def test_closed_none_after_clean_client_close(hn):
    log = ConnLog()

    class E(Events):
        def opened(self, conn):
            log.note('opened', conn)

        def data(self, conn, in_):
            log.note('data', conn)
            return in_

        def closed(self, conn, err):
            log.note('closed', conn)
            log.closed_errs[log.key(conn)] = err

    async def main():
        async with hn.serve(E(), 'tcp://127.0.0.1:0') as server:
            c = await hn.connect(server)
            await c.send(b'abc')
            assert await c.recv_exactly(3) == b'abc'
            c.close()
            await until(lambda: log.closed_errs, what='closed')
            await spin(0.05)
    hn.run(main())
    log.check_conn(0)
    assert log.closed_errs == {0: None}


def test_closed_with_error_after_reset(h):
    errs = []

    async def main():
        events = Events(data=echo, closed=lambda c, e: errs.append(e))
        async with h.serve(events, 'tcp://127.0.0.1:0') as server:
            c = await h.connect(server)
            await c.send(b'abc')
            assert await c.recv_exactly(3) == b'abc'
            c.reset()
            await until(lambda: errs, what='closed')
            await spin(0.05)
    h.run(main())
    assert len(errs) == 1
    assert isinstance(errs[0], OSError), errs
    # the usual one; other OSErrors are tolerated above
    assert isinstance(errs[0], ConnectionResetError), repr(errs[0])


DATA_SHAPES = {
    'None': (None, b''),
    'bytes': (b'out', b'out'),
    'bytearray': (bytearray(b'out'), b'out'),
    'memoryview': (memoryview(b'out'), b'out'),
    'Action.NONE': (Action.NONE, b''),
    'tuple': ((b'out', Action.NONE), b'out'),
    'tuple-None': ((None, Action.NONE), b''),
}


@pytest.mark.parametrize('shape', list(DATA_SHAPES))
def test_data_return_shapes(h, shape):
    ret, out = DATA_SHAPES[shape]

    def data(conn, in_):
        if in_ == b'ping':
            return ret
        return b'|' + in_

    async def main():
        async with h.serve(Events(data=data), 'tcp://127.0.0.1:0') as server:
            c = await h.connect(server)
            await c.send(b'ping')
            await asyncio.sleep(0.05)
            await c.send(b'end')
            assert await c.recv_exactly(len(out) + 4) == out + b'|end'
    h.run(main())


@pytest.mark.parametrize('size,delay', [(5, 0), (4 << 20, 0.002)], ids=['small', '4MiB-slow'])
def test_close_from_data_delivers_out_first(hn, size, delay):
    out = fill_pattern(size, seed=size)
    closed = []

    def data(conn, in_):
        return out, Action.CLOSE

    async def main():
        events = Events(data=data, closed=lambda c, e: closed.append(e))
        async with hn.serve(events, 'tcp://127.0.0.1:0') as server:
            c = await hn.connect(server, rcvbuf=65536)
            await c.send(b'bye')
            got = await c.recv_until_eof(timeout=30, chunk=65536, delay=delay)
            assert len(got) == size
            assert sha(got) == sha(out)
            await until(lambda: closed, what='closed')
    hn.run(main(), timeout=60)
    assert closed == [None]


@pytest.mark.parametrize('family', ['tcp', 'unix'])
def test_detach_hands_over_a_blocking_socket(hn, family):
    got = {}
    closed = []
    pending = fill_pattern(2 << 20, seed=7)

    def data(conn, in_):
        return pending, Action.DETACH

    def detached(conn, sock):
        got['type'] = type(sock)
        got['blocking'] = sock.getblocking()
        got['timeout'] = sock.gettimeout()
        got['sock'] = sock

    def user(sock):
        try:
            sock.settimeout(10)
            sock.sendall(b'from thread')
            got['echoed'] = sock.recv(100)
        finally:
            sock.close()

    async def main():
        events = Events(data=data, detached=detached, closed=lambda c, e: closed.append(e))
        addr = f'unix://{hn.unix_path()}' if family == 'unix' else 'tcp://127.0.0.1:0'
        async with hn.serve(events, addr) as server:
            c = await hn.connect(server, rcvbuf=8192)
            await c.send(b'detach me')
            await asyncio.sleep(0.1)     # the server's output waits on us
            first = await c.recv_exactly(len(pending), chunk=65536)
            assert sha(first) == sha(pending)
            await until(lambda: 'sock' in got, what='detached')
            assert server.count_connections() == 0
            t = hn.thread(user, got['sock'])
            assert await c.recv_exactly(11) == b'from thread'
            await c.send(b'reply')
            await asyncio.get_running_loop().run_in_executor(None, t.join, 10)
            assert got['echoed'] == b'reply'
            await c.expect_eof()
    hn.run(main())
    assert issubclass(got['type'], socket.socket)
    assert got['blocking'] is True and got['timeout'] is None
    assert closed == []


def test_detach_from_opened(h):
    got = []

    def detached(conn, sock):
        got.append(sock.getblocking())
        sock.sendall(b'mine now')
        sock.close()

    async def main():
        events = Events(opened=lambda c: (b'hi ', Options(), Action.DETACH), detached=detached,
                        data=lambda c, i: got.append('data'))
        async with h.serve(events, 'tcp://127.0.0.1:0') as server:
            c = await h.connect(server)
            assert await c.recv_until_eof() == b'hi mine now'
    h.run(main())
    assert got == [True]


def test_callback_order(hn):
    log = []

    class E(Events):
        def serving(self, server):
            log.append('serving')

        def opened(self, conn):
            log.append('opened')
            return b'+'

        def data(self, conn, in_):
            log.append('data')
            return in_

        def closed(self, conn, err):
            log.append('closed')

        def shutdown(self, server):
            log.append('shutdown')

    async def main():
        async with hn.serve(E(), 'tcp://127.0.0.1:0') as server:
            c = await hn.connect(server)
            await c.send(b'a')
            assert await c.recv_exactly(2) == b'+a'
            await c.send(b'b')
            assert await c.recv_exactly(1) == b'b'
            c.close()
            await until(lambda: 'closed' in log)
    hn.run(main())
    assert log[:2] == ['serving', 'opened']
    assert log[-2:] == ['closed', 'shutdown']
    assert set(log[2:-2]) == {'data'}


def test_pre_write_runs_before_writes(h):
    log = []
    lock = threading.Lock()

    def note(what):
        with lock:
            log.append(what)

    def data(conn, in_):
        note('data')
        return in_

    async def main():
        events = Events(opened=lambda c: (note('opened'), b'hello')[1], data=data,
                        pre_write=lambda: note('pre_write'))
        async with h.serve(events, 'tcp://127.0.0.1:0') as server:
            c = await h.connect(server)
            assert await c.recv_exactly(5) == b'hello'
            note('client got greeting')
            await c.send(b'x')
            assert await c.recv_exactly(1) == b'x'
            note('client got echo')
    h.run(main())
    assert log[0] == 'opened'
    i_greet = log.index('client got greeting')
    assert 'pre_write' in log[1:i_greet], log
    i_data = log.index('data')
    i_echo = log.index('client got echo')
    assert 'pre_write' in log[i_data:i_echo], log


def test_half_close_from_the_client_loses_nothing(hn):
    """The client sends, then shuts down its side: every byte is echoed, then closed(None)."""
    payload = fill_pattern(8 << 20, seed=12)
    closed = []

    async def main():
        events = Events(data=echo, closed=lambda c, e: closed.append(e))
        async with hn.serve(events, 'tcp://127.0.0.1:0') as server:
            c = await hn.connect(server, rcvbuf=65536)
            sender = asyncio.ensure_future(c.send(payload))
            got = bytearray()
            while len(got) < len(payload) // 2:         # a slow reader first
                got += await c.recv(65536)
                await asyncio.sleep(0.001)
            await sender
            c.sock.shutdown(socket.SHUT_WR)
            got += await c.recv_until_eof(timeout=30)
            assert sha(bytes(got)) == sha(payload)
            await until(lambda: closed, what='closed')
    hn.run(main(), timeout=60)
    assert closed == [None]
