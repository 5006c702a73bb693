"""Nothing lost, nothing leaked: resets, many connections, a peer that never
reads, and running out of fds on accept. On evioloop and the stock loop.

EVIOLOOP_TEST_CONNECTIONS sets how many connections the open/close test makes
(default 10000, as issue 3 asks).
"""
import asyncio
import errno
import os
import random
import resource
import socket
import struct

import pytest

from net_helpers import (
    LOOP_KINDS, Recorder, fd_targets, keeping, loop_errors, open_fds, pattern, port_of,
    run,
    spin, until,
)

N_CONNECTIONS = int(os.environ.get('EVIOLOOP_TEST_CONNECTIONS', 10000))


@pytest.fixture(params=LOOP_KINDS)
def kind(request):
    return request.param


class EchoServer(Recorder):
    """Echo with flow control: stops reading while its writes are paused."""

    def data_received(self, data):
        super().data_received(data)
        if data == b'quit':
            self.transport.close()
            return
        self.transport.write(data)

    def pause_writing(self):
        super().pause_writing()
        self.transport.pause_reading()

    def resume_writing(self):
        super().resume_writing()
        self.transport.resume_reading()


class EchoClient(Recorder):
    """Sends a payload in chunks, honouring pause_writing, and collects the echo."""

    def __init__(self):
        super().__init__()
        self.can_write = asyncio.Event()
        self.can_write.set()

    def pause_writing(self):
        super().pause_writing()
        self.can_write.clear()

    def resume_writing(self):
        super().resume_writing()
        self.can_write.set()

    async def send(self, payload, rng, progress=None):
        i = 0
        while i < len(payload):
            await asyncio.wait_for(self.can_write.wait(), 30)
            n = rng.randint(1, 64 << 10)
            self.transport.write(payload[i:i + n])
            i += n
            if progress is not None:
                progress(i)
            await asyncio.sleep(0)


# ---------------------------------------------------------------- reset mid-stream

def linger0_close(sock):
    """Close with SO_LINGER {on, 0}: the kernel sends RST, not FIN."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack('ii', 1, 0))
    sock.close()


def test_peer_reset_mid_stream_hits_only_that_connection(kind):
    n_good, n_bad = 4, 2
    good_size = 6 << 20

    async def main():
        loop = asyncio.get_running_loop()
        sprotos = []

        class Echo(EchoServer):
            def connection_made(self, transport):
                super().connection_made(transport)
                # asked here, so that this test does not depend on the
                # address being kept after a reset (test_net_transport has
                # its own test for that)
                self.peername = transport.get_extra_info('peername')

        def factory():
            p = Echo()
            sprotos.append(p)
            return p

        server = await loop.create_server(factory, '127.0.0.1', 0)
        port = port_of(server)
        bad_socks = []
        good = []
        try:
            # the peers that will reset: raw sockets that send, read a little,
            # then keep sending without reading
            for _ in range(n_bad):
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                s.setblocking(False)
                await loop.sock_connect(s, ('127.0.0.1', port))
                bad_socks.append(s)
            for _ in range(n_good):
                tr, p = await loop.create_connection(EchoClient, '127.0.0.1', port)
                good.append(p)
            await until(lambda: len(sprotos) == n_good + n_bad
                        and all(p.transport for p in sprotos), what='all accepted')

            payloads = [pattern(good_size, seed=100 + i) for i in range(n_good)]
            halfway = asyncio.Event()

            def progress(n):
                if n > good_size // 3:
                    halfway.set()

            senders = [asyncio.ensure_future(p.send(payloads[i], random.Random(i), progress))
                       for i, p in enumerate(good)]
            for s in bad_socks:
                await loop.sock_sendall(s, pattern(1 << 20, seed=7))
                await loop.sock_recv(s, 65536)
                # more data whose echo nobody will read
                await loop.sock_sendall(s, pattern(1 << 20, seed=8))
            await asyncio.wait_for(halfway.wait(), 30)
            bad_names = {s.getsockname() for s in bad_socks}
            for s in bad_socks:
                linger0_close(s)
            bad_socks = []

            # the good ones carry on and get every byte back
            await asyncio.wait_for(asyncio.gather(*senders), 60)
            for p, payload in zip(good, payloads, strict=True):
                await asyncio.wait_for(p.wait_bytes(len(payload)), 60)
                assert bytes(p.data) == payload
                assert not p.lost.done()
            # the reset connections: connection_lost(exc), once each
            bad_protos = [p for p in sprotos if p.peername in bad_names]
            assert len(bad_protos) == n_bad
            for p in bad_protos:
                exc = await asyncio.wait_for(p.lost, 10)
                assert isinstance(exc, ConnectionError), repr(exc)
                assert p.lost_calls == 1
            # no other connection was touched
            good_sprotos = [p for p in sprotos if p not in bad_protos]
            assert all(not p.lost.done() for p in good_sprotos)
            for p in good:
                p.transport.close()
            for p in good_sprotos + good:
                assert await asyncio.wait_for(p.lost, 10) is None
                assert p.lost_calls == 1
        finally:
            for s in bad_socks:
                s.close()
            for p in good:
                if p.transport and not p.transport.is_closing():
                    p.transport.abort()
            server.close()
            await asyncio.wait_for(server.wait_closed(), 10)

    run(kind, main())


# ---------------------------------------------------------------- many connections

class CountingEcho(asyncio.Protocol):
    made = 0
    lost = 0
    lost_errors = []

    def connection_made(self, transport):
        type(self).made += 1
        self.transport = transport

    def data_received(self, data):
        if data == b'quit':
            self.transport.close()
        else:
            self.transport.write(data)

    def connection_lost(self, exc):
        type(self).lost += 1
        if exc is not None:
            type(self).lost_errors.append(exc)


def test_many_connections_leave_no_fd_open(kind):
    total = N_CONNECTIONS
    # stay well below the fd limit: each connection costs two fds here
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    batch = max(1, min(250, (soft - len(open_fds()) - 100) // 3))

    class Counter(CountingEcho):
        made = 0
        lost = 0
        lost_errors = []

    async def one(loop, port, i):
        tr, p = await loop.create_connection(Recorder, '127.0.0.1', port)
        msg = b'ping %d' % i
        tr.write(msg)
        await p.wait_bytes(len(msg))
        assert bytes(p.data) == msg
        how = i % 4
        if how == 0:
            tr.close()                      # client closes first
        elif how == 1:
            tr.write(b'quit')               # the server closes first
        elif how == 2:
            tr.abort()                      # client resets
        else:
            tr.write_eof()                  # half-close; the server closes
        exc = await asyncio.wait_for(p.lost, 10)
        if how in (0, 1, 3):
            assert exc is None, (how, exc)

    async def main():
        loop = asyncio.get_running_loop()
        server = await loop.create_server(Counter, '127.0.0.1', 0, backlog=1000)
        port = port_of(server)
        try:
            before = open_fds()
            done = 0
            while done < total:
                n = min(batch, total - done)
                await asyncio.gather(*(one(loop, port, done + k) for k in range(n)))
                done += n
            await until(lambda: Counter.lost == total, 30,
                        what=f'server-side connection_lost ({Counter.lost} of {total})')
            await spin(10)
            after = open_fds()
            assert after == before, (
                f'opened {fd_targets(after - before)}, closed {sorted(before - after)}')
            assert Counter.made == total
            # the resets (every 4th connection) may surface as errors; nothing else
            assert all(isinstance(e, ConnectionError) for e in Counter.lost_errors)
            # the server still works
            await one(loop, port, 0)
            assert Counter.made == total + 1
        finally:
            server.close()
            await asyncio.wait_for(server.wait_closed(), 30)

    run(kind, main(), timeout=600)


# ---------------------------------------------------------------- a peer that never reads

class Firehose(Recorder):
    """Writes chunks for as long as it is not paused."""

    def __init__(self, chunk, limits):
        super().__init__()
        self.chunk = b'f' * chunk
        self.limits = limits
        self.written = 0
        self.size_at_pause = None

    def connection_made(self, transport):
        super().connection_made(transport)
        if self.limits is not None:
            transport.set_write_buffer_limits(high=self.limits)
        self.loop.call_soon(self.pump)

    def pump(self):
        while not self.paused and not self.transport.is_closing():
            self.transport.write(self.chunk)
            self.written += len(self.chunk)

    def pause_writing(self):
        super().pause_writing()
        self.size_at_pause = self.transport.get_write_buffer_size()

    def resume_writing(self):
        super().resume_writing()
        self.loop.call_soon(self.pump)


@pytest.mark.parametrize('high', [None, 1 << 20], ids=['default-limits', 'high-1MiB'])
def test_peer_that_never_reads_pauses_the_protocol(kind, high):
    chunk = 65536

    async def main():
        loop = asyncio.get_running_loop()
        factory, sprotos = keeping(lambda: Firehose(chunk, high))

        server = await loop.create_server(factory, '127.0.0.1', 0)
        peer = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            peer.setblocking(False)
            await loop.sock_connect(peer, ('127.0.0.1', port_of(server)))
            await until(lambda: sprotos and sprotos[0].pauses == 1, 30,
                        what='pause_writing')
            p = sprotos[0]
            t = p.transport
            limit = t.get_write_buffer_limits()[1]
            if high is not None:
                assert limit == high
            assert limit < p.size_at_pause <= limit + chunk
            written = p.written
            sizes = []
            for _ in range(30):
                await asyncio.sleep(0.01)
                sizes.append(t.get_write_buffer_size())
            # paused for good: no resume, the protocol wrote nothing more, and
            # the buffer did not grow past the point where it paused
            assert p.pauses == 1 and p.resumes == 0
            assert p.written == written
            assert max(sizes) <= p.size_at_pause
            # the peer goes away without reading: the connection is lost
            linger0_close(peer)
            peer = None
            exc = await asyncio.wait_for(p.lost, 10)
            assert isinstance(exc, ConnectionError), repr(exc)
            assert p.lost_calls == 1
        finally:
            if peer is not None:
                peer.close()
            server.close()
            await asyncio.wait_for(server.wait_closed(), 10)

    run(kind, main())


# ---------------------------------------------------------------- EMFILE on accept

def test_accept_survives_running_out_of_fds(kind):
    n_clients = 8

    async def main():
        loop = asyncio.get_running_loop()
        factory, sprotos = keeping(EchoServer)

        server = await loop.create_server(factory, '127.0.0.1', 0, backlog=100)
        addr = ('127.0.0.1', port_of(server))
        clients = []
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        try:
            # the kernel completes these connects from the backlog, before the
            # server accepts them
            for _ in range(n_clients):
                c = socket.create_connection(addr)
                c.setblocking(False)
                clients.append(c)
            fds = open_fds()
            # a limit that leaves exactly two fd numbers free
            free = [n for n in range(max(fds) + 3) if n not in fds]
            limit = free[1] + 1
            resource.setrlimit(resource.RLIMIT_NOFILE, (limit, hard))
            try:
                await until(lambda: loop_errors(loop), 10, what='the accept error')
                await spin(10, 0.2)
            finally:
                resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
            assert len(sprotos) <= 2
            # the server carries on: every client gets served
            for i, c in enumerate(clients):
                msg = b'hello %d' % i
                await loop.sock_sendall(c, msg)
                got = b''
                while len(got) < len(msg):
                    chunk = await asyncio.wait_for(loop.sock_recv(c, 100), 30)
                    assert chunk, 'connection closed'
                    got += chunk
                assert got == msg
            assert len(sprotos) == n_clients
            errors = loop_errors(loop)
            assert errors
            for ctx in errors:
                exc = ctx.get('exception')
                assert isinstance(exc, OSError) and exc.errno in (errno.EMFILE, errno.ENFILE), ctx
            # and it still accepts new ones
            c = socket.socket()
            clients.append(c)
            c.setblocking(False)
            await loop.sock_connect(c, addr)
            await loop.sock_sendall(c, b'again')
            assert await asyncio.wait_for(loop.sock_recv(c, 100), 10) == b'again'
        finally:
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
            for c in clients:
                c.close()
            for p in sprotos:
                if p.transport and not p.transport.is_closing():
                    p.transport.abort()
            server.close()
            await asyncio.wait_for(server.wait_closed(), 10)

    run(kind, main(), allow_loop_errors=True)
