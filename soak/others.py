"""Non-stream workloads: UDP echo, subprocess echo, timers, call_soon_threadsafe.

* UDP: datagrams carry (worker, sequence, crc32) and a random payload; a
  datagram that comes back with a bad checksum is corruption (an error), one
  that never comes back is counted as lost (reported, not an error).
* Subprocesses: a child Python echoes stdin to stdout and exits with a code
  chosen by the parent; bytes, exit code and "no child left" are checked.
* Timers: batches of call_later with random delays, some cancelled; each must
  fire not before its deadline, in deadline order, and a cancelled one never.
* Threads: 2-4 threads call call_soon_threadsafe; per thread the callbacks
  must arrive in order and all of them must arrive.
"""
import asyncio
import hashlib
import struct
import sys
import threading
import time
import zlib

from common import STEP_TIMEOUT

_HDR = struct.Struct('!IQI')     # worker, sequence, crc32 of the payload
_UDP_MAX = 8 * 1024
_UDP_BURST = 8
_UDP_WAIT = 2.0                  # a datagram not back within this is lost


def _crc_ok(dgram):
    if len(dgram) < _HDR.size:
        return False
    return zlib.crc32(dgram[_HDR.size:]) == _HDR.unpack_from(dgram)[2]


class UdpEchoServer(asyncio.DatagramProtocol):
    def __init__(self, soak):
        self.soak = soak
        self.transport = None

    def connection_made(self, transport):
        self.transport = transport

    def datagram_received(self, data, addr):
        if not _crc_ok(data):
            self.soak.stat('udp').corrupt += 1
            self.soak.error('udp', f'server got a corrupted datagram of {len(data)} bytes')
        self.transport.sendto(data, addr)

    def error_received(self, exc):
        self.soak.error('udp', f'server error_received({exc!r})')


class UdpClient(asyncio.DatagramProtocol):
    def __init__(self, soak, wid):
        self.soak = soak
        self.wid = wid
        self.waiting = {}          # seq -> (payload, future)
        self.transport = None

    def connection_made(self, transport):
        self.transport = transport

    def datagram_received(self, data, addr):
        st = self.soak.stat('udp')
        if not _crc_ok(data):
            st.corrupt += 1
            self.soak.error('udp', f'client got a corrupted datagram of {len(data)} bytes')
            return
        wid, seq, _ = _HDR.unpack_from(data)
        item = self.waiting.pop(seq, None) if wid == self.wid else None
        if item is None:
            st.bump('late_or_unknown')      # arrived after its wait ended
            return
        payload, fut = item
        if data[_HDR.size:] != payload:
            st.corrupt += 1
            self.soak.error('udp', f'datagram {seq} came back with other bytes')
        elif not fut.done():
            fut.set_result(len(payload))

    def error_received(self, exc):
        self.soak.error('udp', f'client error_received({exc!r})')


async def udp_worker(soak, server_addr, wid):
    st = soak.stat('udp')
    rng = soak.rng('udp', wid)
    loop = soak.loop
    transport, proto = await loop.create_datagram_endpoint(
        lambda: UdpClient(soak, wid), remote_addr=server_addr)
    seq = 0
    try:
        while not soak.stopping:
            futs = []
            for _ in range(_UDP_BURST):
                seq += 1
                payload = soak.payload(rng, _UDP_MAX)
                fut = loop.create_future()
                proto.waiting[seq] = (payload, fut)
                transport.sendto(_HDR.pack(wid, seq, zlib.crc32(payload)) + payload)
                futs.append(fut)
            done, pending = await asyncio.wait(futs, timeout=_UDP_WAIT)
            for f in done:
                st.ops += 1
                st.bytes += f.result()
            st.lost += len(pending)
            for f in pending:
                f.cancel()
            proto.waiting.clear()
    finally:
        transport.close()


async def start_udp(soak):
    transport, _ = await soak.loop.create_datagram_endpoint(
        lambda: UdpEchoServer(soak), local_addr=('127.0.0.1', 0))
    return transport, transport.get_extra_info('sockname')


# -- subprocesses ------------------------------------------------------------------
_CHILD = '''
import sys
r, w = sys.stdin.buffer, sys.stdout.buffer
while True:
    b = r.read1(65536)
    if not b:
        break
    w.write(b)
    w.flush()
sys.exit(int(sys.argv[1]))
'''


async def subprocess_worker(soak, wid):
    st = soak.stat('subprocess')
    rng = soak.rng('subprocess', wid)
    while not soak.stopping:
        chunks = [soak.payload(rng, 256 * 1024) for _ in range(rng.randint(1, 4))]
        code = rng.choice((0, 0, 0, 1, 3, 42))
        try:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, '-c', _CHILD, str(code), stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        except Exception as exc:
            soak.error('subprocess', f'spawn: {exc!r}')
            await asyncio.sleep(1)
            continue
        st.conns += 1
        try:
            out, err, _ = await asyncio.wait_for(
                asyncio.gather(proc.stdout.read(), proc.stderr.read(), _feed(proc, chunks)),
                STEP_TIMEOUT)
            rc = await asyncio.wait_for(proc.wait(), STEP_TIMEOUT)
            want = b''.join(chunks)
            if hashlib.sha256(out).digest() != hashlib.sha256(want).digest():
                st.corrupt += 1
                soak.error('subprocess', f'stdout: {len(out)} bytes back of {len(want)}, '
                                         'differing')
            elif rc != code or err:
                soak.error('subprocess', f'exit code {rc}, wanted {code}; stderr {err[:200]!r}')
            else:
                st.ops += 1
                st.bytes += len(want)
        except Exception as exc:
            soak.error('subprocess', f'{exc!r}')
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        await asyncio.sleep(rng.uniform(0.05, 0.4))


async def _feed(proc, chunks):
    for c in chunks:
        proc.stdin.write(c)
        await proc.stdin.drain()
    proc.stdin.close()
    await proc.stdin.wait_closed()


# -- timers --------------------------------------------------------------------------
class _TimerBatch:
    """40 timers with random delays; ~25% cancelled (at once or by an earlier timer)."""

    N = 40

    def __init__(self, soak, rng, slack):
        self.soak = soak
        self.loop = soak.loop
        self.fired = []                 # (index, loop.time() at the call)
        self.state = [None] * self.N    # None: pending, 'fired', 'cancelled'
        self.handles = []
        self.whens = []
        self.max_delay = 0.0
        loop = self.loop
        for i in range(self.N):
            delay = rng.uniform(0, 0.25)
            self.max_delay = max(self.max_delay, delay)
            t0 = loop.time()
            h = loop.call_later(delay, self.fire, i)
            self.handles.append(h)
            when = h.when() if hasattr(h, 'when') else t0 + delay
            if when < t0 + delay - slack:
                soak.error('timers', f'when() {when} is before now + delay {t0 + delay}')
            self.whens.append(when)
            r = rng.random()
            if r < 0.1:
                self.cancel(i)
            elif r < 0.25:
                loop.call_later(delay * rng.random(), self.cancel, i)

    def fire(self, i):
        if self.state[i] == 'cancelled':
            self.soak.error('timers', f'timer {i} fired after it was cancelled')
        self.state[i] = 'fired'
        self.fired.append((i, self.loop.time()))

    def cancel(self, i):
        if self.state[i] is None:
            self.handles[i].cancel()
            self.state[i] = 'cancelled'

    def check(self, st, slack):
        soak, whens = self.soak, self.whens
        for i in range(self.N):
            if self.state[i] is None:
                soak.error('timers', f'timer {i} (due at {whens[i]:.4f}) never fired; '
                                     f'now {self.loop.time():.4f}')
        last = None
        for i, at in self.fired:
            early = whens[i] - at
            if early > slack:
                soak.error('timers', f'timer {i} fired {early * 1e3:.3f} ms early')
            late = at - whens[i]
            if late > st.extra.get('max_late_ms', 0) / 1e3:
                st.extra['max_late_ms'] = round(late * 1e3, 3)
            if last is not None and whens[i] < whens[last]:
                soak.error('timers', f'timer {i} (when {whens[i]:.6f}) fired after timer '
                                     f'{last} (when {whens[last]:.6f})')
            last = i
        st.ops += len(self.fired)
        st.bump('cancelled', self.state.count('cancelled'))


async def timer_worker(soak, wid):
    st = soak.stat('timers')
    rng = soak.rng('timers', wid)
    loop = soak.loop
    # the stock loop runs a timer up to its clock resolution early (base_events
    # _run_once: `end_time = self.time() + self._clock_resolution`)
    slack = getattr(loop, '_clock_resolution', 1e-9) + 1e-6
    if type(loop).__module__.startswith('uvloop'):
        slack += 1e-3      # uvloop's time() and when() are libuv's milliseconds
    while not soak.stopping:
        batch = _TimerBatch(soak, rng, slack)
        await asyncio.sleep(batch.max_delay)
        # a busy machine may run the last ones a little late: late is not an error
        give_up = loop.time() + 10.0
        while None in batch.state and loop.time() < give_up:
            await asyncio.sleep(0.05)
        batch.check(st, slack)


# -- call_soon_threadsafe ---------------------------------------------------------------
class ThreadCallers:
    """Threads that call `loop.call_soon_threadsafe`, bounded in flight."""

    BURST = 10
    IN_FLIGHT = 400

    def __init__(self, soak, nthreads):
        self.soak = soak
        self.n = nthreads
        self.sent = [0] * nthreads
        self.got = [0] * nthreads
        self.stop_flag = threading.Event()
        self.threads = []

    def _callback(self, tid, seq):
        if seq != self.got[tid]:
            self.soak.error('threadsafe', f'thread {tid}: callback {seq} arrived, '
                                          f'expected {self.got[tid]}')
        self.got[tid] = seq + 1
        self.soak.stat('threadsafe').ops += 1

    def _run(self, tid):
        loop = self.soak.loop
        try:
            while not self.stop_flag.is_set():
                if self.sent[tid] - self.got[tid] > self.IN_FLIGHT:
                    time.sleep(0.001)
                    continue
                for _ in range(self.BURST):
                    loop.call_soon_threadsafe(self._callback, tid, self.sent[tid])
                    self.sent[tid] += 1
                time.sleep(0.005)
        except Exception as exc:      # the loop closed under us: a soak bug, report it
            loop.call_soon_threadsafe(self.soak.error, 'threadsafe', f'thread {tid}: {exc!r}')

    def start(self):
        for tid in range(self.n):
            t = threading.Thread(target=self._run, args=(tid,), name=f'soak-caller-{tid}',
                                 daemon=True)
            t.start()
            self.threads.append(t)

    async def stop(self):
        if not self.n:
            return
        self.stop_flag.set()
        for t in self.threads:
            t.join(10)           # they stop within one burst (a few ms)
            if t.is_alive():
                self.soak.error('threadsafe', f'{t.name} did not stop')
        deadline = time.monotonic() + 10
        while self.got != self.sent and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        if self.got != self.sent:
            self.soak.error('threadsafe', f'sent {self.sent}, callbacks run {self.got}')
        self.soak.stat('threadsafe').extra['threads'] = self.n
