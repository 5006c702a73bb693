"""Nothing grows with use: 100,000 connections, 100,000 timers, 10,000 loops.

Each test warms up first (the allocator's pools, the interned strings and
caches a first use creates), takes a baseline, does the work, collects
garbage and compares. The tolerances are per test below; each is far under
what one leaked object per connection, timer or loop would add (100,000
leaked objects of even 32 bytes would be 3 MiB of RSS and 100,000 in the
object count), so a real leak fails while the allocator's noise passes.

These run on evioloop only: the baseline is evioloop's own, not the stock
loop's (which the conformance suite and the other tests compare with).
"""
import asyncio
import gc
import os
import random
import sys

import evioloop
from evioloop.events import Events, listen

HERE = os.path.dirname(os.path.abspath(__file__))
PAGE = os.sysconf('SC_PAGE_SIZE')
MiB = 1 << 20


def rss():
    with open('/proc/self/statm') as f:
        return int(f.read().split()[1]) * PAGE


def snapshot(loop=None):
    gc.collect()
    gc.collect()
    snap = {'rss': rss(), 'objects': len(gc.get_objects()),
            'fds': len(os.listdir('/proc/self/fd'))}
    if loop is not None:
        snap['loop'] = loop._evio_stats()
    return snap


def check_growth(before, after, *, rss_mib, objects):
    grown_rss = (after['rss'] - before['rss']) / MiB
    grown_objects = after['objects'] - before['objects']
    report = (f'RSS {before["rss"] / MiB:.1f} -> {after["rss"] / MiB:.1f} MiB '
              f'(+{grown_rss:.2f}, bound {rss_mib}); objects {before["objects"]} -> '
              f'{after["objects"]} ({grown_objects:+d}, bound {objects})')
    assert grown_rss <= rss_mib, report
    assert grown_objects <= objects, report
    assert after['fds'] == before['fds'], report
    assert after.get('loop') == before.get('loop'), report
    return report


class Echo(asyncio.Protocol):
    made = lost = 0

    def connection_made(self, transport):
        Echo.made += 1
        self.transport = transport

    def data_received(self, data):
        self.transport.write(data)

    def connection_lost(self, exc):
        Echo.lost += 1


class EventsEcho(Events):
    opened_n = closed_n = 0

    def opened(self, conn):
        EventsEcho.opened_n += 1

    def data(self, conn, in_):
        return in_

    def closed(self, conn, err):
        EventsEcho.closed_n += 1


async def churn(count, addrs):
    proc = await asyncio.create_subprocess_exec(
        sys.executable, os.path.join(HERE, 'churn_client.py'), str(count), *addrs,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    assert out.decode().split() == ['ok', str(count)]


async def until(pred):
    for _ in range(1000):
        if pred():
            return
        await asyncio.sleep(0.01)
    raise AssertionError('timed out')


def test_100k_connections_leave_nothing_behind(tmp_path):
    # a third each: asyncio Protocol over TCP, over Unix, and the Events API
    # natively over TCP; half of them end with a reset
    Echo.made = Echo.lost = EventsEcho.opened_n = EventsEcho.closed_n = 0
    upath = str(tmp_path / 'echo.sock')

    async def main():
        loop = asyncio.get_running_loop()
        tcp = await loop.create_server(Echo, '127.0.0.1', 0, backlog=512)
        unix = await loop.create_unix_server(Echo, upath, backlog=512)
        events = await listen(EventsEcho(), 'tcp://127.0.0.1:0')
        host, port = tcp.sockets[0].getsockname()[:2]
        addrs = [f'{host}:{port}', upath, '%s:%d' % events.addrs[0][:2]]

        async def served(n):
            await churn(n, addrs)
            await until(lambda: Echo.lost == Echo.made and
                        EventsEcho.closed_n == EventsEcho.opened_n)

        await served(6000)
        before = snapshot(loop)
        await served(100_000)
        after = snapshot(loop)
        assert Echo.made == Echo.lost == 4000 + 66_667
        assert EventsEcho.opened_n == EventsEcho.closed_n == 2000 + 33_333
        print(check_growth(before, after, rss_mib=2, objects=100))
        tcp.close()
        unix.close()
        events.stop()
        await asyncio.gather(tcp.wait_closed(), unix.wait_closed(), events.wait_closed())

    evioloop.run(main())


def test_100k_timers_leave_nothing_behind():
    rnd = random.Random(8)

    async def main():
        loop = asyncio.get_running_loop()
        fired = []

        async def timers(n):
            # in waves of 2,000: a third cancelled, the rest fire in deadline order
            for _ in range(n // 2000):
                base = loop.time()
                expected = 0
                for i in range(2000):
                    delay = rnd.random() * 0.01
                    h = loop.call_at(base + delay, fired.append, (base + delay, i))
                    if i % 3 == 0:
                        h.cancel()
                    else:
                        expected += 1
                await asyncio.sleep(0.012)
                await until(lambda: len(fired) == expected)   # noqa: B023 (awaited here)
                assert fired == sorted(fired)
                assert all(loop.time() >= when for when, _ in fired)
                fired.clear()

        await timers(10_000)
        before = snapshot(loop)
        await timers(100_000)
        after = snapshot(loop)
        assert after['loop']['timers'] == 0
        print(check_growth(before, after, rss_mib=1, objects=50))

    evioloop.run(main())


def test_10k_loops_leave_nothing_behind():
    async def work():
        fut = asyncio.get_running_loop().create_future()
        asyncio.get_running_loop().call_soon(fut.set_result, 1)
        asyncio.get_running_loop().call_later(0, lambda: None)
        assert await fut == 1
        await asyncio.sleep(0)

    def loops(n):
        for _ in range(n):
            loop = evioloop.new_event_loop()
            try:
                loop.run_until_complete(work())
            finally:
                loop.close()

    loops(500)
    before = snapshot()
    loops(10_000)
    after = snapshot()
    print(check_growth(before, after, rss_mib=1, objects=50))
