"""Servers and connecting: create_server's options, Server objects, Unix
servers (paths and the Linux abstract namespace), connect_accepted_socket and
some create_connection options. On evioloop and the stock loop, with the
stock semantics of each Python version.
"""
import asyncio
import os
import socket
import stat
import sys
import tempfile
import uuid

import pytest

from net_helpers import (
    LOOP_KINDS, PY313, Recorder, has_ipv6_loopback, keeping, port_of, run, spin, until,
)

# Server.wait_closed() waits for the connections to go since 3.12.1; before,
# it returned at once once the server was closed (CPython gh-79033).
WAIT_CLOSED_WAITS_FOR_CONNECTIONS = sys.version_info >= (3, 12, 1)


@pytest.fixture(params=LOOP_KINDS)
def kind(request):
    return request.param


class Echo(Recorder):
    def data_received(self, data):
        super().data_received(data)
        self.transport.write(data)


async def echo_once(loop, addr, msg=b'ping', family=None):
    """Connect, send msg, expect it back, close. Returns the client protocol."""
    if isinstance(addr, (str, bytes)):
        tr, p = await loop.create_unix_connection(Recorder, addr)
    else:
        tr, p = await loop.create_connection(Recorder, *addr[:2])
    try:
        tr.write(msg)
        await asyncio.wait_for(p.wait_bytes(len(msg)), 10)
        assert bytes(p.data) == msg
    finally:
        tr.close()
    await asyncio.wait_for(p.lost, 10)
    return p


@pytest.fixture
def sockdir():
    with tempfile.TemporaryDirectory(prefix='evn-', dir='/tmp') as d:
        yield d


# ---------------------------------------------------------------- create_server

def test_create_server_with_a_host_list(kind):
    hosts = ['127.0.0.1'] + (['::1'] if has_ipv6_loopback() else [])

    async def main():
        loop = asyncio.get_running_loop()
        server = await loop.create_server(Echo, hosts, 0)
        try:
            socks = server.sockets
            assert len(socks) == len(hosts)
            assert {s.family for s in socks} == (
                {socket.AF_INET, socket.AF_INET6} if len(hosts) == 2 else {socket.AF_INET})
            for s in socks:
                assert s.getsockname()[0] in hosts
                await echo_once(loop, s.getsockname(), b'to ' + s.getsockname()[0].encode())
        finally:
            server.close()
            await server.wait_closed()
        assert server.sockets == ()

    run(kind, main())


def test_create_server_reuse_port(kind):
    async def main():
        loop = asyncio.get_running_loop()
        s1 = await loop.create_server(Echo, '127.0.0.1', 0, reuse_port=True)
        try:
            port = port_of(s1)
            s2 = await loop.create_server(Echo, '127.0.0.1', port, reuse_port=True)
            try:
                for s in s1.sockets + s2.sockets:
                    assert s.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT) != 0
                    assert s.getsockname()[1] == port
                for i in range(10):
                    await echo_once(loop, ('127.0.0.1', port), b'%d' % i)
            finally:
                s2.close()
                await s2.wait_closed()
            # without reuse_port the port is taken
            with pytest.raises(OSError):
                await loop.create_server(Echo, '127.0.0.1', port)
        finally:
            s1.close()
            await s1.wait_closed()

    run(kind, main())


def test_create_server_from_a_socket(kind):
    async def main():
        loop = asyncio.get_running_loop()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.bind(('127.0.0.1', 0))
        addr = sock.getsockname()
        server = await loop.create_server(Echo, sock=sock)
        try:
            assert server.sockets[0].getsockname() == addr
            assert server.sockets[0].fileno() == sock.fileno()
            await echo_once(loop, addr)
        finally:
            server.close()
            await server.wait_closed()
        # the server owned the socket and closed it
        assert sock.fileno() == -1

    run(kind, main())


def test_create_server_argument_errors(kind):
    async def main():
        loop = asyncio.get_running_loop()
        sock = socket.socket()
        try:
            with pytest.raises(ValueError):
                await loop.create_server(Echo, '127.0.0.1', 0, sock=sock)
        finally:
            sock.close()
        dgram = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            with pytest.raises(ValueError):
                await loop.create_server(Echo, sock=dgram)
        finally:
            dgram.close()

    run(kind, main())


def test_start_serving_false_then_start_serving(kind):
    async def main():
        loop = asyncio.get_running_loop()
        server = await loop.create_server(Echo, '127.0.0.1', 0, start_serving=False)
        try:
            assert server.get_loop() is loop
            assert not server.is_serving()
            addr = server.sockets[0].getsockname()
            await server.start_serving()
            assert server.is_serving()
            await server.start_serving()  # again: nothing happens
            await echo_once(loop, addr)
        finally:
            server.close()
            await server.wait_closed()
        assert not server.is_serving()

    run(kind, main())


def test_serve_forever_and_its_cancellation(kind):
    async def main():
        loop = asyncio.get_running_loop()
        server = await loop.create_server(Echo, '127.0.0.1', 0, start_serving=False)
        addr = server.sockets[0].getsockname()
        task = asyncio.ensure_future(server.serve_forever())
        try:
            await until(server.is_serving, what='serving')
            await echo_once(loop, addr)
            with pytest.raises(RuntimeError):
                await server.serve_forever()
        finally:
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await asyncio.wait_for(task, 10)
        assert not server.is_serving()
        assert server.sockets == ()
        # closed for good: nobody listens there now
        with pytest.raises(ConnectionRefusedError):
            await loop.create_connection(Recorder, *addr)
        await asyncio.wait_for(server.wait_closed(), 10)

    run(kind, main())


def test_close_and_wait_closed(kind):
    async def main():
        loop = asyncio.get_running_loop()
        factory, sprotos = keeping(Echo)

        server = await loop.create_server(factory, '127.0.0.1', 0)
        addr = server.sockets[0].getsockname()
        tr, cp = await loop.create_connection(Recorder, *addr)
        try:
            await until(lambda: sprotos, what='accepted')
            server.close()
            assert not server.is_serving()
            server.close()  # twice is fine
            with pytest.raises(ConnectionRefusedError):
                await loop.create_connection(Recorder, *addr)
            # close() leaves the accepted connections alone
            tr.write(b'still here')
            await cp.wait_bytes(10)
            waiter = asyncio.ensure_future(server.wait_closed())
            await spin(20, 0.05)
            if WAIT_CLOSED_WAITS_FOR_CONNECTIONS:
                assert not waiter.done()
            else:
                assert waiter.done()
            tr.close()
            await asyncio.wait_for(sprotos[0].lost, 10)
            await asyncio.wait_for(waiter, 10)
        finally:
            tr.close()
            server.close()
            await server.wait_closed()

    run(kind, main())


def test_server_as_async_context_manager(kind):
    async def main():
        loop = asyncio.get_running_loop()
        server = await loop.create_server(Echo, '127.0.0.1', 0)
        addr = server.sockets[0].getsockname()
        async with server as s:
            assert s is server
            assert server.is_serving()
            await echo_once(loop, addr)
        assert not server.is_serving()
        with pytest.raises(ConnectionRefusedError):
            await loop.create_connection(Recorder, *addr)

    run(kind, main())


@pytest.mark.skipif(not PY313, reason='Server.close_clients/abort_clients are new in 3.13')
@pytest.mark.parametrize('how', ['close_clients', 'abort_clients'])
def test_server_close_clients_and_abort_clients(kind, how):
    payload = b'x' * 100_000

    async def main():
        loop = asyncio.get_running_loop()
        factory, sprotos = keeping(Recorder)

        server = await loop.create_server(factory, '127.0.0.1', 0)
        addr = server.sockets[0].getsockname()
        clients = []
        try:
            for _ in range(3):
                clients.append((await loop.create_connection(Recorder, *addr))[1])
            await until(lambda: len(sprotos) == 3 and all(p.transport for p in sprotos))
            server.close()
            if how == 'close_clients':
                for p in sprotos:
                    p.transport.write(payload)
                server.close_clients()
            else:
                server.abort_clients()
            for p in sprotos:
                assert p.transport.is_closing()
                assert await asyncio.wait_for(p.lost, 10) is None
            for c in clients:
                await asyncio.wait_for(c.lost, 10)
                if how == 'close_clients':
                    # close() flushed what was written before it
                    assert bytes(c.data) == payload
                    assert c.lost_exc is None
                    assert 'eof_received' in c.events
            await asyncio.wait_for(server.wait_closed(), 10)
        finally:
            for c in clients:
                c.transport.close()
            server.close()

    run(kind, main())


@pytest.mark.skipif(not PY313, reason='keep_alive is new in 3.13')
def test_create_server_keep_alive(kind):
    async def main():
        loop = asyncio.get_running_loop()
        factory, sprotos = keeping(Echo)

        server = await loop.create_server(factory, '127.0.0.1', 0, keep_alive=True)
        try:
            s = server.sockets[0]
            assert s.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) != 0
            await echo_once(loop, s.getsockname())
            sk = sprotos[0].transport.get_extra_info('socket')
            assert sk is not None
        finally:
            server.close()
            await server.wait_closed()

    run(kind, main())


# ---------------------------------------------------------------- Unix servers

def test_unix_server_on_a_path(kind, sockdir):
    path = os.path.join(sockdir, 'srv')

    async def main():
        loop = asyncio.get_running_loop()
        server = await loop.create_unix_server(Echo, path)
        try:
            assert stat.S_ISSOCK(os.stat(path).st_mode)
            s = server.sockets[0]
            assert s.family == socket.AF_UNIX
            assert s.getsockname() == path
            p = await echo_once(loop, path)
            assert p.transport.get_extra_info('peername') == path
        finally:
            server.close()
            await server.wait_closed()
        # 3.13 removes the socket file on close (cleanup_socket=True)
        assert os.path.exists(path) is (not PY313)

    run(kind, main())


@pytest.mark.skipif(not PY313, reason='cleanup_socket is new in 3.13')
def test_unix_server_cleanup_socket_false_keeps_the_file(kind, sockdir):
    path = os.path.join(sockdir, 'srv')

    async def main():
        loop = asyncio.get_running_loop()
        server = await loop.create_unix_server(Echo, path, cleanup_socket=False)
        try:
            await echo_once(loop, path)
        finally:
            server.close()
            await server.wait_closed()
        assert os.path.exists(path)

    run(kind, main())


def test_unix_server_replaces_a_stale_socket_file(kind, sockdir):
    path = os.path.join(sockdir, 'stale')
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(path)
    stale.close()
    assert os.path.exists(path)

    async def main():
        loop = asyncio.get_running_loop()
        server = await loop.create_unix_server(Echo, path)
        try:
            await echo_once(loop, path)
        finally:
            server.close()
            await server.wait_closed()

    run(kind, main())


def test_unix_server_in_the_abstract_namespace(kind):
    name = f'\0evioloop-test-{os.getpid()}-{uuid.uuid4().hex[:8]}'

    async def main():
        loop = asyncio.get_running_loop()
        server = await loop.create_unix_server(Echo, name)
        try:
            s = server.sockets[0]
            assert s.getsockname() == name.encode()
            p = await echo_once(loop, name, b'abstract')
            assert p.transport.get_extra_info('peername') == name.encode()
            # a bytes name works as well
            await echo_once(loop, name.encode(), b'bytes name')
        finally:
            server.close()
            await server.wait_closed()
        with pytest.raises(ConnectionRefusedError):
            await loop.create_unix_connection(Recorder, name)

    run(kind, main())


def test_unix_server_from_a_socket_and_connection_from_a_socket(kind, sockdir):
    path = os.path.join(sockdir, 'srv')

    async def main():
        loop = asyncio.get_running_loop()
        lsock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        lsock.bind(path)
        server = await loop.create_unix_server(Echo, sock=lsock)
        try:
            csock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            csock.setblocking(False)
            await loop.sock_connect(csock, path)
            tr, p = await loop.create_unix_connection(Recorder, sock=csock)
            tr.write(b'via sock=')
            await p.wait_bytes(9)
            tr.close()
            await asyncio.wait_for(p.lost, 10)
            assert csock.fileno() == -1
        finally:
            server.close()
            await server.wait_closed()

    run(kind, main())


# ---------------------------------------------------------------- connect_accepted_socket

@pytest.mark.parametrize('family', ['tcp', 'unix'])
def test_connect_accepted_socket(kind, family, sockdir):
    async def main():
        loop = asyncio.get_running_loop()
        if family == 'unix':
            lsock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            lsock.bind(os.path.join(sockdir, 'acc'))
        else:
            lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
            lsock.bind(('127.0.0.1', 0))
        lsock.listen()
        lsock.setblocking(False)
        csock = socket.socket(lsock.family, socket.SOCK_STREAM)
        try:
            csock.setblocking(False)
            await loop.sock_connect(csock, lsock.getsockname())
            accepted, _ = await loop.sock_accept(lsock)
            st, sp = await loop.connect_accepted_socket(
                lambda: Recorder(eof_keep_open=True), accepted)
            assert sp.transport is st
            assert st.get_extra_info('sockname') == lsock.getsockname()
            await loop.sock_sendall(csock, b'from the peer')
            await sp.wait_bytes(13)
            st.write(b'to the peer')
            got = b''
            while len(got) < 11:
                got += await asyncio.wait_for(loop.sock_recv(csock, 100), 10)
            assert got == b'to the peer'
            csock.shutdown(socket.SHUT_WR)
            await asyncio.wait_for(sp.eof, 10)
            st.close()
            assert await asyncio.wait_for(sp.lost, 10) is None
            assert await asyncio.wait_for(loop.sock_recv(csock, 100), 10) == b''
            assert accepted.fileno() == -1
            assert sp.events[0] == 'connection_made' and sp.events[-1] == 'connection_lost'
            # only stream sockets
            dgram = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            try:
                with pytest.raises(ValueError):
                    await loop.connect_accepted_socket(Recorder, dgram)
            finally:
                dgram.close()
        finally:
            csock.close()
            lsock.close()

    run(kind, main())


# ---------------------------------------------------------------- create_connection

def test_create_connection_local_addr_and_refused(kind):
    async def main():
        loop = asyncio.get_running_loop()
        server = await loop.create_server(Echo, '127.0.0.1', 0)
        addr = server.sockets[0].getsockname()
        try:
            tr, p = await loop.create_connection(
                Recorder, *addr, local_addr=('127.0.0.1', 0))
            try:
                assert tr.get_extra_info('sockname')[0] == '127.0.0.1'
                assert tr.get_extra_info('peername') == addr
            finally:
                tr.close()
                await asyncio.wait_for(p.lost, 10)
        finally:
            server.close()
            await server.wait_closed()
        # the server is gone: refused
        with pytest.raises(ConnectionRefusedError):
            await loop.create_connection(Recorder, *addr)
        if sys.version_info >= (3, 12):
            with pytest.raises(ExceptionGroup) as info:  # noqa: F821 (3.11+)
                await loop.create_connection(Recorder, *addr, all_errors=True)
            assert all(isinstance(e, ConnectionRefusedError)
                       for e in info.value.exceptions)

    run(kind, main())


def test_create_connection_happy_eyeballs_to_localhost(kind):
    # 'localhost' may resolve to ::1 and 127.0.0.1; only 127.0.0.1 listens
    async def main():
        loop = asyncio.get_running_loop()
        server = await loop.create_server(Echo, '127.0.0.1', 0)
        port = port_of(server)
        try:
            for kwargs in ({}, {'happy_eyeballs_delay': 0.05},
                           {'happy_eyeballs_delay': 0.05, 'interleave': 2}):
                tr, p = await loop.create_connection(Recorder, 'localhost', port, **kwargs)
                try:
                    assert tr.get_extra_info('peername') == ('127.0.0.1', port)
                    tr.write(b'hi')
                    await p.wait_bytes(2)
                finally:
                    tr.close()
                    await asyncio.wait_for(p.lost, 10)
        finally:
            server.close()
            await server.wait_closed()

    run(kind, main())
