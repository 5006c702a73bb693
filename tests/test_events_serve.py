"""The Events API: building a server and serving (docs/events.md, "Serving", "Server").

Covers: Events built by subclassing and by keywords, an empty Events() and
one with only closed; serving(server) and the Server handle (addrs,
num_loops, count_connections, udp_dropped, is_serving, stop from another
thread, wait_closed, async with); num_loops and load_balance checks;
SHUTDOWN from serving; listen / serve_async (returns on shutdown, cancelling
it closes every conn cleanly) / serve (blocking, in a thread, native and
-net) and serve's refusal inside a running loop; portable=True on evioloop.
Each test runs native, on the stock loop and on uvloop (some also portable
on evioloop through tcp-net://).
"""
import asyncio
import os
import threading

import pytest

import evioloop
from evioloop import Action, Events, LoadBalance
from events_helpers import ALL_MODES, MODES, ConnLog, harness, port_of, until


@pytest.fixture(params=MODES)
def h(request):
    yield from harness(request.param)


@pytest.fixture(params=ALL_MODES)
def hn(request):
    yield from harness(request.param)


@pytest.fixture
def native():
    yield from harness('native')


def echo(conn, in_):
    return in_


# -- building Events ------------------------------------------------------------
def test_echo_by_subclass(hn):
    class Echo(Events):
        def data(self, conn, in_):
            assert isinstance(self, Echo)
            return in_

    async def main():
        async with hn.serve(Echo(), 'tcp://127.0.0.1:0') as server:
            c = await hn.connect(server)
            for msg in (b'a', b'hello world', bytes(range(256)) * 100):
                await c.send(msg)
                assert await c.recv_exactly(len(msg)) == msg
    hn.run(main())


def test_echo_by_keywords(hn):
    async def main():
        async with hn.serve(Events(data=echo), 'tcp://127.0.0.1:0') as server:
            c = await hn.connect(server)
            await c.send(b'ping')
            assert await c.recv_exactly(4) == b'ping'
    hn.run(main())


def test_every_callback_is_optional(h):
    """Events(): connections are accepted, their input is read and dropped."""
    async def main():
        async with h.serve(Events(), 'tcp://127.0.0.1:0') as server:
            c = await h.connect(server)
            # 8 MiB only goes through when the server keeps reading
            await c.send(b'x' * (8 << 20))
            await until(lambda: server.count_connections() == 1)
            await c.nothing_for(0.2)
        await c.expect_eof()
    h.run(main())


def test_subclass_defines_only_closed(h):
    """Callbacks that are not defined are simply not called; those defined are."""
    closed = []

    class OnlyClosed(Events):
        def closed(self, conn, err):
            closed.append(err)

    async def main():
        async with h.serve(OnlyClosed(), 'tcp://127.0.0.1:0') as server:
            c = await h.connect(server)
            await c.send(b'dropped')
            await c.nothing_for(0.1)
            c.close()
            await until(lambda: closed, what='closed')
    h.run(main())
    assert closed == [None]


# -- serving(server) and the Server --------------------------------------------
def test_serving_gets_the_server(hn):
    log = []

    def serving(server):
        log.append(('serving', server, threading.get_ident()))

    def opened(conn):
        log.append(('opened',))

    async def main():
        events = Events(serving=serving, opened=opened, data=echo)
        async with hn.serve(events, 'tcp://127.0.0.1:0', 'tcp://127.0.0.1:0') as server:
            assert log and log[0][0] == 'serving'
            assert log[0][1] is server
            assert log[0][2] == threading.get_ident()
            assert server.num_loops == 1
            assert len(server.addrs) == 2
            ports = [port_of(server, i) for i in range(2)]
            assert all(p > 0 for p in ports) and ports[0] != ports[1]
            assert server.is_serving()
            assert server.count_connections() == 0
            assert server.udp_dropped == 0
            c = await hn.connect(server, 1)
            await c.send(b'x')
            assert await c.recv_exactly(1) == b'x'
        assert not server.is_serving()
    hn.run(main())
    assert [e[0] for e in log] == ['serving', 'opened']


def test_shutdown_from_serving_stops_at_once(h):
    log = []

    def serving(server):
        log.append('serving')
        return Action.SHUTDOWN

    async def main():
        events = Events(serving=serving, opened=lambda c: log.append('opened'),
                        shutdown=lambda s: log.append('shutdown'))
        path = h.unix_path()
        await asyncio.wait_for(
            evioloop.serve_async(events, h.addr('tcp://127.0.0.1:0'), h.addr(f'unix://{path}')),
            5)
        assert not os.path.exists(path)
    h.run(main())
    assert log == ['serving', 'shutdown']


def test_count_connections(h):
    closed = []

    async def main():
        events = Events(data=echo, closed=lambda c, e: closed.append(e))
        async with h.serve(events, 'tcp://127.0.0.1:0') as server:
            clients = [await h.connect(server) for _ in range(3)]
            await until(lambda: server.count_connections() == 3, what='3 connections')
            clients[0].close()
            await until(lambda: len(closed) == 1)
            assert server.count_connections() == 2
            for c in clients[1:]:
                await c.send(b'.')
                assert await c.recv_exactly(1) == b'.'
        assert server.count_connections() == 0
    h.run(main())
    assert closed == [None, None, None]


@pytest.mark.parametrize('n', [0, 1])
def test_num_loops_one(h, n):
    async def main():
        async with h.serve(Events(data=echo, num_loops=n), 'tcp://127.0.0.1:0') as server:
            assert server.num_loops == 1
            c = await h.connect(server)
            await c.send(b'1')
            assert await c.recv_exactly(1) == b'1'
    h.run(main())


@pytest.mark.parametrize('n', [2, 8, -1])
def test_num_loops_more_than_one_not_implemented(h, n):
    if n == -1 and os.cpu_count() == 1:
        pytest.skip('one CPU: -1 means one loop here')
    log = []
    path = h.unix_path()

    class E(Events):
        num_loops = n

        def serving(self, server):
            log.append('serving')

    async def main():
        with pytest.raises(NotImplementedError):
            await evioloop.listen(E(), h.addr('tcp://127.0.0.1:0'), h.addr(f'unix://{path}'))
        with pytest.raises(NotImplementedError):
            await evioloop.serve_async(Events(num_loops=n), h.addr('tcp://127.0.0.1:0'))
        assert not os.path.exists(path)
    h.run(main())
    assert log == []


def test_load_balance(h):
    assert Events().load_balance == LoadBalance.RANDOM

    async def main():
        for lb in (LoadBalance.RANDOM, LoadBalance.ROUND_ROBIN, LoadBalance.LEAST_CONNECTIONS):
            async with h.serve(Events(data=echo, load_balance=lb), 'tcp://127.0.0.1:0') as srv:
                c = await h.connect(srv)
                await c.send(b'lb')
                assert await c.recv_exactly(2) == b'lb'
        with pytest.raises((ValueError, TypeError)):
            await evioloop.listen(Events(load_balance='sideways'), h.addr('tcp://127.0.0.1:0'))
    h.run(main())


def test_stop_from_another_thread_closes_every_conn(h):
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

        def shutdown(self, server):
            log.note('shutdown')

    async def main():
        loop = asyncio.get_running_loop()
        server = await evioloop.listen(E(), h.addr('tcp://127.0.0.1:0'))
        clients = [await h.connect(server) for _ in range(4)]
        for c in clients:
            await c.send(b'hi')
            assert await c.recv_exactly(2) == b'hi'
        await loop.run_in_executor(None, server.stop)
        await asyncio.wait_for(server.wait_closed(), 10)
        assert not server.is_serving()
        for c in clients:
            await c.expect_eof()
        await server.wait_closed()   # again: returns at once
    h.run(main())
    assert len(log.conns) == 4
    for k in range(4):
        log.check_conn(k)
        assert log.closed_errs[k] is None
    assert log.names()[-1] == 'shutdown' and log.names().count('shutdown') == 1


def test_async_with_stops_on_exit(h):
    closed = []

    async def main():
        server = await evioloop.listen(Events(data=echo, closed=lambda c, e: closed.append(e)),
                                       h.addr('tcp://127.0.0.1:0'))
        async with server as s:
            assert s is server
            c = await h.connect(server)
            await c.send(b'z')
            assert await c.recv_exactly(1) == b'z'
        assert not server.is_serving()
        assert closed == [None]
        await c.expect_eof()
    h.run(main())


def test_serve_async_returns_after_shutdown_and_cancel_closes_cleanly(h):
    got = {}
    closed = []

    def serving(server):
        got['server'] = server

    async def main():
        events = Events(serving=serving, data=echo, closed=lambda c, e: closed.append(e),
                        shutdown=lambda s: closed.append('shutdown'))
        task = asyncio.ensure_future(evioloop.serve_async(events, h.addr('tcp://127.0.0.1:0')))
        await until(lambda: 'server' in got, what='serving')
        clients = [await h.connect(got['server']) for _ in range(3)]
        for c in clients:
            await c.send(b'q')
            assert await c.recv_exactly(1) == b'q'
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(task, 10)
        assert closed == [None, None, None, 'shutdown']
        for c in clients:
            await c.expect_eof()
    h.run(main())


def test_serve_blocks_in_its_thread(native):
    """evioloop.serve() runs its own evioloop loop in the calling thread."""
    for address in ('tcp://127.0.0.1:0', 'tcp-net://127.0.0.1:0'):
        got = {}
        ready = threading.Event()

        def serving(server, got=got, ready=ready):
            got['server'] = server
            got['loop'] = asyncio.get_running_loop()
            got['thread'] = threading.get_ident()
            ready.set()

        def data(conn, in_):
            if in_ == b'stop':
                return b'bye', Action.SHUTDOWN
            return in_

        def run(got=got, address=address, serving=serving, ready=ready):
            try:
                got['result'] = evioloop.serve(Events(serving=serving, data=data), address)
            except BaseException as exc:
                got['exc'] = exc
            ready.set()

        t = threading.Thread(target=run, daemon=True)
        t.start()
        assert ready.wait(10)
        assert 'exc' not in got, got.get('exc')
        assert got['thread'] == t.ident
        assert isinstance(got['loop'], evioloop.Loop)
        sock = native.blocking_client(got['server'])
        sock.sendall(b'abc')
        assert sock.recv(10) == b'abc'
        sock.sendall(b'stop')
        data_back = b''
        while True:
            b = sock.recv(10)
            if not b:
                break
            data_back += b
        assert data_back == b'bye'
        t.join(10)
        assert not t.is_alive()
        assert 'exc' not in got, got.get('exc')
        sock.close()


def test_serve_refuses_inside_a_running_loop(h):
    log = []

    async def main():
        with pytest.raises(RuntimeError):
            evioloop.serve(Events(serving=lambda s: log.append('serving')),
                           h.addr('tcp://127.0.0.1:0'))
    h.run(main())
    assert log == []


def test_portable_keyword_on_evioloop(native):
    async def main():
        async with native.serve(Events(data=echo), 'tcp://127.0.0.1:0', portable=True) as server:
            c = await native.connect(server)
            await c.send(b'portable')
            assert await c.recv_exactly(8) == b'portable'
    native.run(main())


def test_public_names():
    import evioloop.events as ev
    for name in ('Events', 'Action', 'Options', 'InputStream', 'LoadBalance',
                 'listen', 'serve', 'serve_async'):
        assert getattr(evioloop, name) is getattr(ev, name), name
    assert {a.name for a in Action} >= {'NONE', 'CLOSE', 'DETACH', 'SHUTDOWN'}
    assert {lb.name for lb in LoadBalance} == {'RANDOM', 'ROUND_ROBIN', 'LEAST_CONNECTIONS'}


def test_events_keywords_are_checked():
    with pytest.raises(TypeError):
        Events(dta=echo)
    with pytest.raises(TypeError):
        Events(data=b'not callable')


def test_two_servers_on_one_loop(h):
    """Two servers side by side; stopping one leaves the other serving."""
    async def main():
        a = await h.listen(Events(data=lambda c, i: b'A' + i), 'tcp://127.0.0.1:0')
        b = await h.listen(Events(data=lambda c, i: b'B' + i), 'tcp://127.0.0.1:0')
        try:
            ca = await h.connect(a)
            cb = await h.connect(b)
            await ca.send(b'1')
            await cb.send(b'2')
            assert await ca.recv_exactly(2) == b'A1'
            assert await cb.recv_exactly(2) == b'B2'
            a.stop()
            await asyncio.wait_for(a.wait_closed(), 10)
            await ca.expect_eof()
            await cb.send(b'3')
            assert await cb.recv_exactly(2) == b'B3'
            assert b.is_serving() and not a.is_serving()
        finally:
            for s in (a, b):
                s.stop()
                await asyncio.wait_for(s.wait_closed(), 10)
    h.run(main())


def test_native_and_portable_side_by_side_on_evioloop(native):
    async def main():
        async with native.serve(Events(data=lambda c, i: b'n' + i), 'tcp://127.0.0.1:0') as n, \
                native.serve(Events(data=lambda c, i: b'p' + i), 'tcp-net://127.0.0.1:0') as p:
            cn = await native.connect(n)
            cp = await native.connect(p)
            for i in range(20):
                await cn.send(b'%d' % (i % 10))
                await cp.send(b'%d' % (i % 10))
                assert await cn.recv_exactly(2) == b'n%d' % (i % 10)
                assert await cp.recv_exactly(2) == b'p%d' % (i % 10)
    native.run(main())


def test_serve_raises_what_stops_it_before_serving(native):
    """serve() outside any loop: a bad address, a failing serving() raise from it."""
    with pytest.raises(ValueError):
        evioloop.serve(Events(), 'sctp://127.0.0.1:0')

    def serving(server):
        raise LookupError('no thanks')
    native.expect_errors = True
    with pytest.raises(LookupError):
        evioloop.serve(Events(serving=serving), 'tcp://127.0.0.1:0')
    assert asyncio.events._get_running_loop() is None


def test_beside_an_asyncio_server_on_the_same_loop(h):
    class Upper(asyncio.Protocol):
        def connection_made(self, transport):
            self.transport = transport

        def data_received(self, data):
            self.transport.write(data.upper())

    async def main():
        loop = asyncio.get_running_loop()
        plain = await loop.create_server(Upper, '127.0.0.1', 0)
        cp = None
        try:
            async with h.serve(Events(data=echo), 'tcp://127.0.0.1:0') as server:
                ce = await h.connect(server)
                cp = await h.connect(plain.sockets[0].getsockname())
                for i in range(10):
                    await ce.send(b'abc%d' % i)
                    await cp.send(b'abc%d' % i)
                    assert await ce.recv_exactly(4) == b'abc%d' % i
                    assert await cp.recv_exactly(4) == b'ABC%d' % i
        finally:
            if cp is not None:
                cp.close()      # 3.12's wait_closed waits for the server's connections
            plain.close()
            await plain.wait_closed()
    h.run(main())
