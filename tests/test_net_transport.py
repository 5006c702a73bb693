"""The stream transport's contract (TCP and Unix), on evioloop and the stock loop.

Protocol callback order, write/writelines/write_eof, close() flushing and
abort() discarding, extra info, reading and writing flow control, protocol
swapping, TCP_NODELAY and BufferedProtocol. Everything asserted here is what
the stock asyncio transports do; both loops run every test.
"""
import asyncio
import random
import socket
import sys

import pytest

from net_helpers import (
    LOOP_KINDS, Recorder, check_callback_order, connected_pair, has_ipv6_loopback,
    keeping, pattern, run, spin, until,
)

FAMILIES = ['tcp', 'unix']


@pytest.fixture(params=LOOP_KINDS)
def kind(request):
    return request.param


@pytest.fixture(params=FAMILIES)
def family(request):
    return request.param


class PausedReader(Recorder):
    """A Recorder that does not read until told to."""

    def connection_made(self, transport):
        super().connection_made(transport)
        transport.pause_reading()
        # The stock transport of 3.10 starts reading in a callback queued
        # after connection_made, which undoes a pause made here; pause once
        # more after it. (test_pause_reading_in_connection_made covers the
        # plain case.)
        self.loop.call_soon(self._pause_again)

    def _pause_again(self):
        if not self.transport.is_closing():
            self.transport.resume_reading()
            self.transport.pause_reading()


# ---------------------------------------------------------------- callback order

def test_callback_order_with_half_close(kind, family):
    payload = pattern(300_000, seed=1)

    async def main():
        async with connected_pair(family, lambda: Recorder(eof_keep_open=True),
                                  Recorder) as pair:
            c, s = pair.cproto, pair.sproto
            ct = pair.ctransport
            for i in range(0, len(payload), 7000):
                ct.write(payload[i:i + 7000])
            assert ct.can_write_eof()
            ct.write_eof()
            await asyncio.wait_for(s.eof, 10)
            assert bytes(s.data) == payload
            # eof_received returned True: the server may still answer
            s.transport.write(b'got %d' % len(s.data))
            s.transport.close()
            await asyncio.wait_for(c.lost, 10)
            await asyncio.wait_for(s.lost, 10)
            assert bytes(c.data) == b'got %d' % len(payload)
            assert c.lost_exc is None and s.lost_exc is None
            check_callback_order(s.events, eof=True)
            check_callback_order(c.events, eof=True)
            await spin(5)
            assert c.lost_calls == 1 and s.lost_calls == 1

    run(kind, main())


def test_eof_received_returning_false_closes_the_transport(kind, family):
    async def main():
        async with connected_pair(family, Recorder, Recorder) as pair:
            c, s = pair.cproto, pair.sproto
            pair.ctransport.write(b'abc')
            pair.ctransport.write_eof()
            await asyncio.wait_for(s.lost, 10)
            assert s.lost_exc is None
            assert s.transport.is_closing()
            assert bytes(s.data) == b'abc'
            check_callback_order(s.events, eof=True)
            # the server's close reaches the client as EOF
            await asyncio.wait_for(c.lost, 10)
            check_callback_order(c.events, eof=True)
            assert c.data == b''

    run(kind, main())


def test_connection_lost_once_whatever_the_closing_calls(kind, family):
    async def main():
        async with connected_pair(family, Recorder, Recorder) as pair:
            c, s = pair.cproto, pair.sproto
            t = pair.ctransport
            assert not t.is_closing()
            t.close()
            assert t.is_closing()
            # connection_lost comes later, from the loop, not from close()
            assert c.lost_calls == 0
            t.close()
            t.abort()
            await asyncio.wait_for(c.lost, 10)
            await asyncio.wait_for(s.lost, 10)
            await spin(10)
            assert c.lost_calls == 1
            assert c.lost_exc is None
            assert s.lost_calls == 1
            check_callback_order(c.events, eof=False)
            check_callback_order(s.events, eof=True)

    run(kind, main())


# ---------------------------------------------------------------- writing

def test_write_and_writelines_accept_bytes_like(kind, family):
    async def main():
        async with connected_pair(family, Recorder, Recorder) as pair:
            s = pair.sproto
            t = pair.ctransport
            t.write(b'a')
            t.write(bytearray(b'b'))
            t.write(memoryview(b'xcdx')[1:3])
            t.write(b'')
            t.writelines([b'e', bytearray(b'f'), memoryview(b'gh')])
            t.writelines([])
            t.writelines(iter([b'i', b'j']))
            with pytest.raises(TypeError):
                t.write('str is not bytes')
            t.write(b'k')
            await s.wait_bytes(11)
            await spin(5)
            assert bytes(s.data) == b'abcdefghijk'

    run(kind, main())


def test_writelines_many_pieces_keep_order(kind, family):
    payload = pattern(2_000_000, seed=2)

    async def main():
        async with connected_pair(family, Recorder, PausedReader,
                                  small_buffers=True) as pair:
            s = pair.sproto
            st = s.transport
            rng = random.Random(3)
            i = 0
            while i < len(payload):
                pieces = []
                for _ in range(rng.randint(1, 40)):
                    n = rng.randint(1, 5000)
                    pieces.append(payload[i:i + n])
                    i += n
                if rng.random() < 0.5:
                    st.writelines(pieces)
                else:
                    for p in pieces:
                        st.write(p)
            assert st.get_write_buffer_size() > 0
            pair.cproto.transport.resume_reading()
            await pair.cproto.wait_bytes(len(payload))
            assert bytes(pair.cproto.data) == payload
            await until(lambda: st.get_write_buffer_size() == 0, what='flushed')

    run(kind, main())


def test_write_eof(kind, family):
    async def main():
        async with connected_pair(family, lambda: Recorder(eof_keep_open=True),
                                  lambda: Recorder(eof_keep_open=True)) as pair:
            c, s = pair.cproto, pair.sproto
            t = pair.ctransport
            assert t.can_write_eof() is True
            assert s.transport.can_write_eof() is True
            t.write(b'before eof')
            t.write_eof()
            assert not t.is_closing()
            with pytest.raises(RuntimeError):
                t.write(b'after eof')
            await asyncio.wait_for(s.eof, 10)
            assert bytes(s.data) == b'before eof'
            # the other direction is still open
            s.transport.write(b'reply')
            await c.wait_bytes(5)
            assert bytes(c.data) == b'reply'
            s.transport.write_eof()
            await asyncio.wait_for(c.eof, 10)
            # both sides sent EOF; closing both ends the connection cleanly
            t.close()
            s.transport.close()
            await asyncio.wait_for(c.lost, 10)
            await asyncio.wait_for(s.lost, 10)
            assert c.lost_exc is None and s.lost_exc is None
            check_callback_order(c.events, eof=True)
            check_callback_order(s.events, eof=True)

    run(kind, main())


def test_close_flushes_pending_data_then_closes(kind, family):
    payload = pattern(4 << 20, seed=4)

    async def main():
        async with connected_pair(family, Recorder, PausedReader,
                                  small_buffers=True) as pair:
            c, s = pair.cproto, pair.sproto
            st = s.transport
            st.write(payload)
            pending = st.get_write_buffer_size()
            assert pending > 0, 'the kernel took 4 MiB at once; the test needs a backlog'
            st.close()
            assert st.is_closing()
            assert s.lost_calls == 0
            await spin(10, 0.05)
            # the peer has not read: the data is still pending, nothing is lost yet
            assert s.lost_calls == 0
            c.transport.resume_reading()
            await asyncio.wait_for(c.lost, 30)
            assert bytes(c.data) == payload
            assert c.lost_exc is None
            check_callback_order(c.events, eof=True)
            await asyncio.wait_for(s.lost, 10)
            assert s.lost_exc is None
            assert s.lost_calls == 1

    run(kind, main())


def test_abort_discards_pending_data(kind, family):
    payload = pattern(4 << 20, seed=5)

    async def main():
        async with connected_pair(family, Recorder, PausedReader,
                                  small_buffers=True) as pair:
            c, s = pair.cproto, pair.sproto
            st = s.transport
            st.write(payload)
            pending = st.get_write_buffer_size()
            assert pending > 0
            st.abort()
            assert st.is_closing()
            await asyncio.wait_for(s.lost, 10)
            assert s.lost_exc is None
            c.transport.resume_reading()
            await asyncio.wait_for(c.lost, 30)
            # what arrived is a prefix, and the buffered part never went out
            assert len(c.data) <= len(payload) - pending
            assert bytes(c.data) == payload[:len(c.data)]
            await spin(5)
            assert s.lost_calls == 1 and c.lost_calls == 1

    run(kind, main())


# ---------------------------------------------------------------- extra info

def test_extra_info_tcp(kind):
    families = ['tcp'] + (['tcp6'] if has_ipv6_loopback() else [])

    async def main():
        for fam in families:
            async with connected_pair(fam, Recorder, Recorder) as pair:
                ct, st = pair.ctransport, pair.sproto.transport
                csock, ssock = ct.get_extra_info('socket'), st.get_extra_info('socket')
                assert ct.get_extra_info('sockname') == st.get_extra_info('peername')
                assert ct.get_extra_info('peername') == st.get_extra_info('sockname')
                assert ct.get_extra_info('peername')[:2] == \
                    pair.server.sockets[0].getsockname()[:2]
                want_family = socket.AF_INET6 if fam == 'tcp6' else socket.AF_INET
                for t, sk in ((ct, csock), (st, ssock)):
                    assert sk is not None
                    assert sk.family == want_family
                    assert sk.type == socket.SOCK_STREAM
                    assert sk.fileno() >= 0
                    assert sk.getsockname() == t.get_extra_info('sockname')
                    assert sk.getpeername() == t.get_extra_info('peername')
                    # TCP_NODELAY is on, as the stock loop sets it
                    assert sk.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
                assert ct.get_extra_info('no such key') is None
                assert ct.get_extra_info('no such key', 42) == 42

    run(kind, main())


def test_extra_info_unix(kind):
    async def main():
        async with connected_pair('unix', Recorder, Recorder) as pair:
            ct, st = pair.ctransport, pair.sproto.transport
            assert st.get_extra_info('sockname') == pair.path
            assert ct.get_extra_info('peername') == pair.path
            for t in (ct, st):
                sk = t.get_extra_info('socket')
                assert sk.family == socket.AF_UNIX
                assert sk.type == socket.SOCK_STREAM
                assert sk.getsockname() == t.get_extra_info('sockname')

    run(kind, main())


@pytest.mark.parametrize('how', ['reset', 'eof', 'local-close', 'local-abort'])
def test_addresses_still_known_after_connection_lost(kind, how):
    """sockname/peername are the connection's, even when first asked for after
    it ended (the stock transport reads them when it is made)."""
    import struct

    async def main():
        loop = asyncio.get_running_loop()
        factory, sprotos = keeping(Recorder)

        server = await loop.create_server(factory, '127.0.0.1', 0)
        addr = server.sockets[0].getsockname()
        peer = socket.socket()
        try:
            peer.setblocking(False)
            await loop.sock_connect(peer, addr)
            peer_addr = peer.getsockname()
            await until(lambda: sprotos and sprotos[0].transport is not None)
            s = sprotos[0]
            await loop.sock_sendall(peer, b'hello')
            await s.wait_bytes(5)
            if how == 'reset':
                peer.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack('ii', 1, 0))
                peer.close()
            elif how == 'eof':
                peer.close()
            elif how == 'local-close':
                s.transport.close()
            else:
                s.transport.abort()
            await asyncio.wait_for(s.lost, 10)
            # first asked for now, after connection_lost
            assert s.transport.get_extra_info('peername') == peer_addr
            assert s.transport.get_extra_info('sockname') == addr
        finally:
            peer.close()
            server.close()
            await server.wait_closed()

    run(kind, main())


def test_tcp_nodelay_on_every_tcp_transport(kind):
    async def main():
        loop = asyncio.get_running_loop()
        # create_connection / create_server
        async with connected_pair('tcp', Recorder, Recorder) as pair:
            for t in (pair.ctransport, pair.sproto.transport):
                sk = t.get_extra_info('socket')
                assert sk.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
        # connect_accepted_socket, and create_connection(host, port)
        # proto given, as getaddrinfo would: the stock loop sets TCP_NODELAY
        # only on sockets whose proto is IPPROTO_TCP
        lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        try:
            lsock.bind(('127.0.0.1', 0))
            lsock.listen()
            lsock.setblocking(False)
            conn_task = asyncio.ensure_future(
                loop.create_connection(Recorder, *lsock.getsockname()))
            accepted, _ = await loop.sock_accept(lsock)
            st, sp = await loop.connect_accepted_socket(Recorder, accepted)
            ct, cp = await conn_task
            try:
                for t in (st, ct):
                    sk = t.get_extra_info('socket')
                    assert sk.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
            finally:
                st.close()
                ct.close()
                await asyncio.wait_for(sp.lost, 10)
                await asyncio.wait_for(cp.lost, 10)
        finally:
            lsock.close()

    run(kind, main())


# ---------------------------------------------------------------- reading flow control

def test_pause_and_resume_reading(kind, family):
    async def main():
        async with connected_pair(family, Recorder, Recorder) as pair:
            s = pair.sproto
            st = s.transport
            assert st.is_reading()
            st.pause_reading()
            assert not st.is_reading()
            st.pause_reading()  # no-op when paused
            assert not st.is_reading()
            for piece in (b'one', b'two', b'three'):
                pair.ctransport.write(piece)
                await spin(5)
            await spin(20, 0.05)
            assert s.data == b''
            assert 'data_received' not in s.events
            st.resume_reading()
            assert st.is_reading()
            st.resume_reading()  # no-op when reading
            await s.wait_bytes(11)
            assert bytes(s.data) == b'onetwothree'
            st.close()
            assert not st.is_reading()

    run(kind, main())


@pytest.mark.parametrize('side', ['server', 'client'])
def test_pause_reading_in_connection_made(kind, family, side):
    if kind == 'stock' and sys.version_info < (3, 11):
        pytest.skip('the stock transport of 3.10 starts reading after connection_made '
                    'even if it paused reading there')

    class PauseAtOnce(Recorder):
        def connection_made(self, transport):
            super().connection_made(transport)
            transport.pause_reading()

    async def main():
        sf, cf = (PauseAtOnce, Recorder) if side == 'server' else (Recorder, PauseAtOnce)
        async with connected_pair(family, sf, cf) as pair:
            paused, other = ((pair.sproto, pair.cproto) if side == 'server'
                             else (pair.cproto, pair.sproto))
            assert not paused.transport.is_reading()
            other.transport.write(b'not yet')
            await spin(20, 0.05)
            assert paused.data == b''
            paused.transport.resume_reading()
            await paused.wait_bytes(7)

    run(kind, main())


class PauseEachTime(Recorder):
    """Pauses reading in every data_received; the test resumes it later."""

    def __init__(self):
        super().__init__()
        self.violations = 0
        self.paused_reading = False
        self.calls = 0

    def data_received(self, data):
        if self.paused_reading:
            self.violations += 1
        self.calls += 1
        super().data_received(data)
        self.transport.pause_reading()
        self.paused_reading = True
        self.loop.call_later(0.001, self.resume)

    def resume(self):
        if not self.transport.is_closing():
            self.paused_reading = False
            self.transport.resume_reading()


def test_no_data_received_while_paused_from_data_received(kind, family):
    payload = pattern(3 << 20, seed=6)

    async def main():
        async with connected_pair(family, PauseEachTime, Recorder) as pair:
            s = pair.sproto
            t = pair.ctransport
            rng = random.Random(7)
            i = 0
            while i < len(payload):
                n = rng.randint(1, 200_000)
                t.write(payload[i:i + n])
                i += n
            await s.wait_bytes(len(payload))
            assert bytes(s.data) == payload
            assert s.violations == 0

    run(kind, main())


class CloseOnFirstData(Recorder):
    def data_received(self, data):
        super().data_received(data)
        self.transport.close()


def test_no_data_received_after_close(kind, family):
    async def main():
        async with connected_pair(family, CloseOnFirstData, Recorder) as pair:
            s = pair.sproto
            t = pair.ctransport
            t.write(b'first')
            await until(lambda: s.events.count('data_received') >= 1)
            for _ in range(20):
                if t.is_closing():
                    break
                t.write(b'more' * 1000)
                await spin(2)
            await asyncio.wait_for(s.lost, 10)
            await spin(10, 0.02)
            assert s.events.count('data_received') == 1
            assert s.lost_calls == 1
            assert s.events[-1] == 'connection_lost'

    run(kind, main())


# ---------------------------------------------------------------- writing flow control

def test_write_buffer_limits(kind, family):
    async def main():
        async with connected_pair(family, Recorder, Recorder) as pair:
            t = pair.ctransport
            # asyncio's defaults: high 64 KiB, low a quarter of it
            assert t.get_write_buffer_limits() == (16384, 65536)
            t.set_write_buffer_limits(high=1000, low=100)
            assert t.get_write_buffer_limits() == (100, 1000)
            t.set_write_buffer_limits(high=800)
            assert t.get_write_buffer_limits() == (200, 800)
            t.set_write_buffer_limits(low=50)
            assert t.get_write_buffer_limits() == (50, 200)
            t.set_write_buffer_limits()
            assert t.get_write_buffer_limits() == (16384, 65536)
            t.set_write_buffer_limits(high=0)
            assert t.get_write_buffer_limits() == (0, 0)
            with pytest.raises(ValueError):
                t.set_write_buffer_limits(high=10, low=20)
            with pytest.raises(ValueError):
                t.set_write_buffer_limits(high=-1)
            assert t.get_write_buffer_limits() == (0, 0)

    run(kind, main())


class Firehose(Recorder):
    """Writes `chunk` again and again while it is allowed to (and until `total`)."""

    def __init__(self, chunk=16384, total=None, limits=None):
        super().__init__()
        self.chunk = b'z' * chunk
        self.total = total
        self.limits = limits
        self.written = 0
        self.writes_while_paused = 0
        self.size_at_pause = []
        self.size_at_resume = []

    def connection_made(self, transport):
        super().connection_made(transport)
        if self.limits:
            transport.set_write_buffer_limits(*self.limits)

    def start(self):
        self.pump()

    def pump(self):
        while not self.paused and not self.transport.is_closing():
            if self.total is not None and self.written >= self.total:
                self.transport.close()
                return
            self.transport.write(self.chunk)
            self.written += len(self.chunk)

    def pause_writing(self):
        self.size_at_pause.append(self.transport.get_write_buffer_size())
        super().pause_writing()

    def resume_writing(self):
        self.size_at_resume.append(self.transport.get_write_buffer_size())
        super().resume_writing()
        self.loop.call_soon(self.pump)


def test_pause_and_resume_writing_follow_the_water_marks(kind, family):
    high, low = 65536, 16384
    total = 8 << 20

    async def main():
        async with connected_pair(family, lambda: Firehose(total=total, limits=(high, low)),
                                  PausedReader, small_buffers=True) as pair:
            s, c = pair.sproto, pair.cproto
            s.start()
            # the peer is not reading: the firehose must have been paused
            assert s.pauses == 1
            assert s.size_at_pause[0] > high
            assert s.size_at_pause[0] <= high + len(s.chunk)
            await spin(20, 0.05)
            assert s.pauses == 1 and s.resumes == 0
            assert s.transport.get_write_buffer_size() <= high + len(s.chunk)
            c.transport.resume_reading()
            await asyncio.wait_for(c.lost, 60)
            assert len(c.data) == total
            assert s.resumes >= 1
            assert all(size <= low for size in s.size_at_resume), s.size_at_resume
            assert all(size > high for size in s.size_at_pause), s.size_at_pause
            assert s.resumes == s.pauses

    run(kind, main())


# ---------------------------------------------------------------- protocols

def test_set_protocol_and_get_protocol(kind, family):
    async def main():
        async with connected_pair(family, Recorder, Recorder) as pair:
            old = pair.sproto
            st = old.transport
            assert st.get_protocol() is old
            pair.ctransport.write(b'to old')
            await old.wait_bytes(6)
            new = Recorder()
            st.set_protocol(new)
            assert st.get_protocol() is new
            pair.ctransport.write(b'to new')
            await new.wait_bytes(6)
            assert bytes(old.data) == b'to old'
            assert bytes(new.data) == b'to new'
            pair.ctransport.close()
            await asyncio.wait_for(new.lost, 10)
            assert new.events == ['data_received', 'eof_received', 'connection_lost']
            assert 'connection_lost' not in old.events

    run(kind, main())


class Buffered(asyncio.BufferedProtocol):
    """A BufferedProtocol with buffers of random sizes, some of them views."""

    def __init__(self, seed):
        loop = asyncio.get_running_loop()
        self.rng = random.Random(seed)
        self.events = []
        self.data = bytearray()
        self.store = bytearray(1 << 16)
        self.current = None
        self.lost = loop.create_future()
        self.eof = loop.create_future()
        self.bad_sizes = []

    def connection_made(self, transport):
        self.transport = transport
        self.events.append('connection_made')

    def get_buffer(self, sizehint):
        self.events.append('get_buffer')
        n = self.rng.choice([1, 2, 7, 100, 4096, 65536])
        if self.rng.random() < 0.5:
            # a view into a bigger buffer, at an offset
            off = self.rng.randrange(0, len(self.store) - n + 1)
            self.current = (memoryview(self.store)[off:off + n], n)
        else:
            self.current = (bytearray(n), n)
        return self.current[0]

    def buffer_updated(self, nbytes):
        self.events.append('buffer_updated')
        buf, n = self.current
        if not 0 < nbytes <= n:
            self.bad_sizes.append((nbytes, n))
        self.data += bytes(buf[:nbytes])

    def eof_received(self):
        self.events.append('eof_received')
        self.eof.set_result(None)

    def connection_lost(self, exc):
        self.events.append('connection_lost')
        self.lost.set_result(exc)


def test_buffered_protocol_gets_exact_bytes(kind, family):
    payload = pattern(3 << 20, seed=8)

    async def main():
        async with connected_pair(family, lambda: Buffered(9), Recorder) as pair:
            s = pair.sproto
            t = pair.ctransport
            rng = random.Random(10)
            i = 0
            while i < len(payload):
                n = rng.randint(1, 100_000)
                t.write(payload[i:i + n])
                i += n
                if rng.random() < 0.1:
                    await asyncio.sleep(0)
            t.write_eof()
            await asyncio.wait_for(s.lost, 30)
            assert s.bad_sizes == []
            assert bytes(s.data) == payload
            ev = s.events
            assert ev[0] == 'connection_made'
            assert ev[-2:] == ['eof_received', 'connection_lost']
            body = ev[1:-2]
            # get_buffer, then buffer_updated for that buffer (a buffer may be
            # asked for and not used, e.g. before EOF)
            for i, e in enumerate(body):
                if e == 'buffer_updated':
                    assert body[i - 1] == 'get_buffer', ev[:50]
            assert ev.count('connection_lost') == 1

    run(kind, main())


def test_buffered_protocol_on_the_client_side(kind, family):
    payload = pattern(1 << 20, seed=11)

    class Sender(Recorder):
        def connection_made(self, transport):
            super().connection_made(transport)
            transport.write(payload)
            transport.close()

    async def main():
        async with connected_pair(family, Sender, lambda: Buffered(12)) as pair:
            c = pair.cproto
            await asyncio.wait_for(c.lost, 30)
            assert bytes(c.data) == payload
            assert c.bad_sizes == []

    run(kind, main())


# ---------------------------------------------------------------- user callbacks that raise

class Oops(Exception):
    pass


class Raiser(Recorder):
    """Raises Oops from the callback named `where` (once), otherwise records."""

    def __init__(self, where, on_made=None):
        super().__init__()
        self.where = where
        self.on_made = on_made
        self.raised = None

    def _maybe_raise(self, name):
        if self.where == name and self.raised is None:
            self.raised = Oops(name)
            raise self.raised

    def connection_made(self, transport):
        super().connection_made(transport)
        if self.on_made:
            self.on_made(self)
        self._maybe_raise('connection_made')

    def data_received(self, data):
        super().data_received(data)
        self._maybe_raise('data_received')

    def eof_received(self):
        super().eof_received()
        self._maybe_raise('eof_received')

    def pause_writing(self):
        super().pause_writing()
        self._maybe_raise('pause_writing')

    def resume_writing(self):
        super().resume_writing()
        self._maybe_raise('resume_writing')

    def connection_lost(self, exc):
        super().connection_lost(exc)
        self._maybe_raise('connection_lost')


def _close_with_pending_output(p):
    # output queued in this step, then close(): connection_lost comes once it is flushed
    p.transport.write(b'x' * 100)
    p.transport.close()


def _close_with_a_backlog(p):
    # more than the kernel takes at once, then close(): connection_lost comes
    # from the step that sends the last byte
    p.transport.get_extra_info('socket').setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    p.transport.write(b'y' * (512 << 10))
    p.transport.close()


CALLBACK_CASES = {
    # name: (server protocol factory, what the peer does, does the connection end with exc)
    'connection_made': (lambda: Raiser('connection_made'), 'talk-only', False),
    'data_received': (lambda: Raiser('data_received'), 'talk', True),
    'eof_received': (lambda: Raiser('eof_received'), 'eof', True),
    'connection_lost-close': (lambda: Raiser('connection_lost', lambda p: p.transport.close()),
                              'read', False),
    'connection_lost-flush': (lambda: Raiser('connection_lost', _close_with_pending_output),
                              'read', False),
    'connection_lost-backlog': (lambda: Raiser('connection_lost', _close_with_a_backlog),
                                'read', False),
    'connection_lost-abort': (lambda: Raiser('connection_lost', lambda p: p.transport.abort()),
                              'read', False),
    'pause_writing': (lambda: Raiser('pause_writing', _close_with_a_backlog), 'read', False),
    'resume_writing': (lambda: Raiser('resume_writing', _close_with_a_backlog), 'read', False),
}


@pytest.mark.parametrize('case', list(CALLBACK_CASES))
def test_exception_in_a_protocol_callback_goes_to_the_handler(kind, case):
    """The loop survives, the exception handler gets the exception, and the
    server goes on serving, whichever protocol callback raised."""
    factory, peer_action, ends_with_exc = CALLBACK_CASES[case]

    async def main():
        from net_helpers import loop_errors
        loop = asyncio.get_running_loop()
        sfactory, sprotos = keeping(factory)

        server = await loop.create_server(sfactory, '127.0.0.1', 0)
        addr = server.sockets[0].getsockname()
        peer = socket.socket()
        try:
            peer.setblocking(False)
            await loop.sock_connect(peer, addr)
            await until(lambda: sprotos and sprotos[0].transport is not None)
            p = sprotos[0]
            if peer_action in ('talk', 'talk-only'):
                await loop.sock_sendall(peer, b'hello')
            elif peer_action == 'eof':
                peer.shutdown(socket.SHUT_WR)
            if peer_action == 'talk-only':
                # the connection lives on after connection_made raised
                await p.wait_bytes(5)
            else:
                # read whatever comes until EOF, so that every close can complete
                while await asyncio.wait_for(loop.sock_recv(peer, 1 << 20), 30):
                    pass
                await asyncio.wait_for(p.lost, 10)
            await until(lambda: p.raised is not None, what=f'{case} to be called')
            await until(lambda: any(c.get('exception') is p.raised
                                    for c in loop_errors(loop)),
                        what='the exception handler to get the exception')
            if ends_with_exc:
                assert p.lost_exc is p.raised
            # the loop and the server carry on
            tr, cp = await loop.create_connection(Recorder, *addr)
            tr.close()
            await asyncio.wait_for(cp.lost, 10)
        finally:
            peer.close()
            for p in sprotos:
                if p.transport is not None and not p.transport.is_closing():
                    p.transport.abort()
            server.close()
            await server.wait_closed()

    run(kind, main(), allow_loop_errors=True)


class BufferedRaiser(asyncio.BufferedProtocol):
    def __init__(self, where):
        loop = asyncio.get_running_loop()
        self.where = where
        self.raised = None
        self.transport = None
        self.lost = loop.create_future()
        self.buf = bytearray(100)

    def connection_made(self, transport):
        self.transport = transport

    def get_buffer(self, sizehint):
        if self.where == 'get_buffer' and self.raised is None:
            self.raised = Oops('get_buffer')
            raise self.raised
        if self.where == 'get_buffer-empty' and self.raised is None:
            self.raised = True
            return bytearray()
        return self.buf

    def buffer_updated(self, nbytes):
        if self.where == 'buffer_updated' and self.raised is None:
            self.raised = Oops('buffer_updated')
            raise self.raised

    def connection_lost(self, exc):
        self.lost.set_result(exc)


@pytest.mark.parametrize('where', ['get_buffer', 'get_buffer-empty', 'buffer_updated'])
def test_exception_in_a_buffered_protocol_goes_to_the_handler(kind, where):
    async def main():
        from net_helpers import loop_errors
        loop = asyncio.get_running_loop()
        sfactory, sprotos = keeping(lambda: BufferedRaiser(where))

        server = await loop.create_server(sfactory, '127.0.0.1', 0)
        addr = server.sockets[0].getsockname()
        peer = socket.socket()
        try:
            peer.setblocking(False)
            await loop.sock_connect(peer, addr)
            await loop.sock_sendall(peer, b'hello')
            # the connection ends, with an error on the server's side
            await until(lambda: sprotos, what='accepted')
            p = sprotos[0]
            exc = await asyncio.wait_for(p.lost, 10)
            if where == 'get_buffer-empty':
                assert isinstance(exc, RuntimeError)
            else:
                assert exc is p.raised
            assert any(c.get('exception') is exc for c in loop_errors(loop))
            # the loop and the server carry on
            tr, cp = await loop.create_connection(Recorder, *addr)
            tr.close()
            await asyncio.wait_for(cp.lost, 10)
        finally:
            peer.close()
            server.close()
            await server.wait_closed()

    run(kind, main(), allow_loop_errors=True)


def test_protocol_factory_that_raises_does_not_stop_the_server(kind):
    # (the stock loop reports this only in debug mode, so the handler is not checked)
    async def main():
        loop = asyncio.get_running_loop()
        calls = []

        def sfactory():
            calls.append(1)
            if len(calls) == 1:
                raise Oops('factory')
            return Recorder()

        server = await loop.create_server(sfactory, '127.0.0.1', 0)
        addr = server.sockets[0].getsockname()
        peer = socket.socket()
        try:
            peer.setblocking(False)
            await loop.sock_connect(peer, addr)
            await until(lambda: calls, what='the factory to be called')
            tr, cp = await loop.create_connection(Recorder, *addr)
            tr.close()
            await asyncio.wait_for(cp.lost, 10)
            assert len(calls) == 2
        finally:
            peer.close()
            server.close()
            await server.wait_closed()
        # the stock loop leaves the accepted socket to the garbage collector
        import gc
        gc.collect()

    run(kind, main(), allow_loop_errors=True)


# ---------------------------------------------------------------- odds and ends

def test_write_after_the_connection_is_lost_is_ignored(kind, family):
    async def main():
        async with connected_pair(family, Recorder, Recorder) as pair:
            s = pair.sproto
            pair.ctransport.abort()
            await asyncio.wait_for(s.lost, 10)
            # the stock loop counts (and after a few, logs) such writes; it never raises
            # (writelines is left out: the stock 3.12 one raises TypeError here)
            for _ in range(7):
                s.transport.write(b'into the void')
            assert s.transport.is_closing()
            await spin(5)
            assert s.lost_calls == 1

    run(kind, main())


def test_lowering_the_high_water_mark_pauses_at_once(kind, family):
    async def main():
        async with connected_pair(family, Recorder, PausedReader, small_buffers=True) as pair:
            s = pair.sproto
            st = s.transport
            st.set_write_buffer_limits(high=4 << 20)
            st.write(b'q' * (1 << 20))
            await spin(5)
            pending = st.get_write_buffer_size()
            assert pending > 0 and s.pauses == 0
            # now the buffer is over the new mark: pause_writing, right away
            st.set_write_buffer_limits(high=pending // 2)
            assert s.pauses == 1
            # resume_writing comes once the peer reads and the buffer drains
            pair.cproto.transport.resume_reading()
            await pair.cproto.wait_bytes(1 << 20)
            await until(lambda: s.resumes == 1, what='resume_writing')
            assert st.get_write_buffer_size() == 0

    run(kind, main())


def test_data_arriving_during_sendfile_is_delivered(kind, tmp_path):
    payload = pattern(3 << 20, seed=21)
    path = tmp_path / 'f.bin'
    path.write_bytes(payload)

    async def main():
        loop = asyncio.get_running_loop()
        async with connected_pair('tcp', Recorder, Recorder, small_buffers=True) as pair:
            c, s = pair.cproto, pair.sproto
            with open(path, 'rb') as f:
                task = asyncio.ensure_future(loop.sendfile(c.transport, f))
                # the server talks back while the client's sendfile runs
                for i in range(20):
                    s.transport.write(b'msg%02d;' % i)
                    await asyncio.sleep(0.001)
                assert await asyncio.wait_for(task, 60) == len(payload)
            await s.wait_bytes(len(payload))
            await c.wait_bytes(20 * 6)
            assert bytes(s.data) == payload
            assert bytes(c.data) == b''.join(b'msg%02d;' % i for i in range(20))
            # and the transport works both ways afterwards
            assert c.transport.is_reading()
            c.transport.write(b'after')
            await s.wait_bytes(len(payload) + 5)
            s.transport.write(b'back')
            await c.wait_bytes(20 * 6 + 4)

    run(kind, main())
