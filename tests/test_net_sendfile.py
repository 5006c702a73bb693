"""loop.sendfile() on stream transports and loop.sock_sendfile(), exact bytes
received; on evioloop and the stock loop."""
import asyncio
import os
import socket

import pytest

from net_helpers import LOOP_KINDS, Recorder, connected_pair, pattern, recv_all, run

SIZE = 3 * (1 << 20) + 12345


@pytest.fixture(params=LOOP_KINDS)
def kind(request):
    return request.param


@pytest.fixture(scope='module')
def content():
    return pattern(SIZE, seed=42)


@pytest.fixture
def datafile(tmp_path, content):
    path = tmp_path / 'data.bin'
    path.write_bytes(content)
    with open(path, 'rb') as f:
        yield f


CASES = [
    # offset, count
    (0, None),
    (0, SIZE),
    (1234, 1_000_000),
    (SIZE - 10, None),
    (SIZE - 10, 100),   # count past the end: up to the end
    (0, 1),
]


@pytest.mark.parametrize('family', ['tcp', 'unix'])
@pytest.mark.parametrize('fallback', [True, False], ids=['fallback-ok', 'native-only'])
@pytest.mark.parametrize('offset,count', CASES)
def test_loop_sendfile_exact_bytes(kind, family, fallback, offset, count, datafile, content):
    want = content[offset:offset + count if count is not None else None]

    async def main():
        loop = asyncio.get_running_loop()
        async with connected_pair(family, Recorder, Recorder) as pair:
            t = pair.ctransport
            sent = await loop.sendfile(t, datafile, offset, count, fallback=fallback)
            assert sent == len(want)
            # the file position ends after what was sent
            assert datafile.tell() == offset + sent
            t.close()
            await asyncio.wait_for(pair.sproto.lost, 30)
            assert len(pair.sproto.data) == len(want)
            assert bytes(pair.sproto.data) == want

    run(kind, main())


@pytest.mark.parametrize('family', ['tcp', 'unix'])
def test_loop_sendfile_keeps_order_with_writes(kind, family, datafile, content):
    """Data written before sendfile() goes first, data written after it goes after."""

    async def main():
        loop = asyncio.get_running_loop()
        async with connected_pair(family, Recorder, Recorder, small_buffers=True) as pair:
            t = pair.ctransport
            head = b'H' * 300_000      # more than the kernel takes at once
            t.write(head)
            sent = await loop.sendfile(t, datafile, 10, 2_000_000)
            assert sent == 2_000_000
            t.write(b'tail')
            t.write_eof()
            await asyncio.wait_for(pair.sproto.lost, 30)
            assert bytes(pair.sproto.data) == head + content[10:2_000_010] + b'tail'
            # after sendfile the transport is usable as before
            assert pair.sproto.events.count('eof_received') == 1

    run(kind, main())


def test_loop_sendfile_to_a_slow_reader(kind, datafile, content):
    """sendfile() waits for a reader that pauses, and loses nothing."""

    class SlowReader(Recorder):
        def data_received(self, data):
            super().data_received(data)
            self.transport.pause_reading()
            self.loop.call_later(0.002, self.transport.resume_reading)

    async def main():
        loop = asyncio.get_running_loop()
        async with connected_pair('tcp', SlowReader, Recorder, small_buffers=True) as pair:
            t = pair.ctransport
            sent = await loop.sendfile(t, datafile)
            assert sent == SIZE
            await pair.sproto.wait_bytes(SIZE)
            assert bytes(pair.sproto.data) == content

    run(kind, main(), timeout=120)


def test_loop_sendfile_argument_errors(kind, datafile):
    async def main():
        loop = asyncio.get_running_loop()
        async with connected_pair('tcp', Recorder, Recorder) as pair:
            t = pair.ctransport
            with pytest.raises(ValueError):
                await loop.sendfile(t, datafile, -1)
            with pytest.raises(ValueError):
                await loop.sendfile(t, datafile, 0, 0)
            with pytest.raises(TypeError):
                await loop.sendfile(t, datafile, 0, 'x')
            # a closing transport is refused
            t.close()
            with pytest.raises(RuntimeError):
                await loop.sendfile(t, datafile)

    run(kind, main())


@pytest.mark.parametrize('offset,count', CASES)
def test_sock_sendfile_exact_bytes(kind, offset, count, datafile, content):
    want = content[offset:offset + count if count is not None else None]

    async def main():
        loop = asyncio.get_running_loop()
        lsock = socket.socket()
        lsock.bind(('127.0.0.1', 0))
        lsock.listen()
        lsock.setblocking(False)
        csock = socket.socket()
        try:
            csock.setblocking(False)
            await loop.sock_connect(csock, lsock.getsockname())
            ssock, _ = await loop.sock_accept(lsock)
            with ssock:
                ssock.setblocking(False)
                reader = asyncio.ensure_future(recv_all(loop, ssock))
                sent = await loop.sock_sendfile(csock, datafile, offset, count)
                assert sent == len(want)
                assert datafile.tell() == offset + sent
                csock.shutdown(socket.SHUT_WR)
                got = await asyncio.wait_for(reader, 30)
                assert got == want
        finally:
            csock.close()
            lsock.close()

    run(kind, main())


def test_sock_sendfile_unix_and_no_fallback(kind, datafile, content, tmp_path):
    async def main():
        loop = asyncio.get_running_loop()
        a, b = socket.socketpair()
        try:
            a.setblocking(False)
            b.setblocking(False)
            reader = asyncio.ensure_future(recv_all(loop, b))
            sent = await loop.sock_sendfile(a, datafile, 5, None, fallback=False)
            assert sent == SIZE - 5
            a.shutdown(socket.SHUT_WR)
            assert await asyncio.wait_for(reader, 30) == content[5:]
        finally:
            a.close()
            b.close()

    run(kind, main())


def test_sock_sendfile_rejects_non_stream_sockets_and_text_files(kind, datafile, tmp_path):
    async def main():
        loop = asyncio.get_running_loop()
        dgram = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        a, b = socket.socketpair()
        text = open(tmp_path / 'text.txt', 'w+')
        try:
            dgram.setblocking(False)
            with pytest.raises(ValueError):
                await loop.sock_sendfile(dgram, datafile)
            a.setblocking(False)
            with pytest.raises(ValueError):
                await loop.sock_sendfile(a, text)
        finally:
            dgram.close()
            a.close()
            b.close()
            text.close()

    run(kind, main())


def test_sendfile_of_an_empty_range_at_the_end(kind, datafile):
    async def main():
        loop = asyncio.get_running_loop()
        async with connected_pair('tcp', Recorder, Recorder) as pair:
            end = os.fstat(datafile.fileno()).st_size
            sent = await loop.sendfile(pair.ctransport, datafile, end)
            assert sent == 0
            pair.ctransport.write(b'still works')
            await pair.sproto.wait_bytes(11)

    run(kind, main())


def test_loop_sendfile_when_the_peer_resets(kind, tmp_path):
    """sendfile() raises, and the transport still ends once, with nothing leaked."""
    import struct
    path = tmp_path / 'big.bin'
    path.write_bytes(pattern(32 << 20, seed=3))

    async def main():
        loop = asyncio.get_running_loop()
        lsock = socket.socket()
        csock = socket.socket()
        peer = None
        try:
            lsock.bind(('127.0.0.1', 0))
            lsock.listen()
            lsock.setblocking(False)
            csock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
            csock.setblocking(False)
            await loop.sock_connect(csock, lsock.getsockname())
            peer, _ = await loop.sock_accept(lsock)
            tr, p = await loop.create_connection(Recorder, sock=csock)
            with open(path, 'rb') as f:
                task = asyncio.ensure_future(loop.sendfile(tr, f))
                got = 0
                # read a little, then reset while most of the 32 MiB is unsent
                while got < (64 << 10):
                    got += len(await asyncio.wait_for(loop.sock_recv(peer, 65536), 10))
                peer.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack('ii', 1, 0))
                peer.close()
                with pytest.raises(ConnectionError):
                    await asyncio.wait_for(task, 10)
            if not tr.is_closing():
                tr.close()
            await asyncio.wait_for(p.lost, 10)
            await asyncio.sleep(0.01)
            assert p.lost_calls == 1
            assert p.events[0] == 'connection_made' and p.events[-1] == 'connection_lost'
        finally:
            lsock.close()
            csock.close()
            if peer is not None:
                peer.close()

    run(kind, main())
