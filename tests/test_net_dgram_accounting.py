"""The datagram transport's table of stock write-buffer accounting is right.

`evioloop.transports._dgram.STOCK_ACCOUNTING` says, per Python version, how the stock
`_SelectorDatagramTransport` counts its queued datagrams in
get_write_buffer_size(), and whether sendto(b'') sends anything. These tests
take the row for the running Python and check it against the stock
transport itself: a sender whose receiver does not read meets EAGAIN, the
stock transport queues, and the sizes it reports while queueing, after its
queue drained and after abort() are compared with what the row predicts.
The same scenario on evioloop must then report the stock loop's numbers.
"""
import asyncio
import os
import socket
import sys
import tempfile

import pytest

from evioloop.transports import _dgram
from net_helpers import LOOPS, drain_datagrams

# distinct sizes, so that a sum and a counter of lengths tell themselves apart
SIZES = [1000 + 7 * i for i in range(60)]


class Quiet(asyncio.DatagramProtocol):
    def __init__(self):
        self.errors = []
        self.lost = asyncio.get_running_loop().create_future()

    def error_received(self, exc):
        self.errors.append(exc)

    def connection_lost(self, exc):
        if not self.lost.done():
            self.lost.set_result(exc)


def scenario(kind, finish):
    """Sizes reported while queueing SIZES into a receiver that does not
    read, then after `finish` ('drain': the receiver reads everything;
    'abort'): (sizes, sent straight to the kernel, size at the end)."""
    async def main():
        loop = asyncio.get_running_loop()
        d = tempfile.mkdtemp(prefix='evd-acct-', dir='/tmp')
        rpath = os.path.join(d, 'r')
        recv = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        send = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            recv.bind(rpath)
            recv.setblocking(False)
            send.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
            send.bind(os.path.join(d, 's'))
            send.connect(rpath)
            send.setblocking(False)
            t, p = await loop.create_datagram_endpoint(Quiet, sock=send)
            # water marks out of the way: only the accounting is looked at
            t.set_write_buffer_limits(high=1 << 30)
            sizes = []
            for n in SIZES:
                t.sendto(b'x' * n)
                sizes.append(t.get_write_buffer_size())
            direct = sizes.index(next(s for s in sizes if s)) if any(sizes) else len(sizes)
            if finish == 'drain':
                got = await drain_datagrams(recv, len(SIZES))
                assert [len(g) for g in got] == SIZES       # all of them, in order
            else:
                t.abort()
                await p.lost
            end = t.get_write_buffer_size()
            t.close()
            await p.lost
            assert not p.errors, p.errors
        finally:
            recv.close()
            send.close()
            for name in os.listdir(d):
                os.unlink(os.path.join(d, name))
            os.rmdir(d)
        return sizes, direct, end

    loop = LOOPS[kind]()
    try:
        return loop.run_until_complete(asyncio.wait_for(main(), 30))
    finally:
        loop.close()


def predicted(direct, finish):
    """What the table's row says the stock transport reports."""
    summed, push, pop, _ = _dgram.stock_accounting()
    sizes, size = [], 0
    for i, n in enumerate(SIZES):
        if i >= direct:
            size += n + push
        sizes.append(size)
    queued = SIZES[direct:]
    if finish == 'drain':
        end = 0 if summed else sum(push - pop for _ in queued)
    else:
        end = 0 if summed else size
    return sizes, end


@pytest.mark.parametrize('finish', ['drain', 'abort'])
def test_the_row_of_this_python_predicts_the_stock_transport(finish):
    sizes, direct, end = scenario('stock', finish)
    assert direct < len(SIZES) - 10, 'the receiver never filled up'
    assert (sizes, end) == predicted(direct, finish)


@pytest.mark.parametrize('finish', ['drain', 'abort'])
def test_evioloop_reports_the_stock_sizes(finish):
    stock = scenario('stock', finish)
    ours = scenario('evioloop', finish)
    # the kernel takes as many datagrams before EAGAIN on both loops
    assert ours == stock


def empty_datagram(kind):
    """Whether sendto(b'') puts an empty datagram on the wire."""
    async def main():
        loop = asyncio.get_running_loop()
        recv = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            recv.bind(('127.0.0.1', 0))
            recv.setblocking(False)
            t, p = await loop.create_datagram_endpoint(
                Quiet, remote_addr=recv.getsockname())
            t.sendto(b'')
            t.sendto(b'end')
            got = await drain_datagrams(recv, 1)
            if got == [b'']:
                got += await drain_datagrams(recv, 1)
            t.close()
            await p.lost
        finally:
            recv.close()
        return got

    loop = LOOPS[kind]()
    try:
        return loop.run_until_complete(asyncio.wait_for(main(), 30))
    finally:
        loop.close()


def test_the_row_of_this_python_predicts_sendto_of_empty_data():
    drop_empty = _dgram.stock_accounting()[3]
    stock = empty_datagram('stock')
    assert stock == ([b'end'] if drop_empty else [b'', b'end'])
    assert empty_datagram('evioloop') == stock


def test_the_table_covers_every_supported_version_and_later_ones():
    # a row per minor version from 3.10; a later Python takes the last row
    assert set(_dgram.STOCK_ACCOUNTING) >= {(3, 10), (3, 11), (3, 12), (3, 13), (3, 14)}
    last = _dgram.STOCK_ACCOUNTING[max(_dgram.STOCK_ACCOUNTING)]

    class Fixed:
        _header_size = 8

    assert _dgram.stock_accounting((3, 15), Fixed) == last
    # 3.13.0's class has no _header_size: the header bytes are never uncounted
    assert _dgram.stock_accounting((3, 13), object)[2] == 0
    assert _dgram.stock_accounting((3, 13), Fixed)[2] == 8
    if sys.version_info[:2] in _dgram.STOCK_ACCOUNTING:
        assert _dgram.stock_accounting()[0] == _dgram.STOCK_ACCOUNTING[sys.version_info[:2]][0]
