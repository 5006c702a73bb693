"""Pipe transports (connect_read_pipe / connect_write_pipe), on evioloop and the stock loop.

Most tests run one scenario on both loops and compare: the stock loop's
answer is the expected one (`both`). The scenarios record what a protocol
sees (callbacks in order, bytes, exception types, buffer sizes), never timings.
"""
import asyncio
import contextvars
import errno
import hashlib
import os
import pty
import socket
import sys
import tempfile

import pytest

from net_helpers import LOOP_KINDS, pattern, run, spin, until

BULK = 52 * 1024 * 1024
# 3.10's stock read pipe transport has no is_reading() (NotImplementedError);
# evioloop's has it on every version
HAS_IS_READING = sys.version_info >= (3, 11)


@pytest.fixture(params=LOOP_KINDS)
def kind(request):
    return request.param


def both(scenario, **kw):
    """Run scenario() on evioloop and on the stock loop; the two must agree."""
    got = run('evioloop', scenario(), **kw)
    expected = run('stock', scenario(), **kw)
    assert got == expected
    return expected


class Rec(asyncio.Protocol):
    """Records the callbacks (in order) and the bytes of one pipe end."""

    def __init__(self, *, pause_in_data=False):
        loop = asyncio.get_running_loop()
        self.events = []
        self.data = bytearray()
        self.sha = hashlib.sha256()
        self.nbytes = 0
        self.keep = True
        self.transport = None
        self.lost = loop.create_future()
        self.resumed = asyncio.Event()
        self.pause_in_data = pause_in_data

    def connection_made(self, transport):
        self.events.append('made')
        self.transport = transport

    def data_received(self, data):
        assert type(data) is bytes and data
        if not self.events or self.events[-1] != 'data':
            self.events.append('data')
        self.nbytes += len(data)
        self.sha.update(data)
        if self.keep:
            self.data += data
        if self.pause_in_data:
            self.transport.pause_reading()

    def eof_received(self):
        self.events.append(('eof', self.transport.is_closing()))
        return True     # ignored by pipe transports: connection_lost follows

    def pause_writing(self):
        self.events.append('pause')
        self.resumed.clear()

    def resume_writing(self):
        self.events.append('resume')
        self.resumed.set()

    def connection_lost(self, exc):
        self.events.append(('lost', type(exc).__name__ if exc else None,
                            getattr(exc, 'errno', None)))
        self.lost.set_result(exc)


def pipe_pair(how):
    """(read file, write file) of a pipe or of a connected socket pair."""
    if how == 'pipe':
        r, w = os.pipe()
        return os.fdopen(r, 'rb', buffering=0), os.fdopen(w, 'wb', buffering=0)
    a, b = socket.socketpair()
    return a, b


@pytest.mark.parametrize('how', ['pipe', 'socketpair'])
def test_bulk_through_a_pipe_arrives_whole(kind, how):
    src = pattern(BULK, seed=7)
    want = hashlib.sha256(src).hexdigest()

    async def main():
        loop = asyncio.get_running_loop()
        rf, wf = pipe_pair(how)
        rt, rp = await loop.connect_read_pipe(Rec, rf)
        rp.keep = False
        wt, wp = await loop.connect_write_pipe(Rec, wf)
        view = memoryview(src)
        step = 1 << 20
        for off in range(0, BULK, step):
            wt.write(view[off:off + step])
            if wp.events[-1] == 'pause':
                await wp.resumed.wait()
        wt.close()
        assert await wp.lost is None
        assert await rp.lost is None
        return rp.sha.hexdigest(), rp.nbytes, rp.events, wp.events.count('pause') > 0
    digest, n, events, paused = run(kind, main())
    assert (digest, n) == (want, BULK)
    assert events == ['made', 'data', ('eof', True), ('lost', None, None)]
    assert paused       # 1 MiB writes overrun the 64 KiB high-water mark


def test_regular_file_refused_with_the_stock_message():
    async def main():
        loop = asyncio.get_running_loop()
        out = []
        with tempfile.TemporaryFile() as f:
            for connect in (loop.connect_read_pipe, loop.connect_write_pipe):
                try:
                    await connect(asyncio.Protocol, f)
                except ValueError as exc:
                    out.append(str(exc))
                # the caller's file is left open
                out.append(f.closed)
        return out
    got = both(main)
    assert got == ['Pipe transport is for pipes/sockets only.', False,
                   'Pipe transport is only for pipes, sockets and character devices', False]


def test_pty_master_reads_then_eio_and_tty_write_pipe():
    async def main():
        loop = asyncio.get_running_loop()
        master, slave = pty.openpty()
        mf = os.fdopen(master, 'rb', buffering=0)
        sf = os.fdopen(slave, 'wb', buffering=0)
        rt, rp = await loop.connect_read_pipe(Rec, mf)
        wt, wp = await loop.connect_write_pipe(Rec, sf)
        wt.write(b'one\ntwo\n')
        await until(lambda: rp.data.count(b'\n') >= 2, what='tty output')
        wt.close()          # closes the slave: the master's next read is EIO
        lost = await asyncio.wait_for(rp.lost, 10)
        await wp.lost
        return bytes(rp.data), rp.events, wp.events, type(lost).__name__, lost.errno
    data, revents, wevents, exc_type, err = both(main)
    assert data == b'one\r\ntwo\r\n'       # the tty's output processing
    assert (exc_type, err) == ('OSError', errno.EIO)
    assert revents == ['made', 'data', ('lost', 'OSError', errno.EIO)]
    assert wevents == ['made', ('lost', None, None)]


def test_char_device_write_pipe():
    async def main():
        loop = asyncio.get_running_loop()
        f = open('/dev/null', 'wb', buffering=0)
        wt, wp = await loop.connect_write_pipe(Rec, f)
        wt.write(b'x' * 100000)
        sizes = [wt.get_write_buffer_size()]
        same = wt.get_extra_info('pipe') is f
        wt.close()
        await wp.lost
        return sizes, wp.events, same, f.closed
    assert both(main) == ([0], ['made', ('lost', None, None)], True, True)


def reading(transport):
    return transport.is_reading() if HAS_IS_READING else None


def test_pause_and_resume_reading():
    async def main():
        loop = asyncio.get_running_loop()
        rf, wf = pipe_pair('pipe')
        rt, rp = await loop.connect_read_pipe(lambda: Rec(pause_in_data=True), rf)
        out = [reading(rt)]
        os.write(wf.fileno(), b'a' * 10)
        await until(lambda: rp.nbytes, what='first data')
        out.append(reading(rt))
        os.write(wf.fileno(), b'b' * 10)
        await spin(20)
        out.append(rp.nbytes)           # nothing read while paused
        rt.pause_reading()              # a second pause is a no-op
        rt.resume_reading()
        out.append(reading(rt))
        await until(lambda: rp.nbytes == 20, what='data after resume')
        rt.resume_reading()
        rt.resume_reading()
        wf.close()
        await rp.lost
        out.append(reading(rt))
        rt.pause_reading()
        rt.resume_reading()             # both no-ops once closed
        return out, bytes(rp.data), rp.events
    out, data, events = both(main)
    if HAS_IS_READING:
        assert out == [True, False, 10, True, False]
    else:
        assert out == [None, None, 10, None, None]
    assert data == b'a' * 10 + b'b' * 10
    assert events == ['made', 'data', ('eof', True), ('lost', None, None)]


def test_write_buffer_sizes_and_flow_control():
    async def main():
        loop = asyncio.get_running_loop()
        rf, wf = pipe_pair('pipe')
        wt, wp = await loop.connect_write_pipe(Rec, wf)
        os.set_blocking(rf.fileno(), False)     # read by hand below
        out = [wt.get_write_buffer_limits()]
        wt.set_write_buffer_limits(high=200_000)
        out.append(wt.get_write_buffer_limits())
        for _ in range(10):
            wt.write(b'z' * 50_000)
            out.append((wt.get_write_buffer_size(), list(wp.events)))
        wt.write(bytearray(b'q' * 1000))
        wt.write(memoryview(b'm' * 1000))
        out.append(wt.get_write_buffer_size())
        got = bytearray()
        while len(got) < 502_000:
            await asyncio.sleep(0)
            try:
                got += os.read(rf.fileno(), 1 << 16)
            except BlockingIOError:
                pass
        wt.close()
        await wp.lost
        rf.close()
        return out, hashlib.sha256(got).hexdigest(), wp.events
    out, digest, events = both(main)
    assert out[0] == (16384, 65536)
    assert out[1] == (50000, 200000)
    assert events[0] == 'made' and 'pause' in events and 'resume' in events
    assert digest == hashlib.sha256(b'z' * 500_000 + b'q' * 1000 + b'm' * 1000).hexdigest()


def test_eof_order():
    async def main():
        loop = asyncio.get_running_loop()
        order = []

        class P(Rec):
            def eof_received(self):
                order.append('eof')
                loop.call_soon(order.append, 'step after eof')
                return super().eof_received()

            def connection_lost(self, exc):
                order.append('lost')
                super().connection_lost(exc)

        rf, wf = pipe_pair('pipe')
        rt, rp = await loop.connect_read_pipe(P, rf)
        os.write(wf.fileno(), b'tail')
        wf.close()
        await rp.lost
        return order, rp.events, bytes(rp.data), rt.is_closing()
    order, events, data, closing = both(main)
    # both are queued when EOF is read, each a step of its own: so what
    # eof_received schedules runs after connection_lost
    assert order == ['eof', 'lost', 'step after eof']
    assert events == ['made', 'data', ('eof', True), ('lost', None, None)]
    assert (data, closing) == (b'tail', True)


@pytest.mark.parametrize('queued', [True, False])
def test_reader_closing_breaks_the_write_pipe(queued):
    async def main():
        loop = asyncio.get_running_loop()
        rf, wf = pipe_pair('pipe')
        wt, wp = await loop.connect_write_pipe(Rec, wf)
        if queued:
            wt.write(b'x' * 200_000)        # more than the pipe holds
        before = wt.get_write_buffer_size()
        rf.close()                          # the reading side goes away
        exc = await asyncio.wait_for(wp.lost, 10)
        wt.write(b'after')                  # dropped: the transport is closed
        return before, type(exc).__name__, wp.events, wt.get_write_buffer_size()
    before, exc_type, events, after = both(main)
    if queued:
        assert before > 0 and exc_type == 'BrokenPipeError'
    else:
        assert before == 0 and exc_type == 'NoneType'
    assert after == 0


def test_write_to_a_closed_reader_before_the_loop_notices():
    async def main():
        loop = asyncio.get_running_loop()
        rf, wf = pipe_pair('pipe')
        wt, wp = await loop.connect_write_pipe(Rec, wf)
        rf.close()
        wt.write(b'x')      # EPIPE from the kernel, inside write()
        exc = await asyncio.wait_for(wp.lost, 10)
        return type(exc).__name__, getattr(exc, 'errno', None), wp.events
    assert both(main)[:2] == ('BrokenPipeError', errno.EPIPE)


@pytest.mark.parametrize('how', ['close', 'abort'])
def test_close_while_output_is_queued(how):
    async def main():
        loop = asyncio.get_running_loop()
        rf, wf = pipe_pair('pipe')
        wt, wp = await loop.connect_write_pipe(Rec, wf)
        os.set_blocking(rf.fileno(), False)     # read by hand below
        src = pattern(300_000, seed=3)
        wt.write(src)
        queued = wt.get_write_buffer_size()
        getattr(wt, how)()
        out = [queued > 0, wt.is_closing(), wt.get_write_buffer_size()]
        await spin(5)
        out.append(wp.lost.done())
        got = bytearray()
        while True:
            await asyncio.sleep(0)
            try:
                chunk = os.read(rf.fileno(), 1 << 16)
            except BlockingIOError:
                continue
            if not chunk:
                break
            got += chunk
        await wp.lost
        rf.close()
        return out, hashlib.sha256(got).hexdigest() == hashlib.sha256(src).hexdigest(), \
            len(got), wp.events
    out, whole, n, events = both(main)
    if how == 'close':
        # the queue drains first; connection_lost(None) comes after it
        assert out[:2] == [True, True] and out[2] > 0 and out[3] is False
        assert whole and events == ['made', 'pause', 'resume', ('lost', None, None)]
    else:
        assert out == [True, True, 0, True]
        assert not whole and 0 < n < 300_000


def test_contexts_seen_by_the_protocol():
    var = contextvars.ContextVar('var', default='unset')

    async def main():
        loop = asyncio.get_running_loop()
        seen = []

        class P(Rec):
            def connection_made(self, transport):
                seen.append(('made', var.get()))
                var.set('made')
                super().connection_made(transport)

            def data_received(self, data):
                seen.append(('data', var.get()))
                var.set('data')
                super().data_received(data)

            def connection_lost(self, exc):
                seen.append(('lost', var.get()))
                super().connection_lost(exc)

        var.set('caller')
        rf, wf = pipe_pair('pipe')
        rt, rp = await loop.connect_read_pipe(P, rf)
        seen.append(('caller', var.get()))
        os.write(wf.fileno(), b'1')
        await until(lambda: rp.nbytes == 1, what='first byte')
        os.write(wf.fileno(), b'2')
        await until(lambda: rp.nbytes == 2, what='second byte')
        wf.close()
        await rp.lost
        return seen
    seen = both(main)
    assert seen[0] == ('made', 'caller')


def test_data_received_error_is_reported_and_reading_goes_on():
    async def main():
        loop = asyncio.get_running_loop()

        class P(Rec):
            def data_received(self, data):
                super().data_received(data)
                if self.nbytes == 1:
                    raise ZeroDivisionError

        errors = []
        loop.set_exception_handler(lambda lp, ctx: errors.append(type(ctx['exception'])))
        rf, wf = pipe_pair('pipe')
        rt, rp = await loop.connect_read_pipe(P, rf)
        os.write(wf.fileno(), b'1')
        await until(lambda: errors, what='the error')
        os.write(wf.fileno(), b'2')
        wf.close()
        await rp.lost
        return errors, bytes(rp.data), rp.events
    assert both(main) == ([ZeroDivisionError], b'12',
                          ['made', 'data', ('eof', True), ('lost', None, None)])
