"""The loop's sock_* methods: behaviour and argument errors equal to the
stock loop's (the `loop` fixture runs every test on both)."""
import asyncio
import io
import os
import socket
import ssl
import sys
import tempfile

import pytest

needs_311 = pytest.mark.skipif(sys.version_info < (3, 11),
                               reason='sock_recvfrom/_into and sock_sendto are new in 3.11')


def tcp_pair():
    with socket.create_server(('127.0.0.1', 0)) as lsock:
        c = socket.create_connection(lsock.getsockname())
        s, _ = lsock.accept()
    c.setblocking(False)
    s.setblocking(False)
    return c, s


def udp_pair():
    a = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    b = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    a.bind(('127.0.0.1', 0))
    b.bind(('127.0.0.1', 0))
    a.setblocking(False)
    b.setblocking(False)
    return a, b


@pytest.fixture
def pair():
    a, b = socket.socketpair()
    a.setblocking(False)
    b.setblocking(False)
    yield a, b
    a.close()
    b.close()


@pytest.fixture
def tcp():
    a, b = tcp_pair()
    yield a, b
    a.close()
    b.close()


@pytest.fixture
def udp():
    a, b = udp_pair()
    yield a, b
    a.close()
    b.close()


def outcome(loop, coro):
    try:
        return ('ok', loop.run_until_complete(coro))
    except Exception as exc:  # noqa: BLE001 - compared with the stock loop
        return (type(exc).__name__, str(exc))


def no_watched_fds(loop):
    # the stock loop watches its self-pipe; evioloop makes one only for signals
    ssock = getattr(loop, '_ssock', None)
    own = {ssock.fileno()} if ssock is not None else set()
    return set(loop._selector.get_map()) - own == set()


# ---------------------------------------------------------------- behaviour

def test_sock_recv_waits_for_data(loop, pair):
    a, b = pair
    loop.call_later(0.02, b.send, b'late data')
    assert loop.run_until_complete(loop.sock_recv(a, 100)) == b'late data'
    b.send(b'0123456789')
    assert loop.run_until_complete(loop.sock_recv(a, 4)) == b'0123'
    assert loop.run_until_complete(loop.sock_recv(a, 100)) == b'456789'
    assert no_watched_fds(loop)


def test_sock_recv_eof(loop, pair):
    a, b = pair
    b.close()
    assert loop.run_until_complete(loop.sock_recv(a, 100)) == b''


def test_sock_recv_into(loop, pair):
    a, b = pair
    buf = bytearray(8)
    loop.call_later(0.01, b.send, b'abc')
    n = loop.run_until_complete(loop.sock_recv_into(a, buf))
    assert n == 3
    assert buf[:3] == b'abc'
    b.send(b'0123456789')
    n = loop.run_until_complete(loop.sock_recv_into(a, memoryview(buf)[2:6]))
    assert (n, bytes(buf)) == (4, b'ab0123\x00\x00')


def test_sock_recv_cancelled_leaves_no_watch(loop, pair):
    a, b = pair

    async def main():
        t = asyncio.ensure_future(loop.sock_recv(a, 10))
        await asyncio.sleep(0.01)
        t.cancel()
        with pytest.raises(asyncio.CancelledError):
            await t
        await asyncio.sleep(0)
        b.send(b'still here')
        return await loop.sock_recv(a, 100)

    assert loop.run_until_complete(main()) == b'still here'
    assert no_watched_fds(loop)


def test_sock_sendall_large(loop, tcp):
    a, b = tcp
    data = os.urandom(4 * 1024 * 1024)

    async def reader():
        chunks = []
        n = 0
        while n < len(data):
            chunk = await loop.sock_recv(b, 256 * 1024)
            assert chunk
            chunks.append(chunk)
            n += len(chunk)
        return b''.join(chunks)

    async def main():
        r = asyncio.ensure_future(reader())
        sent = await loop.sock_sendall(a, data)
        return sent, await asyncio.wait_for(r, 30)

    sent, got = loop.run_until_complete(main())
    assert sent is None
    assert got == data
    assert no_watched_fds(loop)


def test_sock_sendall_memoryview_and_empty(loop, pair):
    a, b = pair
    assert loop.run_until_complete(loop.sock_sendall(a, memoryview(b'xyz')[1:])) is None
    assert loop.run_until_complete(loop.sock_sendall(a, b'')) is None
    assert loop.run_until_complete(loop.sock_recv(b, 100)) == b'yz'


def test_sock_sendall_to_a_closed_peer(loop, pair):
    a, b = pair
    b.close()
    res = outcome(loop, loop.sock_sendall(a, b'x' * 1_000_000))
    assert res[0] in ('BrokenPipeError', 'ConnectionResetError')


def test_sock_connect_and_accept(loop):
    lsock = socket.socket()
    lsock.bind(('127.0.0.1', 0))
    lsock.listen()
    lsock.setblocking(False)
    client = socket.socket()
    client.setblocking(False)
    try:
        async def main():
            acc = asyncio.ensure_future(loop.sock_accept(lsock))
            await asyncio.sleep(0.01)
            r = await loop.sock_connect(client, lsock.getsockname())
            conn, addr = await asyncio.wait_for(acc, 5)
            return r, conn, addr

        r, conn, addr = loop.run_until_complete(main())
        with conn:
            assert r is None
            assert addr == client.getsockname()
            assert conn.getblocking() is False
            loop.run_until_complete(loop.sock_sendall(conn, b'ping'))
            assert loop.run_until_complete(loop.sock_recv(client, 10)) == b'ping'
        assert no_watched_fds(loop)
    finally:
        client.close()
        lsock.close()


def test_sock_connect_resolves_names(loop):
    with socket.create_server(('127.0.0.1', 0)) as lsock:
        port = lsock.getsockname()[1]
        with socket.socket() as client:
            client.setblocking(False)
            loop.run_until_complete(loop.sock_connect(client, ('localhost', port)))
            assert client.getpeername() == ('127.0.0.1', port)
            conn, _ = lsock.accept()
            conn.close()


def test_sock_connect_refused(loop):
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        addr = s.getsockname()
    with socket.socket() as client:
        client.setblocking(False)
        res = outcome(loop, loop.sock_connect(client, addr))
    assert res[0] == 'ConnectionRefusedError'
    assert no_watched_fds(loop)


def test_sock_connect_unix_missing_path(loop, tmp_path):
    with socket.socket(socket.AF_UNIX) as client:
        client.setblocking(False)
        res = outcome(loop, loop.sock_connect(client, str(tmp_path / 'nope')))
    assert res[0] == 'FileNotFoundError'


@needs_311
def test_sock_recvfrom_and_sendto(loop, udp):
    a, b = udp

    async def main():
        r = asyncio.ensure_future(loop.sock_recvfrom(b, 100))
        await asyncio.sleep(0.01)
        n = await loop.sock_sendto(a, b'datagram', b.getsockname())
        return n, await asyncio.wait_for(r, 5)

    n, (data, addr) = loop.run_until_complete(main())
    assert (n, data, addr) == (8, b'datagram', a.getsockname())
    assert no_watched_fds(loop)


@needs_311
def test_sock_recvfrom_into(loop, udp):
    a, b = udp
    buf = bytearray(16)
    a.sendto(b'0123456789', b.getsockname())
    n, addr = loop.run_until_complete(loop.sock_recvfrom_into(b, buf, 4))
    assert (n, bytes(buf[:4]), addr) == (4, b'0123', a.getsockname())
    a.sendto(b'abc', b.getsockname())
    n, addr = loop.run_until_complete(loop.sock_recvfrom_into(b, buf))
    assert (n, bytes(buf[:3])) == (3, b'abc')


# ---------------------------------------------------------------- sendfile

@pytest.fixture
def datafile():
    data = os.urandom(300_000)
    with tempfile.TemporaryFile() as f:
        f.write(data)
        f.flush()
        f.seek(0)
        yield f, data


def _recv_exactly(loop, sock, n):
    async def main():
        out = bytearray()
        while len(out) < n:
            chunk = await loop.sock_recv(sock, 65536)
            if not chunk:
                break
            out += chunk
        return bytes(out)
    return main()


def test_sock_sendfile_whole_file(loop, tcp, datafile):
    a, b = tcp
    f, data = datafile

    async def main():
        r = asyncio.ensure_future(_recv_exactly(loop, b, len(data)))
        n = await loop.sock_sendfile(a, f)
        return n, await asyncio.wait_for(r, 10)

    n, got = loop.run_until_complete(main())
    assert n == len(data)
    assert got == data
    assert f.tell() == len(data)


def test_sock_sendfile_offset_count(loop, tcp, datafile):
    a, b = tcp
    f, data = datafile

    async def main():
        r = asyncio.ensure_future(_recv_exactly(loop, b, 1000))
        n = await loop.sock_sendfile(a, f, offset=100, count=1000)
        return n, await asyncio.wait_for(r, 10)

    n, got = loop.run_until_complete(main())
    assert (n, got, f.tell()) == (1000, data[100:1100], 1100)


def test_sock_sendfile_fallback_for_non_files(loop, tcp):
    a, b = tcp
    src = io.BytesIO(b'not a real file' * 1000)

    async def main():
        r = asyncio.ensure_future(_recv_exactly(loop, b, 15000))
        n = await loop.sock_sendfile(a, src)
        return n, await asyncio.wait_for(r, 10)

    assert loop.run_until_complete(main()) == (15000, b'not a real file' * 1000)


def test_sock_sendfile_no_fallback(loop, tcp):
    a, b = tcp
    res = outcome(loop, loop.sock_sendfile(a, io.BytesIO(b'x'), fallback=False))
    assert res[0] == 'SendfileNotAvailableError'


@pytest.mark.parametrize('kwargs, expected', [
    ({'offset': -1}, 'ValueError'),
    ({'offset': 'x'}, 'TypeError'),
    ({'count': 0}, 'ValueError'),
    ({'count': 1.5}, 'TypeError'),
])
def test_sock_sendfile_bad_params(loop, tcp, datafile, kwargs, expected):
    a, b = tcp
    f, _ = datafile
    res = outcome(loop, loop.sock_sendfile(a, f, **kwargs))
    assert res[0] == expected
    assert 'integer' in res[1]


def test_sock_sendfile_text_file(loop, tcp, tmp_path):
    a, b = tcp
    p = tmp_path / 't.txt'
    p.write_text('text')
    with open(p) as f:
        res = outcome(loop, loop.sock_sendfile(a, f))
    assert res == ('ValueError', 'file should be opened in binary mode')


def test_sock_sendfile_datagram_socket(loop, udp, datafile):
    a, b = udp
    f, _ = datafile
    res = outcome(loop, loop.sock_sendfile(a, f))
    assert res == ('ValueError', 'only SOCK_STREAM type sockets are supported')


# ---------------------------------------------------------------- argument errors

def _sock_calls(loop, sock, peer_addr):
    buf = bytearray(10)
    calls = {
        'sock_recv': lambda: loop.sock_recv(sock, 10),
        'sock_recv_into': lambda: loop.sock_recv_into(sock, buf),
        'sock_sendall': lambda: loop.sock_sendall(sock, b'x'),
        'sock_connect': lambda: loop.sock_connect(sock, peer_addr),
        'sock_accept': lambda: loop.sock_accept(sock),
        'sock_sendfile': lambda: loop.sock_sendfile(sock, io.BytesIO(b'x')),
    }
    if sys.version_info >= (3, 11):
        calls.update({
            'sock_recvfrom': lambda: loop.sock_recvfrom(sock, 10),
            'sock_recvfrom_into': lambda: loop.sock_recvfrom_into(sock, buf),
            'sock_sendto': lambda: loop.sock_sendto(sock, b'x', peer_addr),
        })
    return calls


METHODS = ['sock_recv', 'sock_recv_into', 'sock_sendall', 'sock_connect', 'sock_accept',
           'sock_sendfile', 'sock_recvfrom', 'sock_recvfrom_into', 'sock_sendto']


def _skip_if_missing(method):
    if method in ('sock_recvfrom', 'sock_recvfrom_into', 'sock_sendto') \
            and sys.version_info < (3, 11):
        pytest.skip(f'{method} is new in Python 3.11')


@pytest.mark.parametrize('method', METHODS)
def test_blocking_socket_refused_in_debug_mode(loop, method):
    _skip_if_missing(method)
    loop.set_debug(True)
    with socket.socket() as s:
        assert s.getblocking()
        coro = _sock_calls(loop, s, ('127.0.0.1', 9))[method]()
        assert outcome(loop, coro) == ('ValueError', 'the socket must be non-blocking')


@pytest.mark.parametrize('method', METHODS)
def test_ssl_socket_refused(loop, method):
    _skip_if_missing(method)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    with ctx.wrap_socket(socket.socket(), server_hostname='x',
                         do_handshake_on_connect=False) as s:
        s.setblocking(False)
        coro = _sock_calls(loop, s, ('127.0.0.1', 9))[method]()
        assert outcome(loop, coro) == ('TypeError', 'Socket cannot be of type SSLSocket')


@pytest.mark.parametrize('method', METHODS)
def test_closed_socket_same_error_as_stock(evloop, stockloop, method):
    _skip_if_missing(method)
    results = []
    for lp in (stockloop, evloop):
        s = socket.socket()
        s.setblocking(False)
        s.close()
        coro = _sock_calls(lp, s, ('127.0.0.1', 9))[method]()
        results.append(outcome(lp, coro))
    assert results[1] == results[0]
