"""The Events API: UDP listeners (docs/events.md, "UDP").

Covers: data(conn, datagram) once per datagram with its exact bytes; out
going back to the sender; conn.remote_addr the sender, local_addr and
addr_index the listener; a fresh conn for each datagram; conn.sendto to
another address; opened/closed not called for UDP; SHUTDOWN from a UDP data
call; many datagrams from several senders, each answered to its own sender;
UDP next to TCP on the same server. Each test runs native, on the stock
loop and on uvloop.
"""
import asyncio
import time

import pytest

from evioloop import Action, Events
from events_helpers import MODES, harness, port_of, target_of


@pytest.fixture(params=MODES)
def h(request):
    yield from harness(request.param)


async def recv_dgram(sock, timeout=10):
    """(datagram, sender) from a non-blocking socket, polled (uvloop has no sock_recvfrom)."""
    end = time.monotonic() + timeout
    while True:
        try:
            return sock.recvfrom(65536)
        except BlockingIOError:
            if time.monotonic() > end:
                raise AssertionError('no datagram came') from None
            await asyncio.sleep(0.001)


def test_datagram_echo_and_addresses(h):
    seen = []
    log = []

    def data(conn, in_):
        seen.append((bytes(in_), conn.remote_addr, conn.local_addr, conn.addr_index, conn))
        return b're:' + bytes(in_)

    async def main():
        events = Events(data=data, opened=lambda c: log.append('opened'),
                        closed=lambda c, e: log.append('closed'))
        async with h.serve(events, 'tcp://127.0.0.1:0', 'udp://127.0.0.1:0') as server:
            port = port_of(server, 1)
            s = h.udp_client()
            s.bind(('127.0.0.1', 0))
            for msg in (b'one', b'two', b'x' * 60000, b'three'):
                s.sendto(msg, ('127.0.0.1', port))
                got, frm = await recv_dgram(s)
                assert got == b're:' + msg
                assert frm == ('127.0.0.1', port)
            return s.getsockname(), port

    client_addr, port = h.run(main())
    assert [m for m, *_ in seen] == [b'one', b'two', b'x' * 60000, b'three']
    for _, remote, local, index, _conn in seen:
        assert remote == client_addr
        assert local == ('127.0.0.1', port)
        assert index == 1
    # a fresh conn for each datagram (all are still alive here: ids are distinct)
    assert len({id(c) for *_, c in seen}) == len(seen)
    assert log == []


def test_datagram_conn_has_no_stream_members(h):
    seen = {}

    def data(conn, in_):
        seen['context'] = hasattr(conn, 'context')
        seen['wake'] = hasattr(conn, 'wake')
        seen['peek'] = hasattr(conn, 'peek')
        return in_

    async def main():
        async with h.serve(Events(data=data), 'udp://127.0.0.1:0') as server:
            s = h.udp_client()
            s.sendto(b'?', target_of(server.addrs[0])[1])
            got, _ = await recv_dgram(s)
            assert got == b'?'
    h.run(main())
    assert seen == {'context': False, 'wake': False, 'peek': False}


def test_sendto_another_address(h):
    def data(conn, in_):
        host, port = bytes(in_).decode().split()
        conn.sendto(b'forwarded from %d' % conn.remote_addr[1], (host, int(port)))

    async def main():
        async with h.serve(Events(data=data), 'udp://127.0.0.1:0') as server:
            target = target_of(server.addrs[0])[1]
            sender = h.udp_client()
            sender.bind(('127.0.0.1', 0))
            receiver = h.udp_client()
            receiver.bind(('127.0.0.1', 0))
            rport = receiver.getsockname()[1]
            sender.sendto(b'127.0.0.1 %d' % rport, target)
            got, frm = await recv_dgram(receiver)
            assert got == b'forwarded from %d' % sender.getsockname()[1]
            assert frm == target
    h.run(main())


def test_many_datagrams_from_several_senders(h):
    count = 0

    def data(conn, in_):
        nonlocal count
        count += 1
        return bytes(in_)

    async def main():
        async with h.serve(Events(data=data), 'udp://127.0.0.1:0') as server:
            target = target_of(server.addrs[0])[1]
            senders = [h.udp_client() for _ in range(4)]
            for s in senders:
                s.bind(('127.0.0.1', 0))
            for i in range(50):
                for k, s in enumerate(senders):
                    s.sendto(b'%d:%d' % (k, i), target)
                for k, s in enumerate(senders):
                    got, _ = await recv_dgram(s)
                    assert got == b'%d:%d' % (k, i)
    h.run(main())
    assert count == 200


def test_shutdown_from_udp_data(h):
    log = []

    def data(conn, in_):
        if in_ == b'stop':
            return b'stopping', Action.SHUTDOWN
        return in_

    async def main():
        events = Events(data=data, shutdown=lambda s: log.append('shutdown'))
        server = await h.listen(events, 'udp://127.0.0.1:0')
        s = h.udp_client()
        s.sendto(b'stop', target_of(server.addrs[0])[1])
        await asyncio.wait_for(server.wait_closed(), 10)
        got, _ = await recv_dgram(s, 2)
        assert got == b'stopping'
        assert not server.is_serving()
    h.run(main())
    assert log == ['shutdown']



def test_empty_datagram(h):
    seen = []

    def data(conn, in_):
        seen.append(bytes(in_))
        return b'got %d' % len(in_)

    async def main():
        async with h.serve(Events(data=data), 'udp://127.0.0.1:0') as server:
            s = h.udp_client()
            target = target_of(server.addrs[0])[1]
            s.sendto(b'', target)
            s.sendto(b'z', target)
            replies = [(await recv_dgram(s))[0] for _ in range(2)]
            assert replies == [b'got 0', b'got 1']
    h.run(main())
    assert seen == [b'', b'z']


def test_failing_udp_data_is_reported_and_the_listener_goes_on(h):
    def data(conn, in_):
        if in_ == b'boom':
            raise ZeroDivisionError('udp')
        if in_ == b'bad':
            return 12345
        if in_ == b'close':
            return b'closing?', Action.CLOSE     # only SHUTDOWN applies to UDP
        return in_

    async def main():
        h.expect_errors = True
        async with h.serve(Events(data=data), 'udp://127.0.0.1:0') as server:
            target = target_of(server.addrs[0])[1]
            s = h.udp_client()
            for msg in (b'boom', b'bad'):
                s.sendto(msg, target)
            s.sendto(b'close', target)
            got, _ = await recv_dgram(s)
            assert got == b'closing?'
            s.sendto(b'still here', target)
            got, _ = await recv_dgram(s)
            assert got == b'still here'
            assert server.is_serving()
            assert isinstance(s.getsockname(), tuple)
    h.run(main())
    kinds = [type(c.get('exception')) for c in h.errors]
    assert kinds == [ZeroDivisionError, TypeError], h.errors
    assert all(c.get('conn') is not None for c in h.errors)
