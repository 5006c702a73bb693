"""Faults of the process around the loop: a callback that blocks the loop for
2 s (debug mode names it; the connections that sent meanwhile are all answered
afterwards), and fork() with connections open (the child runs a fresh loop;
the parent's connections are untouched, even after the child closed or
garbage-collected its inherited copy of the parent's loop).
"""
import asyncio
import gc
import logging
import os
import re
import socket
import threading
import time
import weakref

import pytest

import evioloop
from evioloop.events import Events, listen
from fault_helpers import LOOP_KINDS, Echo, connect, run, sha, sock_echo
from net_helpers import run_in_fork


@pytest.fixture(params=LOOP_KINDS)
def kind(request):
    return request.param


# ------------------------------------------------------------- a callback that blocks 2 s

def block_the_loop_for_2s(started):
    started.set()
    time.sleep(2)


def _client_thread(addr, payload, results, key, started):
    """A blocking client that sends while the loop is blocked, then reads the echo."""
    try:
        with socket.create_connection(addr, timeout=10) as s:
            results[key + '-connected'] = True
            if not started.wait(10):
                raise AssertionError('the loop never blocked')
            s.sendall(payload)
            results[key + '-sent-at'] = time.monotonic()
            got = bytearray()
            while len(got) < len(payload):
                b = s.recv(1 << 18)
                if not b:
                    raise AssertionError(f'EOF after {len(got)} bytes')
                got += b
            results[key] = sha(bytes(got))
    except BaseException as exc:  # noqa: BLE001 - reported to the test
        results[key] = repr(exc)


def test_blocking_callback_is_logged_and_everyone_answered(kind, caplog):
    payloads = {f'c{i}': os.urandom(200_000 + i) for i in range(4)}
    results = {}

    async def main():
        loop = asyncio.get_running_loop()
        loop.set_debug(True)
        server = await loop.create_server(Echo, '127.0.0.1', 0)
        evsrv = await listen(Events(data=lambda c, d: d), 'tcp://127.0.0.1:0')
        addrs = [server.sockets[0].getsockname()[:2], evsrv.addrs[0][:2]]
        started = threading.Event()
        threads = []
        try:
            for i, (key, payload) in enumerate(payloads.items()):
                t = threading.Thread(target=_client_thread, daemon=True,
                                     args=(addrs[i % 2], payload, results, key, started))
                threads.append(t)
                t.start()
            while sum(k.endswith('-connected') for k in results) < len(payloads):
                await asyncio.sleep(0.005)
            await asyncio.sleep(0.05)       # let the servers accept them
            loop.call_soon(block_the_loop_for_2s, started)
            unblocked = loop.create_future()
            loop.call_soon(unblocked.set_result, time.monotonic)
            await unblocked
            after_block = time.monotonic()
            for t in threads:
                while t.is_alive():
                    await asyncio.sleep(0.005)
            return after_block
        finally:
            started.set()
            server.close()
            evsrv.stop()
            await server.wait_closed()
            await evsrv.wait_closed()

    with caplog.at_level(logging.WARNING, logger='asyncio'):
        after_block = run(kind, main())
    for key, payload in payloads.items():
        assert results[key] == sha(payload), (key, results[key])
        # the data was sent while the loop was blocked
        assert results[key + '-sent-at'] < after_block
    msgs = [r.getMessage() for r in caplog.records
            if r.name == 'asyncio' and 'block_the_loop_for_2s' in r.getMessage()]
    assert len(msgs) == 1, msgs
    assert re.match(r'Executing <Handle .*block_the_loop_for_2s.*> took \d+\.\d{3} seconds$',
                    msgs[0]), msgs[0]
    assert float(msgs[0].rsplit(' ', 2)[-2]) >= 2.0


# ------------------------------------------------------------- fork with connections open

async def _child_round_trips():
    """In the child: a fresh loop serves an echo of its own, both APIs."""
    loop = asyncio.get_running_loop()
    assert isinstance(loop, evioloop.Loop)
    server = await loop.create_server(Echo, '127.0.0.1', 0)
    evsrv = await listen(Events(data=lambda c, d: d), 'tcp://127.0.0.1:0')
    try:
        out = []
        for addr in (server.sockets[0].getsockname()[:2], evsrv.addrs[0][:2]):
            s = await connect(loop, addr)
            try:
                msg = os.urandom(300_000)
                out.append(await sock_echo(loop, s, msg) == msg)
            finally:
                s.close()
        return out
    finally:
        server.close()
        evsrv.stop()
        await server.wait_closed()
        await evsrv.wait_closed()


def _fork(st, what):
    """Fork; the child does `what` to the inherited loop, then runs a fresh one.

    st holds the only references to the parent's loop and what uses it, so
    that the child can drop them all ('collect').
    """
    def child():
        note = ''
        if what == 'close':
            try:
                st['loop'].close()
                note = 'closed'
            except RuntimeError as exc:
                note = f'refused: {exc}'
        elif what == 'collect':
            ref = weakref.ref(st['loop'])
            st.clear()
            gc.collect()
            note = 'collected' if ref() is None else 'still referenced'
        ok = evioloop.run(_child_round_trips())
        return f'{ok}|{note}'
    return run_in_fork(child)


def _addrs(st):
    return [st['server'].sockets[0].getsockname()[:2], st['evsrv'].addrs[0][:2]]


async def _fork_setup(st):
    loop = asyncio.get_running_loop()

    class E(Echo):
        instances = st['protos']
    st['server'] = await loop.create_server(E, '127.0.0.1', 0)
    st['evsrv'] = await listen(Events(data=lambda c, d: d), 'tcp://127.0.0.1:0')
    for addr in _addrs(st):
        s = await connect(loop, addr)
        st['socks'].append(s)
        assert await sock_echo(loop, s, b'before fork') == b'before fork'


async def _fork_after(st):
    loop = asyncio.get_running_loop()
    # the parent's connections still echo, after the child is gone
    for s in st['socks']:
        msg = os.urandom(500_000)
        assert await sock_echo(loop, s, msg, timeout=10) == msg
    # and its servers still accept
    for addr in _addrs(st):
        s = await connect(loop, addr)
        try:
            assert await sock_echo(loop, s, b'new', timeout=10) == b'new'
        finally:
            s.close()


async def _fork_teardown(st):
    for s in st['socks']:
        s.close()
    st['server'].close()
    st['evsrv'].stop()
    await st['server'].wait_closed()
    await st['evsrv'].wait_closed()


@pytest.mark.skipif(not hasattr(os, 'fork'), reason='needs os.fork')
# 3.12+ warns when forking a process that has threads (executor workers of
# earlier tests, the client threads above): about the test process, not evioloop
@pytest.mark.filterwarnings('ignore:This process .* is multi-threaded')
@pytest.mark.parametrize('what', ['untouched', 'close', 'collect'])
def test_fork_with_connections_open(what, watchdog):
    """A parent with an asyncio server, an Events server and a connection to
    each forks; the child leaves its inherited copy of the loop alone, closes
    it, or drops every reference to it and collects it; then runs a fresh loop.

    evioloop only: the stock loop's selector shares the epoll set with the
    child in the same way, and closing it there unregisters the parent's
    self-pipe -- not a behaviour to take as the expected one.
    """
    watchdog(45)        # a parent whose fds the child unregistered would hang
    st = {'loop': evioloop.new_event_loop(), 'protos': [], 'socks': []}
    try:
        st['loop'].run_until_complete(_fork_setup(st))
        code, out = _fork(st, what)
        assert code == 0, out
        ok, note = out.split('|')
        assert ok == '[True, True]', out
        assert note == {'untouched': '', 'close': 'closed', 'collect': 'collected'}[what], out
        st['loop'].run_until_complete(asyncio.wait_for(_fork_after(st), 20))
    finally:
        try:
            if 'server' in st:
                st['loop'].run_until_complete(_fork_teardown(st))
        finally:
            for s in st['socks']:
                s.close()
            st['loop'].close()
