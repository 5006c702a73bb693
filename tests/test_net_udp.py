"""Datagram endpoints (UDP and Unix datagram sockets), on evioloop and the stock loop."""
import asyncio
import os
import socket
import sys
import tempfile

import pytest

from net_helpers import LOOP_KINDS, free_udp_port, has_ipv6_loopback, run, spin, until

# The stock transport of 3.13 sends sendto(b'') as an empty datagram; those of
# 3.10-3.12 (as installed here) return without sending anything.
EMPTY_DATAGRAMS_SENT = sys.version_info >= (3, 13)


@pytest.fixture(params=LOOP_KINDS)
def kind(request):
    return request.param


@pytest.fixture
def sockdir():
    with tempfile.TemporaryDirectory(prefix='evn-', dir='/tmp') as d:
        yield d


class DgramRecorder(asyncio.DatagramProtocol):
    def __init__(self, echo=False):
        loop = asyncio.get_running_loop()
        self.echo = echo
        self.events = []
        self.datagrams = []
        self.errors = []
        self.transport = None
        self.lost = loop.create_future()
        self.lost_calls = 0
        self._changed = asyncio.Event()

    def connection_made(self, transport):
        self.events.append('connection_made')
        self.transport = transport

    def datagram_received(self, data, addr):
        assert isinstance(data, bytes)
        self.events.append('datagram_received')
        self.datagrams.append((data, addr))
        if self.echo:
            self.transport.sendto(data, addr)
        self._changed.set()

    def error_received(self, exc):
        self.events.append('error_received')
        self.errors.append(exc)
        self._changed.set()

    def connection_lost(self, exc):
        self.events.append('connection_lost')
        self.lost_calls += 1
        if not self.lost.done():
            self.lost.set_result(exc)

    async def wait_count(self, n, timeout=10):
        async def waiter():
            while len(self.datagrams) < n:
                self._changed.clear()
                await self._changed.wait()
        await asyncio.wait_for(waiter(), timeout)


async def closed(*endpoints):
    for t, _ in endpoints:
        t.close()
    for _, p in endpoints:
        assert await asyncio.wait_for(p.lost, 10) is None


def test_udp_local_addr_sendto_and_datagram_boundaries(kind):
    sizes = [0, 1, 2, 100, 1400, 9000, 60000]

    async def main():
        loop = asyncio.get_running_loop()
        srv = await loop.create_datagram_endpoint(
            lambda: DgramRecorder(echo=True), local_addr=('127.0.0.1', 0))
        addr = srv[0].get_extra_info('sockname')
        cli = await loop.create_datagram_endpoint(
            DgramRecorder, local_addr=('127.0.0.1', 0))
        try:
            ct, cp = cli
            caddr = ct.get_extra_info('sockname')
            assert ct.get_extra_info('peername') is None
            sk = ct.get_extra_info('socket')
            assert sk.type == socket.SOCK_DGRAM and sk.family == socket.AF_INET
            for i, n in enumerate(sizes):
                ct.sendto(bytes([i]) * n, addr)
            expected = [bytes([i]) * n for i, n in enumerate(sizes)
                        if n or EMPTY_DATAGRAMS_SENT]
            await srv[1].wait_count(len(expected))
            await cp.wait_count(len(expected))
            # one datagram each, whole, in order (loopback does not reorder)
            assert [d for d, a in srv[1].datagrams] == expected
            assert all(a == caddr for d, a in srv[1].datagrams)
            assert [d for d, a in cp.datagrams] == [d for d, a in srv[1].datagrams]
            assert all(a == addr for d, a in cp.datagrams)
            assert ct.get_write_buffer_size() == 0
            assert srv[1].errors == [] and cp.errors == []
            # wrong types
            with pytest.raises(TypeError):
                ct.sendto('text', addr)
        finally:
            await closed(srv, cli)
        assert cp.events[0] == 'connection_made' and cp.events[-1] == 'connection_lost'
        assert cp.lost_calls == 1

    run(kind, main())


def test_udp_ipv6(kind):
    if not has_ipv6_loopback():
        pytest.skip('no ::1 on this machine')

    async def main():
        loop = asyncio.get_running_loop()
        srv = await loop.create_datagram_endpoint(
            lambda: DgramRecorder(echo=True), local_addr=('::1', 0))
        cli = await loop.create_datagram_endpoint(
            DgramRecorder, remote_addr=srv[0].get_extra_info('sockname')[:2])
        try:
            cli[0].sendto(b'six')
            await cli[1].wait_count(1)
            assert cli[1].datagrams[0][0] == b'six'
        finally:
            await closed(srv, cli)

    run(kind, main())


def test_udp_remote_addr(kind):
    async def main():
        loop = asyncio.get_running_loop()
        srv = await loop.create_datagram_endpoint(
            lambda: DgramRecorder(echo=True), local_addr=('127.0.0.1', 0))
        addr = srv[0].get_extra_info('sockname')
        cli = await loop.create_datagram_endpoint(DgramRecorder, remote_addr=addr)
        try:
            ct, cp = cli
            assert ct.get_extra_info('peername') == addr
            ct.sendto(b'one')
            ct.sendto(b'two', None)
            ct.sendto(b'three', addr)   # the connected address is allowed
            with pytest.raises(ValueError):
                ct.sendto(b'elsewhere', ('127.0.0.1', free_udp_port()))
            await cp.wait_count(3)
            assert [d for d, a in cp.datagrams] == [b'one', b'two', b'three']
        finally:
            await closed(srv, cli)

    run(kind, main())


def test_udp_error_received_on_port_unreachable(kind):
    async def main():
        loop = asyncio.get_running_loop()
        port = free_udp_port()
        ct, cp = await loop.create_datagram_endpoint(
            DgramRecorder, remote_addr=('127.0.0.1', port))
        try:
            # a connected UDP socket learns of the ICMP port unreachable
            for _ in range(50):
                ct.sendto(b'anyone?')
                await asyncio.sleep(0.01)
                if cp.errors:
                    break
            assert cp.errors, 'error_received was not called'
            assert all(isinstance(e, ConnectionRefusedError) for e in cp.errors), cp.errors
            # an error does not close the endpoint
            assert not ct.is_closing()
            assert not cp.lost.done()
        finally:
            await closed((ct, cp))
        assert cp.events[0] == 'connection_made' and cp.events[-1] == 'connection_lost'

    run(kind, main())


def test_udp_reuse_port(kind):
    async def main():
        loop = asyncio.get_running_loop()
        a = await loop.create_datagram_endpoint(
            DgramRecorder, local_addr=('127.0.0.1', 0), reuse_port=True)
        port = a[0].get_extra_info('sockname')[1]
        b = await loop.create_datagram_endpoint(
            DgramRecorder, local_addr=('127.0.0.1', port), reuse_port=True)
        try:
            for t, _ in (a, b):
                sk = t.get_extra_info('socket')
                assert sk.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT) != 0
                assert t.get_extra_info('sockname')[1] == port
            # the kernel spreads datagrams from many sources over both sockets;
            # every one arrives at one of them
            senders = [await loop.create_datagram_endpoint(
                DgramRecorder, remote_addr=('127.0.0.1', port)) for _ in range(16)]
            try:
                for i, (t, _) in enumerate(senders):
                    t.sendto(b'%d' % i)
                await until(lambda: len(a[1].datagrams) + len(b[1].datagrams) == 16)
                got = sorted(d for d, _ in a[1].datagrams + b[1].datagrams)
                assert got == sorted(b'%d' % i for i in range(16))
            finally:
                await closed(*senders)
        finally:
            await closed(a, b)

    run(kind, main())


def test_udp_allow_broadcast_sets_so_broadcast(kind):
    async def main():
        loop = asyncio.get_running_loop()
        t, p = await loop.create_datagram_endpoint(
            DgramRecorder, local_addr=('127.0.0.1', 0), allow_broadcast=True)
        try:
            sk = t.get_extra_info('socket')
            assert sk.getsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST) != 0
        finally:
            await closed((t, p))
        t, p = await loop.create_datagram_endpoint(DgramRecorder, local_addr=('127.0.0.1', 0))
        try:
            sk = t.get_extra_info('socket')
            assert sk.getsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST) == 0
        finally:
            await closed((t, p))

    run(kind, main())


def test_udp_from_a_socket(kind):
    async def main():
        loop = asyncio.get_running_loop()
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(('127.0.0.1', 0))
        addr = sock.getsockname()
        srv = await loop.create_datagram_endpoint(lambda: DgramRecorder(echo=True), sock=sock)
        cli = await loop.create_datagram_endpoint(DgramRecorder, remote_addr=addr)
        try:
            assert srv[0].get_extra_info('sockname') == addr
            cli[0].sendto(b'through sock=')
            await cli[1].wait_count(1)
            assert cli[1].datagrams[0] == (b'through sock=', addr)
        finally:
            await closed(srv, cli)
        assert sock.fileno() == -1
        # a stream socket is refused
        stream = socket.socket()
        try:
            with pytest.raises(ValueError):
                await loop.create_datagram_endpoint(DgramRecorder, sock=stream)
        finally:
            stream.close()

    run(kind, main())


def test_udp_abort_and_close(kind):
    async def main():
        loop = asyncio.get_running_loop()
        t, p = await loop.create_datagram_endpoint(DgramRecorder, local_addr=('127.0.0.1', 0))
        t.abort()
        assert t.is_closing()
        assert await asyncio.wait_for(p.lost, 10) is None
        t.close()
        await spin(5)
        assert p.lost_calls == 1
        t, p = await loop.create_datagram_endpoint(DgramRecorder, local_addr=('127.0.0.1', 0))
        t.close()
        t.close()
        assert await asyncio.wait_for(p.lost, 10) is None
        await spin(5)
        assert p.lost_calls == 1

    run(kind, main())


def test_udp_many_datagrams_none_lost_on_loopback(kind):
    n = 2000

    async def main():
        loop = asyncio.get_running_loop()
        srv = await loop.create_datagram_endpoint(
            lambda: DgramRecorder(echo=True), local_addr=('127.0.0.1', 0))
        cli = await loop.create_datagram_endpoint(
            DgramRecorder, remote_addr=srv[0].get_extra_info('sockname'))
        try:
            # in windows of 100, so that no socket buffer can overflow
            for base in range(0, n, 100):
                for i in range(base, base + 100):
                    cli[0].sendto(b'%06d' % i)
                await cli[1].wait_count(base + 100)
            assert [d for d, _ in cli[1].datagrams] == [b'%06d' % i for i in range(n)]
        finally:
            await closed(srv, cli)

    run(kind, main())


# ---------------------------------------------------------------- Unix datagram sockets

def test_unix_datagram_bound_pair(kind, sockdir):
    a_path = os.path.join(sockdir, 'a')
    b_path = os.path.join(sockdir, 'b')

    async def main():
        loop = asyncio.get_running_loop()
        a = await loop.create_datagram_endpoint(
            lambda: DgramRecorder(echo=True), local_addr=a_path, family=socket.AF_UNIX)
        b = await loop.create_datagram_endpoint(
            DgramRecorder, local_addr=b_path, remote_addr=a_path, family=socket.AF_UNIX)
        try:
            assert a[0].get_extra_info('sockname') == a_path
            assert b[0].get_extra_info('sockname') == b_path
            assert b[0].get_extra_info('peername') == a_path
            assert a[0].get_extra_info('socket').family == socket.AF_UNIX
            b[0].sendto(b'unix one')
            b[0].sendto(b'unix two' * 1000)
            await b[1].wait_count(2)
            assert a[1].datagrams == [(b'unix one', b_path), (b'unix two' * 1000, b_path)]
            assert b[1].datagrams == [(b'unix one', a_path), (b'unix two' * 1000, a_path)]
        finally:
            await closed(a, b)

    run(kind, main())


def test_unix_datagram_unbound_sender(kind, sockdir):
    a_path = os.path.join(sockdir, 'a')

    async def main():
        loop = asyncio.get_running_loop()
        a = await loop.create_datagram_endpoint(
            DgramRecorder, local_addr=a_path, family=socket.AF_UNIX)
        # no local address: the receiver sees an unnamed sender
        b = await loop.create_datagram_endpoint(
            DgramRecorder, remote_addr=a_path, family=socket.AF_UNIX)
        try:
            b[0].sendto(b'who am I')
            await a[1].wait_count(1)
            data, addr = a[1].datagrams[0]
            assert data == b'who am I'
            assert not addr   # '' or None: an unbound Unix socket has no name
        finally:
            await closed(a, b)

    run(kind, main())


def test_unix_datagram_abstract_namespace(kind):
    name = f'\0evioloop-dgram-{os.getpid()}-{id(kind)}'

    async def main():
        loop = asyncio.get_running_loop()
        a = await loop.create_datagram_endpoint(
            lambda: DgramRecorder(echo=True), local_addr=name, family=socket.AF_UNIX)
        b = await loop.create_datagram_endpoint(
            DgramRecorder, local_addr=name + '-b', remote_addr=name, family=socket.AF_UNIX)
        try:
            b[0].sendto(b'abstract')
            await b[1].wait_count(1)
            assert b[1].datagrams[0][0] == b'abstract'
            assert a[1].datagrams[0][1] == (name + '-b').encode()
        finally:
            await closed(a, b)

    run(kind, main())
