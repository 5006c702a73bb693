"""The Events API: the Conn (docs/events.md, "Conn", "Threads").

Covers: context kept across calls; addr_index, local_addr, remote_addr
(equal to the client's getpeername/getsockname), fd (an int, -1 once
closed); write() and writelines() inside data, with returned out after them;
output_buffered; pause_reading/resume_reading/is_reading (no data calls
while paused); close() from another thread (pending output first); wake()
from another thread (data(conn, None) on the loop), wakes merged, a wake for
a closed conn dropped, a wake's out appended to pending output (evio #74);
write_threadsafe from 8 threads (each message once, in each thread's order,
completion callbacks once each on the loop) and its BufferError bound.
Each test runs native, on the stock loop and on uvloop.
"""
import asyncio
import socket
import threading
import time

import pytest

from evioloop import Events
from events_helpers import MODES, dup_sock, fill_pattern, harness, sha, spin, until


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


def test_close_from_another_thread(h):
    closed = []
    conns = []
    tail = fill_pattern(1 << 20, seed=5)

    def data(conn, in_):
        return tail

    async def main():
        loop = asyncio.get_running_loop()
        events = Events(opened=conns.append, data=data, closed=lambda c, e: closed.append(e))
        async with h.serve(events, 'tcp://127.0.0.1:0') as server:
            c = await h.connect(server, rcvbuf=8192)
            await c.send(b'x')
            await asyncio.sleep(0.05)
            await loop.run_in_executor(None, conns[0].close)
            got = await c.recv_until_eof(chunk=1 << 16)
            assert sha(got) == sha(tail)
            await until(lambda: closed)
    h.run(main())
    assert closed == [None]


def test_wake_from_another_thread(h):
    calls = []
    conns = []

    def data(conn, in_):
        calls.append((in_, threading.get_ident()))
        if in_ is None:
            return b'woken'
        return in_

    async def main():
        loop = asyncio.get_running_loop()
        async with h.serve(Events(opened=conns.append, data=data), 'tcp://127.0.0.1:0') as srv:
            c = await h.connect(srv)
            await until(lambda: conns)
            await loop.run_in_executor(None, conns[0].wake)
            assert await c.recv_exactly(5) == b'woken'
            await c.send(b'x')
            assert await c.recv_exactly(1) == b'x'
    h.run(main())
    assert [c[0] for c in calls] == [None, b'x']
    assert {c[1] for c in calls} == {threading.get_ident()}


def test_wakes_before_the_call_are_merged(h):
    calls = []
    conns = []

    def data(conn, in_):
        calls.append(in_)
        if in_ == b'wake':
            for _ in range(10):
                conn.wake()
        elif in_ is None:
            return b'W'
        return b'ok'

    async def main():
        async with h.serve(Events(opened=conns.append, data=data), 'tcp://127.0.0.1:0') as srv:
            c = await h.connect(srv)
            await c.send(b'wake')
            assert await c.recv_exactly(3) == b'okW'
            await c.nothing_for(0.2)
    h.run(main())
    assert calls == [b'wake', None]


def test_wake_for_a_closed_conn_is_dropped(h):
    calls = []
    conns = []
    closed = []

    async def main():
        loop = asyncio.get_running_loop()
        events = Events(opened=conns.append, data=lambda c, i: calls.append(i),
                        closed=lambda c, e: closed.append(e))
        async with h.serve(events, 'tcp://127.0.0.1:0') as srv:
            c = await h.connect(srv)
            await until(lambda: conns)
            c.close()
            await until(lambda: closed)
            conns[0].wake()                                   # on the loop thread
            await loop.run_in_executor(None, conns[0].wake)   # and from another
            await spin(0.2)
    h.run(main())
    assert calls == []
    assert closed == [None]


def test_wake_appends_to_pending_output(h):
    """evio #74: a wake's out must not replace the output still pending."""
    big = fill_pattern(4 << 20, seed=74)
    conns = []
    seen = {}

    def data(conn, in_):
        if in_ is None:
            seen['pending at wake'] = conn.output_buffered
            return b'AFTER-WAKE'
        return big

    async def main():
        loop = asyncio.get_running_loop()
        async with h.serve(Events(opened=conns.append, data=data), 'tcp://127.0.0.1:0') as srv:
            c = await h.connect(srv, rcvbuf=8192)
            await c.send(b'go')
            await asyncio.sleep(0.1)                # the client does not read yet
            await loop.run_in_executor(None, conns[0].wake)
            await until(lambda: seen, what='the wake')
            got = await c.recv_exactly(len(big) + 10, chunk=1 << 16)
            assert sha(got) == sha(big + b'AFTER-WAKE')
    h.run(main())
    assert seen['pending at wake'] > 0    # the test did exercise pending output


def test_write_threadsafe_from_8_threads(h):
    nthreads, per = 8, 500
    conns = []
    done = []
    loop_thread = threading.get_ident()
    cb_threads = set()
    errors = []

    def writer(conn, t):
        try:
            for i in range(per):
                msg = b'%d:%05d\n' % (t, i)
                conn.write_threadsafe(msg, lambda c, err, key=(t, i): (
                    done.append((key, err)), cb_threads.add(threading.get_ident())))
        except BaseException as exc:
            errors.append(exc)

    async def main():
        async with h.serve(Events(opened=conns.append), 'tcp://127.0.0.1:0') as srv:
            c = await h.connect(srv)
            await until(lambda: conns)
            threads = [h.thread(writer, conns[0], t) for t in range(nthreads)]
            size = sum(len(b'%d:%05d\n' % (t, i)) for t in range(nthreads) for i in range(per))
            got = await c.recv_exactly(size)
            for t in threads:
                await asyncio.get_running_loop().run_in_executor(None, t.join, 10)
            await until(lambda: len(done) >= nthreads * per, what='every completion')
            await spin(0.05)
            return got

    got = h.run(main())
    assert errors == []
    lines = got.split(b'\n')[:-1]
    assert len(lines) == nthreads * per
    per_thread = {}
    for line in lines:
        t, i = line.split(b':')
        per_thread.setdefault(int(t), []).append(int(i))
    assert per_thread == {t: list(range(per)) for t in range(nthreads)}
    assert len(done) == nthreads * per
    assert sorted(k for k, _ in done) == sorted((t, i) for t in range(nthreads) for i in range(per))
    assert {e for _, e in done} == {None}
    assert cb_threads == {loop_thread}


def test_write_threadsafe_is_bounded(h):
    conns = []
    accepted = []
    result = {}

    def writer(conn):
        chunk_no = 0
        try:
            while chunk_no < 1000:    # 64 MiB at most: far past 4 x 1 MiB
                conn.write_threadsafe(fill_pattern(64 << 10, seed=chunk_no))
                accepted.append(chunk_no)
                chunk_no += 1
        except BufferError as exc:
            result['exc'] = exc

    def opened(conn):
        conns.append(conn)
        with dup_sock(conn) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 16384)

    async def main():
        loop = asyncio.get_running_loop()
        async with h.serve(Events(opened=opened), 'tcp://127.0.0.1:0') as srv:
            c = await h.connect(srv, rcvbuf=8192)
            await until(lambda: conns)
            t = h.thread(writer, conns[0])
            await loop.run_in_executor(None, t.join, 20)
            assert 'exc' in result, 'write_threadsafe never raised BufferError'
            n = len(accepted)
            # what was queued: at most 4 x write_buffer_high (plus the kernel's buffers)
            assert n * (64 << 10) <= 4 * (1 << 20) + (4 << 20), n
            got = await c.recv_exactly(n * (64 << 10), chunk=1 << 16)
            want = b''.join(fill_pattern(64 << 10, seed=i) for i in range(n))
            assert sha(got) == sha(want)
    h.run(main())


def test_write_threadsafe_callback_gets_error_when_lost(h):
    conns = []
    results = []

    def opened(conn):
        conns.append(conn)
        with dup_sock(conn) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 8192)

    async def main():
        loop = asyncio.get_running_loop()
        async with h.serve(Events(opened=opened), 'tcp://127.0.0.1:0') as srv:
            c = await h.connect(srv, rcvbuf=4096)
            await until(lambda: conns)
            await loop.run_in_executor(
                None, conns[0].write_threadsafe, b'z' * (2 << 20),
                lambda conn, err: results.append(err))
            await asyncio.sleep(0.1)
            c.reset()
            await until(lambda: results, what='the completion callback')
    h.run(main())
    assert len(results) == 1
    assert isinstance(results[0], BaseException), results


def test_write_threadsafe_after_close(h):
    conns = []
    closed = []
    results = []
    raised = []

    def late_write(conn):
        try:
            conn.write_threadsafe(b'too late', lambda c, err: results.append(err))
        except Exception as exc:      # refusing at once is as good as a callback error
            raised.append(exc)

    async def main():
        loop = asyncio.get_running_loop()
        events = Events(opened=conns.append, closed=lambda c, e: closed.append(e))
        async with h.serve(events, 'tcp://127.0.0.1:0') as srv:
            c = await h.connect(srv)
            await until(lambda: conns)
            c.close()
            await until(lambda: closed)
            await loop.run_in_executor(None, late_write, conns[0])
            await until(lambda: results or raised, what='the callback or an error')
            await spin(0.05)
    h.run(main())
    if results:
        assert len(results) == 1 and isinstance(results[0], BaseException), results


def test_write_threadsafe_then_close_from_the_same_thread(h):
    """What a thread queued before its close() goes out before the EOF."""
    conns = []
    closed = []
    chunks = [fill_pattern(300_000, seed=i) for i in range(5)]

    def worker(conn):
        for chunk in chunks:
            conn.write_threadsafe(chunk)
        conn.close()

    async def main():
        loop = asyncio.get_running_loop()
        events = Events(opened=conns.append, closed=lambda c, e: closed.append(e))
        async with h.serve(events, 'tcp://127.0.0.1:0') as srv:
            c = await h.connect(srv, rcvbuf=16384)
            await until(lambda: conns)
            await loop.run_in_executor(None, worker, conns[0])
            got = await c.recv_until_eof(chunk=1 << 16, delay=0.001)
            assert sha(got) == sha(b''.join(chunks))
            await until(lambda: closed)
    h.run(main())
    assert closed == [None]


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


def test_wakes_racing_a_close(h):
    """Threads wake a conn over and over while it closes: no data call after closed."""
    log = []
    conns = []
    stop = threading.Event()

    def data(conn, in_):
        log.append('wake' if in_ is None else 'data')

    def waker(conn):
        while not stop.is_set():
            conn.wake()

    async def main():
        loop = asyncio.get_running_loop()
        events = Events(opened=conns.append, data=data, closed=lambda c, e: log.append('closed'))
        async with h.serve(events, 'tcp://127.0.0.1:0') as srv:
            c = await h.connect(srv)
            await until(lambda: conns)
            threads = [h.thread(waker, conns[0]) for _ in range(4)]
            await until(lambda: log.count('wake') > 20, what='some wakes')
            c.close()
            await until(lambda: 'closed' in log, what='closed')
            await spin(0.1)
            stop.set()
            for t in threads:
                await loop.run_in_executor(None, t.join, 10)
            await spin(0.05)
    h.run(main())
    assert log.count('closed') == 1
    assert log[-1] == 'closed', log[-5:]


def test_write_threadsafe_callbacks_once_each_when_the_peer_resets(h):
    """Every accepted write_threadsafe gets its callback exactly once, lost or not."""
    conns = []
    accepted = []
    results = {}
    lock = threading.Lock()
    stop = threading.Event()

    def opened(conn):
        conns.append(conn)
        with dup_sock(conn) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 32768)

    def writer(conn, t):
        i = 0
        while not stop.is_set() and i < 5000:
            key = (t, i)
            try:
                conn.write_threadsafe(b'%d.%d;' % key * 1000,
                                      lambda c, err, key=key: record(key, err))
            except BufferError:
                time.sleep(0.001)
                continue
            with lock:
                accepted.append(key)
            i += 1

    def record(key, err):
        results.setdefault(key, []).append(err)

    async def main():
        loop = asyncio.get_running_loop()
        async with h.serve(Events(opened=opened), 'tcp://127.0.0.1:0') as srv:
            c = await h.connect(srv, rcvbuf=8192)
            await until(lambda: conns)
            threads = [h.thread(writer, conns[0], t) for t in range(4)]
            await c.recv_exactly(200_000, chunk=8192)
            c.reset()
            await asyncio.sleep(0.1)
            stop.set()
            for t in threads:
                await loop.run_in_executor(None, t.join, 10)
            await until(lambda: len(results) >= len(accepted), timeout=10,
                        what='a callback for every accepted write')
            await spin(0.1)
    h.run(main(), timeout=60)
    assert sorted(results) == sorted(accepted)
    assert all(len(v) == 1 for v in results.values())
    errs = [v[0] for v in results.values()]
    assert any(e is None for e in errs)               # some went out before the reset
    assert any(isinstance(e, BaseException) for e in errs)   # and some were lost
