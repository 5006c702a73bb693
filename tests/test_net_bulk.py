"""Nothing lost: a large push through a Protocol echo server, checked by sha256.

The server is an asyncio.Protocol on the loop under test; it echoes with
random write sizes (write or writelines of random pieces), and pauses reading
while its transport asks it to stop writing. The client is two plain
blocking-socket threads: a writer with random write sizes and a slow reader
that stalls now and then, so the server's transport must buffer, pause the
protocol, and resume it.

EVIOLOOP_TEST_PUSH_BYTES sets the size (default 1 GiB, as issue 3 asks);
EVIOLOOP_TEST_PUSH_TIMEOUT bounds the run (default 300 s).
"""
import asyncio
import hashlib
import os
import random
import socket
import threading
import time

import pytest

from net_helpers import LOOP_KINDS, run

PUSH_BYTES = int(os.environ.get('EVIOLOOP_TEST_PUSH_BYTES', 1 << 30))
PUSH_TIMEOUT = float(os.environ.get('EVIOLOOP_TEST_PUSH_TIMEOUT', 300))


class HashingEcho(asyncio.Protocol):
    """Echo server protocol with flow control and a hash of what it got."""

    def __init__(self, seed, done, shared):
        self.shared = shared
        self.rng = random.Random(seed)
        self.done = done
        self.received = hashlib.sha256()
        self.nreceived = 0
        self.paused = False
        self.pauses = 0
        self.resumes = 0
        self.events = []
        self.data_while_reading_paused = 0
        self.reading_paused = False

    def connection_made(self, transport):
        self.events.append('connection_made')
        self.transport = transport

    def data_received(self, data):
        if self.reading_paused:
            self.data_while_reading_paused += 1
        self.received.update(data)
        self.nreceived += len(data)
        # random write sizes on the way back, too
        r = self.rng.random()
        if len(data) < 2 or r < 0.4:
            self.transport.write(data)
        elif r < 0.8:
            view = memoryview(data)
            cuts = sorted(self.rng.sample(range(1, len(data)), min(len(data) - 1, 3)))
            self.transport.writelines(
                [view[a:b] for a, b in zip([0] + cuts, cuts + [len(data)], strict=True)])
        else:
            cut = self.rng.randrange(1, len(data))
            self.transport.write(data[:cut])
            self.transport.write(data[cut:])

    def pause_writing(self):
        assert not self.paused
        self.events.append('pause_writing')
        self.paused = True
        self.pauses += 1
        self.shared['pauses'] = self.pauses
        self.reading_paused = True
        self.transport.pause_reading()

    def resume_writing(self):
        assert self.paused
        self.events.append('resume_writing')
        self.paused = False
        self.resumes += 1
        self.reading_paused = False
        self.transport.resume_reading()

    def eof_received(self):
        self.events.append('eof_received')
        # half-close: what is buffered goes out, then our FIN; returning
        # False then closes the transport (after the flush)
        assert self.transport.can_write_eof()
        self.transport.write_eof()
        return False

    def connection_lost(self, exc):
        self.events.append('connection_lost')
        if not self.done.done():
            self.done.set_result(exc)


def _client(port, total, seed, result, deadline, shared):
    """Blocking client: a writer thread and a slow reader thread."""
    rng = random.Random(seed)
    block = rng.randbytes(8 << 20)
    view = memoryview(block)
    sock = socket.create_connection(('127.0.0.1', port))
    sock.settimeout(max(1.0, deadline - time.monotonic()))
    sent = hashlib.sha256()
    got = hashlib.sha256()
    counts = {'sent': 0, 'got': 0, 'stalls': 0, 'writes': 0}
    errors = []

    def writer():
        try:
            wr = random.Random(seed + 1)
            n = 0
            while n < total:
                r = wr.random()
                if r < 0.05:
                    size = wr.randint(1, 64)            # tiny
                elif r < 0.9:
                    size = wr.randint(1, 256 << 10)     # up to 256 KiB
                else:
                    size = wr.randint(256 << 10, 4 << 20)  # large
                size = min(size, total - n)
                off = wr.randrange(len(block) - size + 1)
                chunk = view[off:off + size]
                sock.sendall(chunk)
                sent.update(chunk)
                n += size
                counts['writes'] += 1
            counts['sent'] = n
            sock.shutdown(socket.SHUT_WR)
        except BaseException as exc:  # reported by the test
            errors.append(('writer', exc))

    def reader():
        try:
            rr = random.Random(seed + 2)
            buf = bytearray(1 << 18)
            bview = memoryview(buf)
            n = 0
            next_stall = rr.randint(4 << 20, 64 << 20)
            while True:
                # sometimes read in small bites, mostly in big ones
                size = 4096 if rr.random() < 0.02 else len(buf)
                k = sock.recv_into(bview[:size])
                if not k:
                    break
                got.update(bview[:k])
                n += k
                if n >= next_stall:
                    # the slow reader: stop reading for a while. The first
                    # stalls last until the server's protocol was told to
                    # pause writing (at most a few seconds), the others a
                    # moment.
                    counts['stalls'] += 1
                    if counts['stalls'] <= 3:
                        before = shared.get('pauses', 0)
                        until = time.monotonic() + 5
                        while shared.get('pauses', 0) == before and time.monotonic() < until:
                            time.sleep(0.002)
                    time.sleep(rr.uniform(0.005, 0.02))
                    next_stall = n + rr.randint(4 << 20, 64 << 20)
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
            # unblock them; the test fails on the errors this causes
            errors.append(('client', TimeoutError('client threads did not finish')))
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            for t in threads:
                t.join(10)
        sock.close()
    result.update(counts, sent=sent.hexdigest(), got=got.hexdigest(), errors=errors)


@pytest.mark.parametrize('kind', LOOP_KINDS)
def test_push_through_protocol_echo_with_slow_reader(kind):
    total = PUSH_BYTES
    seed = 20240601
    result = {}

    async def main():
        loop = asyncio.get_running_loop()
        done = loop.create_future()
        protos = []
        shared = {}

        def factory():
            p = HashingEcho(seed, done, shared)
            protos.append(p)
            return p

        server = await loop.create_server(factory, '127.0.0.1', 0)
        port = server.sockets[0].getsockname()[1]
        deadline = time.monotonic() + PUSH_TIMEOUT
        t0 = time.monotonic()
        try:
            await loop.run_in_executor(None, _client, port, total, seed, result, deadline,
                                       shared)
            exc = await asyncio.wait_for(done, 10)
        finally:
            server.close()
            await server.wait_closed()
        elapsed = time.monotonic() - t0
        print(f'\n{kind}: pushed {total} bytes each way in {elapsed:.2f} s '
              f'({total / elapsed / 1e6:.0f} MB/s); client writes {result.get("writes")}, '
              f'reader stalls {result.get("stalls")}; server pauses '
              f'{protos[0].pauses if protos else "?"}')
        return protos, exc

    protos, exc = run(kind, main(), timeout=PUSH_TIMEOUT + 30)
    assert result['errors'] == []
    assert len(protos) == 1
    p = protos[0]
    assert exc is None
    # every byte, both directions
    assert p.nreceived == total
    assert result['sent'] == p.received.hexdigest()
    assert result['got'] == result['sent']
    # the slow reader made the server's transport push back
    assert p.pauses >= 1
    assert p.resumes == p.pauses
    # no data while the protocol had paused reading
    assert p.data_while_reading_paused == 0
    assert p.events[0] == 'connection_made'
    assert p.events[-1] == 'connection_lost'
    assert p.events.count('eof_received') == 1
    assert p.events.count('connection_lost') == 1
