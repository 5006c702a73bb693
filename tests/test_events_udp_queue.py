"""The Events API's UDP send queue (docs/events.md, "UDP"): a datagram the
kernel does not take at once waits in a bounded queue and goes out once the
socket takes it again; what overflows the bound is dropped, counted in
`server.udp_dropped` and logged (at most once a second).

Loopback never refuses a UDP send, so the listener's socket is one whose
`sendto` refuses (BlockingIOError) while the test says so. uvloop sends
through libuv on the bare fd, past that socket object, so it is not a mode
here.
"""
import asyncio
import socket
import time
import types

import pytest

from evioloop import Events
from evioloop.events import addrs as addrs_module
from events_helpers import harness

DATAGRAM = 2048
SENT = 3000


class RefusingSocket(socket.socket):
    refusing = False

    def sendto(self, *args):
        if RefusingSocket.refusing:
            raise BlockingIOError(11, 'Resource temporarily unavailable')
        return super().sendto(*args)


@pytest.fixture(params=['native', 'stock'])
def h(request, monkeypatch):
    fake = types.SimpleNamespace(**vars(socket))
    fake.socket = RefusingSocket
    monkeypatch.setattr(addrs_module, 'socket', fake)
    RefusingSocket.refusing = False
    yield from harness(request.param)
    RefusingSocket.refusing = False


def _big_rcvbuf(sock, size=32 << 20):
    opt = getattr(socket, 'SO_RCVBUFFORCE', None)
    try:
        sock.setsockopt(socket.SOL_SOCKET, opt or socket.SO_RCVBUF, size)
    except (OSError, TypeError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, size)
    return sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)


async def _drain(sock, quiet=0.3):
    """What arrives until nothing has for `quiet` seconds. The socket is read
    before the clock is looked at, so a process descheduled for longer than
    `quiet` (a loaded machine) still takes what arrived meanwhile."""
    got = []
    last = time.monotonic()
    while True:
        try:
            data, _ = sock.recvfrom(65536)
        except BlockingIOError:
            if time.monotonic() - last >= quiet:
                return got
            await asyncio.sleep(0.005)
            continue
        got.append(data)
        last = time.monotonic()


def test_refused_datagrams_wait_then_overflow_is_counted(h):
    h.expect_errors = True
    state = {}

    def data(conn, in_):
        if in_ == b'flood':
            RefusingSocket.refusing = True
            for i in range(SENT):
                conn.sendto(i.to_bytes(4, 'big') * (DATAGRAM // 4), conn.remote_addr)
            state['dropped_during'] = state['server'].udp_dropped
            return None
        return b'echo:' + in_

    async def main():
        async with h.serve(Events(data=data), 'udp://127.0.0.1:0') as server:
            state['server'] = server
            client = h.udp_client()
            client.bind(('127.0.0.1', 0))
            rcvbuf = _big_rcvbuf(client)
            target = server.addrs[0]
            client.sendto(b'flood', target)
            deadline = time.monotonic() + 10
            while 'dropped_during' not in state:
                assert time.monotonic() < deadline, 'the flood never ran'
                await asyncio.sleep(0.01)
            assert await _drain(client, quiet=0.2) == [], 'sent while refusing'
            RefusingSocket.refusing = False
            got = await _drain(client)
            client.sendto(b'after', target)
            after = await _drain(client)
            return rcvbuf, got, after, server.udp_dropped

    rcvbuf, got, after, dropped = h.run(main())
    assert dropped == state['dropped_during'] > 0
    waited = SENT - dropped
    # the bound: 1,024 datagrams natively, 2 MiB of the host transport's
    # buffer in portable mode (about as many of these 2 KiB datagrams)
    assert 1000 <= waited <= 1100, waited
    seq = [int.from_bytes(d[:4], 'big') for d in got]
    assert seq == sorted(seq), 'the queue went out out of order'
    assert seq == list(range(len(seq))), 'the first datagrams must be the ones kept'
    assert all(len(d) == DATAGRAM for d in got)
    if rcvbuf >= waited * 4 * DATAGRAM:
        assert len(got) == waited
    assert after == [b'echo:after']
    messages = [ctx.get('message', '') for ctx in h.errors]
    full = [m for m in messages if 'queue full' in m]
    assert 1 <= len(full) <= 3, messages
    assert all('queue full' in m for m in messages), messages
