"""Property test: random sequences of stream transport calls, evioloop against the stock loop.

A client transport (create_connection / create_unix_connection) gets a random
sequence of calls -- write, writelines, a bad write, pause_reading,
resume_reading, write_eof, close, abort, get_write_buffer_size, is_closing,
set_write_buffer_limits -- mixed with what the peer (a plain socket) does:
send bytes, shut down its side. The same sequence runs on a new stock loop and
on a new evioloop loop, and everything the stock loop makes deterministic must
be the same on evioloop (the stock answer is the expected one):

* for each call: whether it raised and the exception type, is_closing() after
  it, and get_write_buffer_size() (small writes and a peer that reads all the
  time: the kernel takes them at once, 0 on an idle connection);
* a 1 MiB write (the kernel buffers are shrunk to 64 KiB): the protocol is
  paused and the transport buffers right after it, on both loops; the test
  then waits for it to drain (resume_writing) before the next call;
* the protocol's callbacks in order (runs of data_received collapsed),
  connection_lost's exception type, the bytes the client received;
* the bytes the peer received (hashed) and how its read ended (EOF or reset);
* what reached the loop's exception handler (the exception types).
"""
import asyncio
import contextlib
import os
import shutil
import socket
import tempfile

import pytest
from fuzz_helpers import fuzz, sha
from hypothesis import given
from hypothesis import strategies as st
from net_helpers import Recorder, loop_errors, run, until

SMALL = st.integers(1, 300)
calls = st.one_of(
    st.tuples(st.just('write'), SMALL),
    st.tuples(st.just('write_empty')),
    st.tuples(st.just('write_bad')),
    # (no empty item: on the stock loop of 3.12 writelines([b'']) leaves an empty
    # view in the buffer and close() then never calls connection_lost)
    st.tuples(st.just('writelines'), st.lists(st.integers(1, 200), max_size=3)),
    st.tuples(st.just('pause_reading')),
    st.tuples(st.just('resume_reading')),
    st.tuples(st.just('write_eof')),
    st.tuples(st.just('close')),
    st.tuples(st.just('abort')),
    st.tuples(st.just('get_write_buffer_size')),
    st.tuples(st.just('is_closing')),
    st.tuples(st.just('set_write_buffer_limits'),
              st.one_of(st.none(), st.integers(-1, 5000)),
              st.one_of(st.none(), st.integers(-1, 5000))),
    st.tuples(st.just('write_big')),
    st.tuples(st.just('peer_send'), SMALL),
    st.tuples(st.just('peer_eof')),
)
sequences = st.lists(calls, min_size=1, max_size=12)
# far more than the (shrunk) kernel buffers take at once: the transport must
# buffer most of it and pause the protocol, whatever the kernel's sizes
BIG = 1 << 20
SMALL_KERNEL_BUFFER = 65536


def payload(i, n):
    return bytes([0x41 + i % 26]) * n


def apply(tr, call, i, peer):
    """Do `call` on transport `tr`; what it returned (None for no value)."""
    name = call[0]
    if name == 'write':
        return tr.write(payload(i, call[1]))
    if name == 'write_big':
        return tr.write(payload(i, BIG))
    if name == 'write_empty':
        return tr.write(b'')
    if name == 'write_bad':
        return tr.write('not bytes')
    if name == 'writelines':
        if tr.is_closing():
            # the stock loop of 3.12 raises TypeError ('NoneType' object is not
            # callable, its _write_ready is gone): a CPython bug, not asyncio's contract
            return 'skipped'
        return tr.writelines([payload(i + k, n) for k, n in enumerate(call[1])])
    if name == 'set_write_buffer_limits':
        return tr.set_write_buffer_limits(high=call[1], low=call[2])
    if name == 'peer_send':
        return peer.send(payload(i, call[1]))
    if name == 'peer_eof':
        return peer.shutdown(socket.SHUT_WR)
    return getattr(tr, name)()


async def settle():
    # loopback delivers at once; a few iterations and a short sleep let both
    # loops read what the peer sent and run the callbacks it causes
    for _ in range(3):
        await asyncio.sleep(0)
    await asyncio.sleep(0.003)


async def scenario(family, seq, path):
    loop = asyncio.get_running_loop()
    if family == 'unix':
        lsock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        lsock.bind(path)
    else:
        lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        lsock.bind(('127.0.0.1', 0))
    lsock.listen(1)
    lsock.setblocking(False)
    peer = None
    tr = None
    try:
        accept = asyncio.ensure_future(loop.sock_accept(lsock))
        if family == 'unix':
            csock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        else:
            # IPPROTO_TCP as getaddrinfo gives: the stock loop sets TCP_NODELAY then
            csock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        try:
            csock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SMALL_KERNEL_BUFFER)
            csock.setblocking(False)
            await loop.sock_connect(csock, lsock.getsockname())
            if family == 'unix':
                tr, proto = await loop.create_unix_connection(Recorder, sock=csock)
            else:
                tr, proto = await loop.create_connection(Recorder, sock=csock)
        except BaseException:
            csock.close()
            raise
        peer, _ = await accept
        peer.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SMALL_KERNEL_BUFFER)
        peer.setblocking(False)
        got = bytearray()
        ending = []

        async def reader():
            try:
                while True:
                    b = await loop.sock_recv(peer, 65536)
                    if not b:
                        ending.append('eof')
                        return
                    got.extend(b)
            except ConnectionResetError:
                ending.append('reset')
        reading = asyncio.ensure_future(reader())
        steps = []
        for i, call in enumerate(seq):
            try:
                ret = apply(tr, call, i, peer)
                raised = None
            except Exception as exc:
                ret, raised = None, type(exc).__name__
            if call[0] not in ('get_write_buffer_size', 'is_closing') and ret != 'skipped':
                ret = None          # (peer.send's count, write's None: not the transport's)
            steps.append((call, raised, ret, tr.is_closing()))
            if call[0] == 'write_big' and raised is None:
                # right after the write: paused and buffered, unless the transport was
                # closing (the write is then dropped); then wait until the peer took all
                steps.append(('big', proto.paused, tr.get_write_buffer_size() > 0))
                await until(lambda: tr.get_write_buffer_size() == 0 or proto.lost.done(),
                            what='the big write to drain')
            await settle()
            steps.append(('after', tr.is_closing(), tr.get_write_buffer_size()))
        if not tr.is_closing():
            tr.close()
        await asyncio.wait_for(proto.lost, 10)
        with contextlib.suppress(OSError):      # (the peer may have been reset)
            peer.shutdown(socket.SHUT_WR)
        await asyncio.wait_for(reading, 10)
        return dict(steps=steps, events=proto.callback_summary(),
                    lost=type(proto.lost_exc).__name__, client_got=sha(bytes(proto.data)),
                    peer_got=(len(got), sha(bytes(got))), ending=ending,
                    loop_errors=[type(c.get('exception')).__name__ for c in loop_errors(loop)])
    finally:
        if tr is not None and not tr.is_closing():
            tr.abort()
        if peer is not None:
            peer.close()
        lsock.close()


@pytest.fixture
def unix_dir():
    d = tempfile.mkdtemp(prefix='evfzt-', dir='/tmp')
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.mark.parametrize('family', ['tcp', 'unix'])
@fuzz(30)
@given(seq=sequences)
def test_transport_calls_same_as_stock(family, unix_dir, seq):
    path = os.path.join(unix_dir, 's')
    results = {}
    for kind in ('stock', 'evioloop'):
        if os.path.exists(path):
            os.remove(path)
        results[kind] = run(kind, scenario(family, seq, path), timeout=30,
                             allow_loop_errors=True)
    assert results['evioloop'] == results['stock']
