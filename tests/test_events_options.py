"""The Events API: Options and reading in pieces (docs/events.md, "Options", "Reading in pieces").

Covers: TCP_NODELAY on by default (and off when asked), keepalive idle /
interval / count as given (kernel defaults when not), Options on a Unix
conn; reuse_input_buffer (memoryview, read-only) or bytes; a memoryview kept
after the call raises ValueError, a slice kept after the call still shows
its own bytes after more data flowed; returning the view as out; the pull
reader (peek/next/discard/inbound_buffered) with a length-prefixed protocol
in random splits, what a call that does not use the reader keeps; max_inbound;
InputStream begin/end. Each test runs native, on the stock loop and on uvloop.
"""
import asyncio
import pickle
import random
import socket
import struct

import pytest

from evioloop import Action, Events, InputStream, Options
from events_helpers import MODES, dup_sock, fill_pattern, harness, sha, until


@pytest.fixture(params=MODES)
def h(request):
    yield from harness(request.param)


def sockopts(conn):
    with dup_sock(conn) as s:
        return {
            'nodelay': s.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY),
            'keepalive': s.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE),
            'idle': s.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE),
            'interval': s.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL),
            'count': s.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT),
        }


def kernel_defaults():
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        return {
            'interval': s.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL),
            'count': s.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT),
            'idle': s.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE),
        }
    finally:
        s.close()


def run_with_options(h, options):
    """Serve with opened() returning `options`; the socket options seen in opened and data."""
    seen = {}

    def opened(conn):
        seen['opened'] = sockopts(conn)
        return options

    def data(conn, in_):
        seen['data'] = sockopts(conn)
        return in_

    async def main():
        async with h.serve(Events(opened=opened, data=data), 'tcp://127.0.0.1:0') as server:
            c = await h.connect(server)
            await c.send(b'o')
            assert await c.recv_exactly(1) == b'o'
    h.run(main())
    return seen


def test_tcp_nodelay_on_by_default(h):
    seen = run_with_options(h, None)
    assert seen['data']['nodelay'] != 0
    assert seen['data']['keepalive'] == 0


def test_tcp_nodelay_off(h):
    seen = run_with_options(h, Options(tcp_nodelay=False))
    assert seen['data']['nodelay'] == 0


def test_keepalive_as_given(h):
    seen = run_with_options(h, Options(tcp_keepalive=7, tcp_keepalive_interval=3,
                                       tcp_keepalive_count=4))
    d = seen['data']
    assert (d['keepalive'] != 0, d['idle'], d['interval'], d['count']) == (True, 7, 3, 4)
    assert d['nodelay'] != 0


def test_keepalive_idle_only_keeps_kernel_defaults(h):
    dflt = kernel_defaults()
    seen = run_with_options(h, Options(tcp_keepalive=11))
    d = seen['data']
    assert d['keepalive'] != 0 and d['idle'] == 11
    assert d['interval'] == dflt['interval']
    assert d['count'] == dflt['count']


def test_tcp_options_on_a_unix_conn_do_no_harm(h):
    async def main():
        path = h.unix_path()
        events = Events(opened=lambda c: Options(tcp_keepalive=5, tcp_keepalive_count=2),
                        data=lambda c, i: i)
        async with h.serve(events, f'unix://{path}') as server:
            c = await h.connect(server)
            await c.send(b'u')
            assert await c.recv_exactly(1) == b'u'
    h.run(main())


@pytest.mark.parametrize('reuse', [False, True])
def test_input_type(h, reuse):
    types = []

    def data(conn, in_):
        types.append((type(in_), getattr(in_, 'readonly', None)))
        return in_

    async def main():
        events = Events(opened=lambda c: Options(reuse_input_buffer=reuse), data=data)
        async with h.serve(events, 'tcp://127.0.0.1:0') as server:
            c = await h.connect(server)
            payload = fill_pattern(300_000, seed=1)
            await c.send(payload)
            assert sha(await c.recv_exactly(len(payload))) == sha(payload)
    h.run(main())
    if reuse:
        assert set(types) == {(memoryview, True)}
    else:
        assert {t for t, _ in types} == {bytes}


def test_kept_memoryview_refuses_access_and_slices_keep_their_bytes(h):
    kept = []
    slices = []

    def data(conn, in_):
        kept.append(in_)
        slices.append(in_[0:len(in_)])
        return b'.'

    async def main():
        events = Events(opened=lambda c: Options(reuse_input_buffer=True), data=data)
        async with h.serve(events, 'tcp://127.0.0.1:0') as server:
            c = await h.connect(server)
            sent = bytearray()
            for i in range(20):
                msg = bytes([65 + i]) * (1000 + 997 * i)
                sent += msg
                n = len(slices)
                await c.send(msg)
                await until(lambda n=n: len(slices) > n)
                await c.recv(1)
            await until(lambda: sum(len(s) for s in slices) == len(sent))
            return bytes(sent)

    sent = h.run(main())
    for view in kept:
        with pytest.raises(ValueError):
            bytes(view)
        with pytest.raises(ValueError):
            view[0]
    assert b''.join(bytes(s) for s in slices) == sent


def test_an_export_kept_after_the_call_keeps_its_bytes(h):
    """Like numpy.frombuffer: a buffer export of the view (pickle.PickleBuffer holds
    one) outlives the call; it must go on showing the bytes of that call."""
    kept = []

    def data(conn, in_):
        kept.append(pickle.PickleBuffer(in_))
        return b'.'

    async def main():
        events = Events(opened=lambda c: Options(reuse_input_buffer=True), data=data)
        async with h.serve(events, 'tcp://127.0.0.1:0') as server:
            c = await h.connect(server)
            sent = bytearray()
            for i in range(20):
                msg = bytes([97 + i]) * (3000 + 1013 * i)
                sent += msg
                n = len(kept)
                await c.send(msg)
                await until(lambda n=n: len(kept) > n)
                await c.recv(1)
            await until(lambda: sum(len(memoryview(k)) for k in kept) == len(sent))
            return bytes(sent)

    sent = h.run(main())
    assert b''.join(bytes(memoryview(k)) for k in kept) == sent
    for k in kept:
        k.release()


def test_returning_the_view_as_out(h):
    """The loop writes or copies a returned view before the buffer is reused."""
    def opened(conn):
        with dup_sock(conn) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        return Options(reuse_input_buffer=True)

    def data(conn, in_):
        return in_[0:len(in_)]      # a slice of the view

    async def main():
        async with h.serve(Events(opened=opened, data=data), 'tcp://127.0.0.1:0') as server:
            c = await h.connect(server, rcvbuf=4096)
            for i in range(30):
                msg = fill_pattern(60_000 + i, seed=i)
                await c.send(msg)
                # the server's output waits on this slow reader while more input flows
                await asyncio.sleep(0.01)
                await c.send(b'#' + bytes([i]) * 999)
                want = msg + b'#' + bytes([i]) * 999
                got = await c.recv_exactly(len(want), chunk=4096)
                assert got == want, i
    h.run(main())


# -- the pull reader ------------------------------------------------------------
@pytest.mark.parametrize('reuse', [False, True])
def test_pull_reader_length_prefixed(h, reuse):
    rng = random.Random(42)
    messages = [rng.randbytes(rng.choice([0, 1, 7, 100, 5000, 70_000])) for _ in range(200)]
    stream = b''.join(struct.pack('>I', len(m)) + m for m in messages)
    got = []
    checks = []

    def data(conn, in_):
        avail = conn.inbound_buffered
        checks.append(avail >= len(in_))
        while conn.inbound_buffered >= 4:
            head = conn.peek(4)
            assert isinstance(head, bytes) and len(head) == 4
            (n,) = struct.unpack('>I', head)
            if conn.inbound_buffered < 4 + n:
                break
            conn.discard(4)
            body = conn.next(n)
            assert isinstance(body, bytes)
            got.append(body)
        # everything left is what peek(-1) shows
        rest = conn.peek(-1)
        assert len(rest) == conn.inbound_buffered
        return struct.pack('>I', len(got))

    async def main():
        events = Events(opened=lambda c: Options(reuse_input_buffer=reuse), data=data)
        async with h.serve(events, 'tcp://127.0.0.1:0') as server:
            c = await h.connect(server)
            pos = 0
            while pos < len(stream):
                cut = min(len(stream), pos + rng.choice([1, 2, 3, 5, 100, 4096, 65536, 200_000]))
                await c.send(stream[pos:cut])
                pos = cut
                if rng.random() < 0.3:
                    await asyncio.sleep(0.001)
            await until(lambda: len(got) == len(messages), what='every message')
    h.run(main(), timeout=60)
    assert got == messages
    assert all(checks)


def test_reader_state_between_calls(h):
    """What a call leaves unread comes first next time; a call not using the reader
    keeps nothing."""
    seen = []

    def data(conn, in_):
        step = len(seen)
        if step == 0:           # 'abcdef': consume 2, leave 'cdef'
            seen.append(conn.next(2))
        elif step == 1:         # 'gh': reader sees 'cdefgh'; in_ is only the new bytes
            seen.append((bytes(in_), conn.inbound_buffered, conn.peek(-1)))
            conn.discard(1)     # leaves 'defgh'
        elif step == 2:         # 'ij', reader not used: nothing is kept
            seen.append(bytes(in_))
        else:                   # 'kl'
            seen.append((conn.inbound_buffered, conn.peek(-1)))
        return b'.'

    async def main():
        async with h.serve(Events(data=data), 'tcp://127.0.0.1:0') as server:
            c = await h.connect(server)
            for piece in (b'abcdef', b'gh', b'ij', b'kl'):
                await c.send(piece)
                assert await c.recv_exactly(1) == b'.'
    h.run(main())
    assert seen == [b'ab', (b'gh', 6, b'cdefgh'), b'ij', (2, b'kl')]


def test_max_inbound(h):
    closed = []

    def data(conn, in_):
        conn.peek(-1)           # uses the reader, consumes nothing: all of it is kept

    async def main():
        h.expect_errors = True
        events = Events(opened=lambda c: Options(max_inbound=64 << 10), data=data,
                        closed=lambda c, e: closed.append(e))
        async with h.serve(events, 'tcp://127.0.0.1:0') as server:
            c = await h.connect(server)
            try:
                for _ in range(64):
                    await c.send(b'm' * 4096)
                    await asyncio.sleep(0.001)
                    if closed:
                        break
            except OSError:
                pass
            await until(lambda: closed, what='closed past max_inbound')
            await c.expect_eof()
    h.run(main())
    assert len(closed) == 1
    assert isinstance(closed[0], BufferError), closed
    for ctx in h.errors:
        assert isinstance(ctx.get('exception'), BufferError), ctx


# -- InputStream ----------------------------------------------------------------
def test_input_stream_unit():
    s = InputStream()
    packet = b'first'
    assert s.begin(packet) is packet
    s.end(b'st')
    assert s.begin(b'!') == b'st!'
    s.end(b'')
    view = memoryview(b'view')
    assert s.begin(view) is view
    s.end(view[2:])
    del view
    assert bytes(s.begin(b'x')) == b'ewx'
    s.end(b'')
    assert s.begin(b'') == b''


def test_input_stream_lines_in_a_server(h):
    lines = [b'line %d %s' % (i, b'x' * (i * 37 % 3000)) for i in range(300)]
    stream = b''.join(line + b'\n' for line in lines)
    got = []
    same = []

    def opened(conn):
        conn.context = InputStream()
        return Options(reuse_input_buffer=True)

    def data(conn, in_):
        st = conn.context
        buf = st.begin(in_)
        if len(st) == 0:
            same.append(buf is in_)
        buf = bytes(buf)
        *complete, rest = buf.split(b'\n')
        got.extend(complete)
        st.end(rest)

    async def main():
        rng = random.Random(9)
        async with h.serve(Events(opened=opened, data=data), 'tcp://127.0.0.1:0') as server:
            c = await h.connect(server)
            pos = 0
            while pos < len(stream):
                cut = min(len(stream), pos + rng.randint(1, 9000))
                await c.send(stream[pos:cut])
                pos = cut
                await asyncio.sleep(0)
            await until(lambda: len(got) == len(lines), what='every line')
    h.run(main())
    assert got == lines
    assert same and all(same)


def test_close_action_with_reader_leftovers(h):
    def data(conn, in_):
        conn.next(1)
        return b'bye', Action.CLOSE

    async def main():
        async with h.serve(Events(data=data), 'tcp://127.0.0.1:0') as server:
            c = await h.connect(server)
            await c.send(b'abc')
            assert await c.recv_until_eof() == b'bye'
    h.run(main())
