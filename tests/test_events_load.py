"""The Events API under load: backpressure, many connections, a big push.

Covers: a client that sends requests but never reads while every data call
returns a large out: the server stops reading (data calls stop) and
conn.output_buffered stays within write_buffer_high plus one reply, then
the client reads everything, every byte in order; a shutdown with 1,000
connections open (each closed exactly once, every fd back); the big push:
an echo with random chunk sizes and a slow reader, sha256 both ways
(1 GiB in native mode, 64 MiB in the portable modes; EVIOLOOP_TEST_EVENTS_PUSH
overrides the native size); robustness: a paused conn whose peer goes away
does not make the loop spin, and (native) EMFILE on accept is reported and
recovered from without spinning. Each test runs native, on the stock loop and
on uvloop unless it says otherwise.
"""
import asyncio
import hashlib
import os
import random
import resource
import socket
import struct
import threading
import time

import pytest

from evioloop import Action, Events, Options
from events_helpers import MODES, ConnLog, dup_sock, harness, open_fds, spin, target_of, until


@pytest.fixture(params=MODES)
def h(request):
    yield from harness(request.param)


@pytest.fixture
def native():
    yield from harness('native')

NATIVE_PUSH = int(os.environ.get('EVIOLOOP_TEST_EVENTS_PUSH', 1 << 30))
PORTABLE_PUSH = 64 << 20


# -- backpressure ---------------------------------------------------------------
REPLY = 128 << 10
HIGH = 1 << 20
_FILL = random.Random(1).randbytes(REPLY - 8)


def reply(k):
    return struct.pack('>Q', k) + _FILL


@pytest.mark.parametrize('high', [None, 256 << 10], ids=['default', 'high=256KiB'])
def test_backpressure_with_a_client_that_never_reads(h, high):
    st = {'calls': 0, 'received': 0, 'max_buffered': 0, 'conn': None}
    limit = (HIGH if high is None else high) + REPLY

    def opened(conn):
        st['conn'] = conn
        with dup_sock(conn) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 32768)
        if high is not None:
            return Options(write_buffer_high=high, write_buffer_low=high // 4)

    def data(conn, in_):
        st['max_buffered'] = max(st['max_buffered'], conn.output_buffered)
        out = reply(st['calls'])
        st['calls'] += 1
        st['received'] += len(in_)
        return out

    async def sample(stop):
        while not stop.is_set():
            conn = st['conn']
            if conn is not None and conn.fd >= 0:
                st['max_buffered'] = max(st['max_buffered'], conn.output_buffered)
            await asyncio.sleep(0.002)

    async def main():
        stop = asyncio.Event()
        sampler = asyncio.ensure_future(sample(stop))
        try:
            async with h.serve(Events(opened=opened, data=data), 'tcp://127.0.0.1:0') as srv:
                c = await h.connect(srv, rcvbuf=4096)
                sock = c.sock
                request = b'r' * 1024
                sent = 0
                blocked_since = None
                while sent < (256 << 20):
                    try:
                        sent += sock.send(request)
                        blocked_since = None
                    except BlockingIOError:
                        now = time.monotonic()
                        blocked_since = blocked_since or now
                        if now - blocked_since > 0.5:
                            break
                        await asyncio.sleep(0.01)
                        continue
                    if sent % (64 << 10) == 0:
                        await asyncio.sleep(0)
                assert blocked_since is not None, 'the client was never blocked'
                # the server stopped reading: no data calls while nothing drains
                calls = st['calls']
                await asyncio.sleep(0.5)
                assert st['calls'] == calls, 'data calls went on with the output full'
                assert st['received'] < sent
                assert st['max_buffered'] <= limit, st
                # now read everything
                got = bytearray()
                while st['received'] < sent or len(got) < st['calls'] * REPLY:
                    b = await c.recv(1 << 18, timeout=10)
                    assert b, 'EOF'
                    got += b
                assert len(got) == st['calls'] * REPLY
                want = hashlib.sha256()
                for k in range(st['calls']):
                    want.update(reply(k))
                assert hashlib.sha256(got).hexdigest() == want.hexdigest()
                assert st['max_buffered'] <= limit, st
        finally:
            stop.set()
            await sampler
    h.run(main(), timeout=90)


# -- many connections -----------------------------------------------------------
def _ensure_nofile(n):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= n:
        return
    if hard != resource.RLIM_INFINITY and hard < n:
        pytest.skip(f'RLIMIT_NOFILE hard limit {hard} < {n}')
    resource.setrlimit(resource.RLIMIT_NOFILE, (n if hard == resource.RLIM_INFINITY else hard,
                                                hard))


def test_shutdown_with_1000_connections(h):
    n = 1000
    _ensure_nofile(2 * n + 200)
    log = ConnLog()

    class E(Events):
        def opened(self, conn):
            log.note('opened', conn)

        def data(self, conn, in_):
            log.note('data', conn)
            if in_ == b'shutdown':
                return Action.SHUTDOWN
            return in_

        def closed(self, conn, err):
            log.note('closed', conn)
            log.closed_errs[log.key(conn)] = err

        def shutdown(self, server):
            log.note('shutdown')

    def sockets():
        # the loop's own fds may come and go (uvloop opens libuv's reserve
        # /dev/null fd on the first accept); sockets must all be gone. The
        # autouse fd check compares every fd once the loop is closed.
        return {fd for fd in open_fds() if _target(fd).startswith('socket:')}

    async def main():
        before = sockets()
        server = await h.listen(E(), 'tcp://127.0.0.1:0')
        clients = []
        for _ in range(n):
            clients.append(await h.connect(server))
        await until(lambda: server.count_connections() == n, timeout=30,
                    what=f'{n} connections')
        for c in clients[::97]:
            await c.send(b'hi')
            assert await c.recv_exactly(2) == b'hi'
        await clients[500].send(b'shutdown')
        await asyncio.wait_for(server.wait_closed(), 30)
        for c in clients:
            await c.expect_eof()
            c.close()
        await spin(0.05)
        after = sockets()
        assert after == before, {fd: _target(fd) for fd in after ^ before}
    h.run(main(), timeout=120)
    assert len(log.conns) == n
    for k in range(n):
        assert log.closed_count(k) == 1
        assert log.closed_errs[k] is None
    assert log.names()[-1] == 'shutdown'
    assert log.names().count('shutdown') == 1



def _target(fd):
    try:
        return os.readlink(f'/proc/self/fd/{fd}')
    except OSError:
        return '?'


# -- the big push ---------------------------------------------------------------
def _push_client(target, total, seed, result, deadline):
    """Blocking client: a writer with random chunk sizes and a reader slow at first."""
    rng = random.Random(seed)
    block = rng.randbytes(8 << 20)
    view = memoryview(block)
    sock = socket.create_connection(target)
    sock.settimeout(max(1.0, deadline - time.monotonic()))
    sent = hashlib.sha256()
    got = hashlib.sha256()
    errors = []
    counts = {'writes': 0, 'got': 0}

    def writer():
        try:
            wr = random.Random(seed + 1)
            n = 0
            while n < total:
                r = wr.random()
                if r < 0.05:
                    size = wr.randint(1, 64)
                elif r < 0.9:
                    size = wr.randint(1, 256 << 10)
                else:
                    size = wr.randint(256 << 10, 4 << 20)
                size = min(size, total - n)
                off = wr.randrange(len(block) - size + 1)
                chunk = view[off:off + size]
                sock.sendall(chunk)
                sent.update(chunk)
                n += size
                counts['writes'] += 1
        except BaseException as exc:
            errors.append(('writer', exc))

    def reader():
        try:
            rr = random.Random(seed + 2)
            buf = bytearray(1 << 18)
            bview = memoryview(buf)
            n = 0
            time.sleep(0.3)                 # slow at first: let everything back up
            while n < total:
                size = 4096 if n < (8 << 20) else len(buf)
                k = sock.recv_into(bview[:min(size, total - n)])
                if not k:
                    raise AssertionError(f'EOF after {n} of {total} bytes')
                got.update(bview[:k])
                n += k
                if n < (16 << 20) and rr.random() < 0.05:
                    time.sleep(0.002)
            counts['got'] = n
        except BaseException as exc:
            errors.append(('reader', exc))

    threads = [threading.Thread(target=writer), threading.Thread(target=reader)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(max(0.0, deadline - time.monotonic()) + 5)
    finally:
        if any(t.is_alive() for t in threads):
            errors.append(('client', TimeoutError('client threads did not finish')))
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            for t in threads:
                t.join(10)
        sock.close()
    result.update(counts, sent=sent.hexdigest(), got=got.hexdigest(), errors=errors)


def test_big_push_1gib_native_64mib_portable(h):
    """1 GiB native, 64 MiB portable, sha256 both ways; random chunks, a slow reader."""
    total = NATIVE_PUSH if h.mode == 'native' else PORTABLE_PUSH
    seed = 20260601
    result = {}
    st = {'hash': hashlib.sha256(), 'n': 0, 'closed': []}

    def data(conn, in_):
        st['hash'].update(in_)
        st['n'] += len(in_)
        return in_

    async def main():
        loop = asyncio.get_running_loop()
        events = Events(data=data, closed=lambda c, e: st['closed'].append(e))
        async with h.serve(events, 'tcp://127.0.0.1:0') as server:
            target = target_of(server.addrs[0])[1]
            t0 = time.monotonic()
            await loop.run_in_executor(None, _push_client, target, total, seed, result,
                                       time.monotonic() + 100)
            await until(lambda: st['closed'], what='closed')
            elapsed = time.monotonic() - t0
            print(f'\n{h.mode}: {total >> 20} MiB each way in {elapsed:.2f} s '
                  f'({total / elapsed / 1e6:.0f} MB/s), {result.get("writes")} client writes')
    h.run(main(), timeout=150)
    assert result['errors'] == []
    assert st['n'] == total
    assert result['sent'] == st['hash'].hexdigest()
    assert result['got'] == result['sent']
    assert st['closed'] == [None]


# -- robustness -----------------------------------------------------------------
def _cpu_share(seconds):
    """(coroutine) the share of one CPU this process used while sleeping `seconds`."""
    async def measure():
        t0, w0 = time.process_time(), time.monotonic()
        await asyncio.sleep(seconds)
        return (time.process_time() - t0) / (time.monotonic() - w0)
    return measure()


@pytest.mark.parametrize('how', ['close', 'reset'])
def test_peer_gone_while_paused_does_not_spin(h, how):
    """A paused conn whose peer closes or resets: no busy loop; closed once, after all."""
    closed = []
    conns = []

    def data(conn, in_):
        conns.append(conn)
        conn.pause_reading()

    async def main():
        events = Events(data=data, closed=lambda c, e: closed.append(e))
        async with h.serve(events, 'tcp://127.0.0.1:0') as server:
            c = await h.connect(server)
            await c.send(b'p')
            await until(lambda: conns)
            getattr(c, how)()
            await asyncio.sleep(0.1)
            share = await _cpu_share(0.5)
            assert share < 0.5, f'the loop spins: {share:.0%} of a CPU while idle'
            conns[0].resume_reading()
            await until(lambda: closed, what='closed')
            await spin(0.05)
    h.run(main())
    assert len(closed) == 1
    if how == 'close':
        assert closed == [None]
    else:
        assert isinstance(closed[0], OSError), closed


def test_accept_out_of_fds_recovers(native):
    """EMFILE on accept (native): reported, no busy loop, and accepting resumes
    once fds are free again. (The host loops of the portable modes have their
    own ways: the stock loop logs each attempt, libuv sheds the connections.)"""
    opened = []

    async def main():
        loop = asyncio.get_running_loop()
        native.expect_errors = True
        events = Events(opened=opened.append, data=lambda c, i: i)
        async with native.serve(events, 'tcp://127.0.0.1:0') as server:
            target = target_of(server.addrs[0])[1]
            socks = [native.adopt(socket.socket()) for _ in range(20)]
            for s in socks:
                s.setblocking(False)
            soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
            top = max(open_fds())
            fillers = []
            try:
                while not fillers or fillers[-1] < top:   # fill the holes below the top
                    fillers.append(os.open('/dev/null', os.O_RDONLY))
                resource.setrlimit(resource.RLIMIT_NOFILE, (fillers[-1] + 4, hard))
                for s in socks:
                    s.connect_ex(target)
                share = await _cpu_share(0.5)
                some = len(opened)
            finally:
                resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
                for fd in fillers:
                    os.close(fd)
            assert share < 0.5, f'the loop spins on EMFILE: {share:.0%} of a CPU'
            assert some < 20
            await until(lambda: len(opened) == 20, what='every connection accepted')
            for s in socks:
                await loop.sock_sendall(s, b'ok')
                assert await asyncio.wait_for(loop.sock_recv(s, 2), 10) == b'ok'
    native.run(main())
    assert native.errors, 'EMFILE was not reported'
