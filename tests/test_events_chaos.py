"""The Events API under a seeded storm of everything at once.

Many clients send random chunks, half-close, reset or just go quiet, while
the server, call by call and from a seeded RNG, echoes, returns big outs,
writes with conn.write, closes, detaches, pauses and resumes reading, wakes
the conn and now and then raises. Whatever happens, the invariants hold:
every opened conn gets exactly one closed (or one detached), every raise
reaches the exception handler once with its conn, each client receives a
prefix of what the server meant to send it (all of it when the client
half-closed and the server only echoed on), and the server shuts down with
nothing left open. Each seed runs native, on the stock loop and on
uvloop.
"""
import asyncio
import random
import socket

import pytest

from evioloop import Action, Events, Options
from events_helpers import MODES, harness, until


@pytest.fixture(params=MODES)
def h(request):
    yield from harness(request.param)


class Boom(Exception):
    pass


class Storm(Events):
    def __init__(self, seed, loop):
        super().__init__()
        self.seed = seed
        self.loop = loop
        self.log = {}           # conn number -> list of callback names
        self.meant = {}         # conn number -> bytes the server meant to send
        self.clean_close = set()
        self.failed = set()
        self.detached_ = set()
        self.raises = 0
        self.conns = []

    def _n(self, conn):
        return conn.context['n']

    def _out(self, conn, data):
        self.meant[self._n(conn)] += data
        return data

    def opened(self, conn):
        n = len(self.conns)
        self.conns.append(conn)
        conn.context = {'n': n, 'rng': random.Random(self.seed * 1000 + n), 'calls': 0}
        self.log[n] = ['opened']
        self.meant[n] = bytearray()
        rng = conn.context['rng']
        opts = Options(reuse_input_buffer=rng.random() < 0.5,
                       write_buffer_high=rng.choice([64 << 10, 1 << 20]))
        return self._out(conn, b'hello %d\n' % n), opts, Action.NONE

    def data(self, conn, in_):
        ctx = conn.context
        n = ctx['n']
        self.log[n].append('data' if in_ is not None else 'wake')
        if in_ is None:
            return self._out(conn, b'<woken>')
        rng = ctx['rng']
        ctx['calls'] += 1
        r = rng.random()
        if r < 0.55:
            return self._out(conn, bytes(in_))
        if r < 0.65:
            return self._out(conn, rng.randbytes(rng.randint(1, 1 << 20)))
        if r < 0.72:
            conn.write(self._out(conn, b'[w]'))
            conn.writelines([self._out(conn, bytes(in_[:10])), self._out(conn, b'[/w]')])
            return None
        if r < 0.77:
            self.clean_close.add(n)
            return self._out(conn, b'<bye>'), Action.CLOSE
        if r < 0.80:
            self.detached_.add(n)
            return self._out(conn, b'<detach>'), Action.DETACH
        if r < 0.87:
            conn.pause_reading()
            self.loop.call_later(rng.uniform(0.001, 0.05), conn.resume_reading)
            return self._out(conn, b'<paused>')
        if r < 0.94:
            conn.wake()
            return self._out(conn, b'<wake>')
        if r < 0.97:
            self.raises += 1
            self.failed.add(n)
            raise Boom(f'conn {n} call {ctx["calls"]}')
        return Action.NONE

    def closed(self, conn, err):
        self.log[self._n(conn)].append('closed')

    def detached(self, conn, sock):
        self.log[self._n(conn)].append('detached')
        sock.close()


async def client(h, server, rng, result):
    c = await h.connect(server, rcvbuf=rng.choice([None, 16384]))
    got = bytearray()
    fate = rng.choice(['close', 'close', 'half-close', 'reset', 'quiet'])
    result['fate'] = fate
    loop = asyncio.get_running_loop()

    async def reader():
        try:
            while True:
                b = await loop.sock_recv(c.sock, 1 << 16)
                if not b:
                    result['eof'] = True
                    return
                got.extend(b)
                if rng.random() < 0.05:
                    await asyncio.sleep(0.002)
        except OSError as exc:
            result['reader error'] = exc

    reading = asyncio.ensure_future(reader())
    try:
        for _ in range(rng.randint(1, 30)):
            if reading.done():
                break
            try:
                await c.send(rng.randbytes(rng.choice([1, 10, 1000, 50_000])), timeout=5)
            except (OSError, asyncio.TimeoutError) as exc:
                result['sender error'] = exc
                break
            await asyncio.sleep(rng.choice([0, 0, 0.001, 0.01]))
        if fate == 'half-close' and not reading.done():
            try:
                c.sock.shutdown(socket.SHUT_WR)
            except OSError:
                pass
        if fate in ('half-close', 'quiet'):
            await asyncio.wait({reading}, timeout=3 if fate == 'half-close' else 0.5)
        elif fate == 'close':
            await asyncio.wait({reading}, timeout=0.05)
    finally:
        # stop reading before the socket goes: a read pending on a closed fd
        # is the client's bug, not the server's
        reading.cancel()
        try:
            await reading
        except asyncio.CancelledError:
            pass
        if fate == 'reset':
            c.reset()
        c.close()
    result['got'] = bytes(got)


@pytest.mark.parametrize('seed', range(4))
def test_storm(h, seed):
    rng = random.Random(seed)
    results = []

    async def main():
        h.expect_errors = True
        storm = Storm(seed, asyncio.get_running_loop())
        async with h.serve(storm, 'tcp://127.0.0.1:0') as server:
            tasks = []
            for _ in range(24):
                result = {}
                results.append(result)
                tasks.append(asyncio.ensure_future(
                    client(h, server, random.Random(rng.random()), result)))
                await asyncio.sleep(rng.choice([0, 0.005]))
            await asyncio.wait_for(asyncio.gather(*tasks), 40)
        await until(lambda: all(log[-1] in ('closed', 'detached') for log in storm.log.values()),
                    what='every conn closed or detached')
        return storm

    storm = h.run(main(), timeout=60)
    assert len(storm.log) == len(results) == 24
    for n, log in storm.log.items():
        ends = [e for e in log if e in ('closed', 'detached')]
        assert len(ends) == 1, (n, log)
        assert log[0] == 'opened' and log[-1] == ends[0], (n, log)
    reports = [c for c in h.errors if isinstance(c.get('exception'), Boom)]
    assert len(reports) == storm.raises
    assert len(h.errors) == storm.raises, h.errors
    assert all(c.get('conn') is not None for c in reports)
    # which client is which conn: the greeting names it
    seen = 0
    for result in results:
        got = result['got']
        if b'\n' not in got:
            # the client went before its greeting was all there
            assert b'hello '.startswith(got[:6]), result
            continue
        seen += 1
        n = int(got[6:got.index(b'\n')])
        meant = bytes(storm.meant[n])
        assert got == meant[:len(got)], (n, result['fate'], len(got), len(meant))
        # All of it arrives when the client stopped sending and half-closed and the
        # server just echoed on: no unread input that would turn the server's
        # close into a RST (which lets the kernel drop what it still held).
        calm = result['fate'] == 'half-close' and result.get('eof') and \
            'reader error' not in result and 'sender error' not in result and \
            n not in storm.clean_close | storm.failed | storm.detached_
        if calm:
            assert got == meant, (n, result['fate'], len(got), len(meant))
    assert seen >= 12
