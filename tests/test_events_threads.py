"""The Events API from other threads (docs/events.md, "Conn", "Threads").

Covers: every callback running on the loop thread even when other threads
wake, write to and close conns; close() from another thread (pending output
first; what the thread queued before it, too); wake() from another thread
(data(conn, None) on the loop), wakes merged, a wake for a closed conn
dropped, wakes racing a close, a wake's out appended to pending output (evio
#74); write_threadsafe from 8 threads (each message once, in each thread's
order, completion callbacks once each on the loop), its BufferError bound,
its callbacks when the connection is lost or already closed. Each test runs
native, on the stock loop and on uvloop.
"""
import asyncio
import socket
import threading
import time

import pytest

from evioloop import Action, Events
from events_helpers import MODES, dup_sock, fill_pattern, harness, sha, spin, until


@pytest.fixture(params=MODES)
def h(request):
    yield from harness(request.param)


def test_every_callback_runs_on_the_loop_thread(h):
    """Even when wake, close and write_threadsafe come from other threads."""
    seen = []
    conns = []

    class E(Events):
        def _note(self, what):
            seen.append((what, threading.get_ident()))

        def serving(self, server):
            self._note('serving')

        def opened(self, conn):
            self._note('opened')
            conns.append(conn)

        def data(self, conn, in_):
            self._note('data')
            if in_ == b'detach':
                return Action.DETACH

        def closed(self, conn, err):
            self._note('closed')

        def detached(self, conn, sock):
            self._note('detached')
            sock.close()

        def pre_write(self):
            self._note('pre_write')

        def tick(self):
            self._note('tick')
            return 0.01

        def shutdown(self, server):
            self._note('shutdown')

    def from_thread(conn):
        conn.wake()
        conn.write_threadsafe(b'w', lambda c, e: seen.append(('done', threading.get_ident())))

    async def main():
        loop = asyncio.get_running_loop()
        async with h.serve(E(), 'tcp://127.0.0.1:0') as server:
            a = await h.connect(server)
            b = await h.connect(server)
            await until(lambda: len(conns) == 2)
            await loop.run_in_executor(None, from_thread, conns[0])
            assert await a.recv_exactly(1) == b'w'
            await loop.run_in_executor(None, conns[0].close)
            await a.expect_eof()
            await b.send(b'detach')
            await b.expect_eof()
            await until(lambda: ('tick', threading.get_ident()) in seen)
        return threading.get_ident()

    me = h.run(main())
    names = {w for w, _ in seen}
    assert names >= {'serving', 'opened', 'data', 'closed', 'detached', 'pre_write', 'tick',
                     'shutdown', 'done'}, names
    assert {t for _, t in seen} == {me}


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
