"""The Events API: the Conn on its loop (docs/events.md, "Conn").

Covers: context kept across calls; addr_index, local_addr, remote_addr
(equal to the client's getpeername/getsockname), fd (an int, -1 once
closed); write() and writelines() inside data, with returned out after them,
and from a task on the loop outside any callback; output_buffered;
pause_reading/resume_reading/is_reading (no data calls while paused, also
when paused in opened). What other threads may call is in
test_events_threads.py. Each test runs native, on the stock loop and on uvloop.
"""
import asyncio
import socket

import pytest

from evioloop import Events
from events_helpers import MODES, fill_pattern, harness, sha, until


@pytest.fixture(params=MODES)
def h(request):
    yield from harness(request.param)


def test_context_persists_across_calls(h):
    seen = []

    def opened(conn):
        assert conn.context is None
        conn.context = {'n': 0}

    def data(conn, in_):
        conn.context['n'] += 1
        seen.append(conn.context['n'])
        return str(conn.context['n']).encode()

    def closed(conn, err):
        seen.append(('closed', conn.context['n']))

    async def main():
        async with h.serve(Events(opened=opened, data=data, closed=closed),
                           'tcp://127.0.0.1:0') as server:
            a = await h.connect(server)
            b = await h.connect(server)
            for i in range(1, 4):
                await a.send(b'.')
                assert await a.recv_exactly(1) == str(i).encode()
            await b.send(b'.')
            assert await b.recv_exactly(1) == b'1'
            a.close()
            await until(lambda: ('closed', 3) in seen)
    h.run(main())


@pytest.mark.parametrize('family', ['tcp', 'unix'])
def test_addresses_and_fd(h, family):
    got = {}

    def opened(conn):
        got['opened'] = (conn.addr_index, conn.local_addr, conn.remote_addr, conn.fd)

    def data(conn, in_):
        got['data'] = (conn.addr_index, conn.local_addr, conn.remote_addr, conn.fd)
        got['conn'] = conn
        return in_

    async def main():
        path = h.unix_path()
        addrs = ['tcp://127.0.0.1:0', f'unix://{path}']
        index = 1 if family == 'unix' else 0
        async with h.serve(Events(opened=opened, data=data), *addrs) as server:
            c = await h.connect(server, index)
            await c.send(b'x')
            assert await c.recv_exactly(1) == b'x'
            idx, local, remote, fd = got['data']
            assert got['opened'] == got['data']
            assert idx == index
            assert local == c.getpeername()
            assert remote == c.getsockname()
            assert isinstance(fd, int) and fd >= 0
            c.close()
            await until(lambda: got['conn'].fd == -1, what='fd -1 once closed')
    h.run(main())


def test_write_and_writelines_inside_data(h):
    def data(conn, in_):
        conn.write(b'<')
        conn.writelines([b'a', bytearray(b'b'), memoryview(b'c')])
        conn.write(memoryview(in_))
        return b'>'

    async def main():
        async with h.serve(Events(data=data), 'tcp://127.0.0.1:0') as server:
            c = await h.connect(server)
            await c.send(b'123')
            assert await c.recv_exactly(8) == b'<abc123>'
    h.run(main())


@pytest.mark.parametrize('bad', [None, 'text', 42])
def test_write_of_a_non_bytes_is_a_type_error_naming_the_method(h, bad):
    raised = []

    def data(conn, in_):
        for call in (lambda: conn.write(bad), lambda: conn.writelines([b'ok', bad])):
            try:
                call()
            except TypeError as exc:
                raised.append(str(exc))
        return b'|' + in_

    async def main():
        async with h.serve(Events(data=data), 'tcp://127.0.0.1:0') as server:
            c = await h.connect(server)
            await c.send(b'x')
            # the connection goes on; writelines wrote what came before the bad item
            assert await c.recv_exactly(4) == b'ok|x'
    h.run(main())
    name = type(bad).__name__
    assert raised == [f'Conn.write() takes a bytes-like object, not {name}'] * 2, raised


def test_write_big_and_output_buffered(h):
    big = fill_pattern(8 << 20, seed=11)
    seen = {}

    def data(conn, in_):
        assert conn.output_buffered == 0
        conn.write(big)
        seen['after write'] = conn.output_buffered
        return b'END'

    async def main():
        async with h.serve(Events(data=data), 'tcp://127.0.0.1:0') as server:
            c = await h.connect(server, rcvbuf=16384)
            await c.send(b'go')
            await until(lambda: seen)
            got = await c.recv_exactly(len(big) + 3, chunk=1 << 16)
            assert sha(got) == sha(big + b'END')
    h.run(main())
    # the kernel cannot take 8 MiB at once through a 16 KiB receive window
    assert 0 < seen['after write'] <= len(big)


def test_pause_and_resume_reading(h):
    calls = []
    conns = []

    def data(conn, in_):
        calls.append(bytes(in_))
        if in_.startswith(b'pause'):
            conn.pause_reading()
            calls.append(('reading', conn.is_reading()))
        return in_

    async def main():
        async with h.serve(Events(opened=conns.append, data=data), 'tcp://127.0.0.1:0') as srv:
            c = await h.connect(srv)
            await until(lambda: conns)
            assert conns[0].is_reading()
            await c.send(b'pause')
            assert await c.recv_exactly(5) == b'pause'
            await c.send(b'more')
            await asyncio.sleep(0.3)
            assert calls == [b'pause', ('reading', False)]
            conns[0].resume_reading()
            assert conns[0].is_reading()
            assert await c.recv_exactly(4) == b'more'
    h.run(main())
    assert calls == [b'pause', ('reading', False), b'more']


def test_pause_reading_in_opened(h):
    calls = []
    conns = []

    def opened(conn):
        conns.append(conn)
        conn.pause_reading()

    async def main():
        events = Events(opened=opened, data=lambda c, i: calls.append(bytes(i)) or i)
        async with h.serve(events, 'tcp://127.0.0.1:0') as srv:
            c = await h.connect(srv)
            await c.send(b'early')
            await asyncio.sleep(0.3)
            assert calls == []
            assert not conns[0].is_reading()
            conns[0].resume_reading()
            assert await c.recv_exactly(5) == b'early'
    h.run(main())
    assert calls == [b'early']


def test_write_from_the_loop_outside_callbacks(h):
    """write() and close() from a task on the loop thread, not inside a callback."""
    conns = []
    big = fill_pattern(3 << 20, seed=4)

    async def main():
        async with h.serve(Events(opened=conns.append), 'tcp://127.0.0.1:0') as srv:
            c = await h.connect(srv, rcvbuf=16384)
            await until(lambda: conns)
            conns[0].write(big)
            conns[0].writelines([b'-', b'end'])
            conns[0].close()
            got = await c.recv_until_eof(chunk=1 << 16)
            assert sha(got) == sha(big + b'-end')
    h.run(main())


def test_paused_in_opened_then_the_client_half_closes(h):
    """Input and EOF that come while paused wait: on resume, data first, then closed."""
    log = []
    conns = []

    def opened(conn):
        conns.append(conn)
        conn.pause_reading()

    def data(conn, in_):
        log.append(bytes(in_))
        return in_

    async def main():
        events = Events(opened=opened, data=data, closed=lambda c, e: log.append(('closed', e)))
        async with h.serve(events, 'tcp://127.0.0.1:0') as srv:
            c = await h.connect(srv)
            await c.send(b'early')
            await asyncio.sleep(0.1)
            c.sock.shutdown(socket.SHUT_WR)
            await asyncio.sleep(0.3)
            assert b'early' not in log, log
            conns[0].resume_reading()
            assert await c.recv_until_eof() == b'early'
            await until(lambda: ('closed', None) in log, what='closed')
    h.run(main())
    assert log == [b'early', ('closed', None)]
