"""Shared helpers for the network tests (tests/test_net_*.py, tests/test_thirdparty.py).

The tests check asyncio's transport contract, not evioloop's internals, so
that they hold for the stock transports evioloop uses today and for its
compiled ones later. Behaviour tests run on evioloop and on the stock loop:
the stock loop passing is what shows that an expectation is asyncio's own.
"""
import asyncio
import os
import socket
import sys

import evioloop

# name -> loop factory
LOOPS = {
    'evioloop': evioloop.new_event_loop,
    'asyncio': asyncio.SelectorEventLoop,
}
LOOP_KINDS = list(LOOPS)

PY313 = sys.version_info >= (3, 13)
PY312 = sys.version_info >= (3, 12)


class LoopErrors(AssertionError):
    pass


def run(kind, coro, *, timeout=60.0, allow_loop_errors=False):
    """Run `coro` on a new loop of `kind`, at most `timeout` seconds.

    Anything that reaches the loop's exception handler (an exception in a
    protocol callback, "Fatal error on transport", ...) fails the test unless
    `allow_loop_errors`; with it, the contexts are handed to the coroutine
    through `loop_errors(loop)`.
    """
    factory = LOOPS[kind]

    async def guarded():
        loop = asyncio.get_running_loop()
        if kind == 'evioloop':
            assert isinstance(loop, evioloop.Loop), type(loop)
        else:
            assert not isinstance(loop, evioloop.Loop), type(loop)
        errors = []
        loop._net_test_errors = errors
        loop.set_exception_handler(lambda _loop, ctx: errors.append(ctx))
        result = await asyncio.wait_for(coro, timeout)
        # let callbacks scheduled by the last step (connection_lost, ...) run
        for _ in range(3):
            await asyncio.sleep(0)
        if errors and not allow_loop_errors:
            raise LoopErrors('exception handler called: ' + '; '.join(
                f"{c.get('message')!r} {c.get('exception')!r}" for c in errors))
        return result

    if sys.version_info >= (3, 11):
        with asyncio.Runner(loop_factory=factory) as runner:
            return runner.run(guarded())
    loop = factory()
    try:
        asyncio.set_event_loop(loop)
        return loop.run_until_complete(guarded())
    finally:
        try:
            _cancel_all_tasks(loop)
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.run_until_complete(loop.shutdown_default_executor())
        finally:
            asyncio.set_event_loop(None)
            loop.close()


def _cancel_all_tasks(loop):
    tasks = [t for t in asyncio.all_tasks(loop) if not t.done()]
    for t in tasks:
        t.cancel()
    if tasks:
        loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))


def loop_errors(loop):
    """The exception-handler contexts recorded by run() for this loop."""
    return loop._net_test_errors


def open_fds():
    """The set of fd numbers open in this process (the listing's own fd aside)."""
    fds = {int(name) for name in os.listdir('/proc/self/fd')}
    # one of them was the listing's own directory fd, closed by now
    for fd in list(fds):
        try:
            os.fstat(fd)
        except OSError:
            fds.discard(fd)
    return fds


def fd_targets(fds):
    out = {}
    for fd in sorted(fds):
        try:
            out[fd] = os.readlink(f'/proc/self/fd/{fd}')
        except OSError:
            out[fd] = '?'
    return out


def port_of(server):
    return server.sockets[0].getsockname()[1]


def free_udp_port():
    """A port nobody listens on (UDP), to provoke ICMP port unreachable."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]
    finally:
        s.close()


def has_ipv6_loopback():
    try:
        s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    except OSError:
        return False
    try:
        s.bind(('::1', 0))
        return True
    except OSError:
        return False
    finally:
        s.close()


class Recorder(asyncio.Protocol):
    """A protocol that records every callback and the bytes it got.

    `events` holds the callback names in order; `lost` resolves with the
    exception passed to connection_lost (None for a clean close).
    """

    def __init__(self, *, eof_keep_open=False, pause_reading_on_pause_writing=False):
        loop = asyncio.get_running_loop()
        self.loop = loop
        self.events = []
        self.data = bytearray()
        self.transport = None
        self.made = loop.create_future()
        self.lost = loop.create_future()
        self.eof = loop.create_future()
        self.eof_keep_open = eof_keep_open
        self.lost_calls = 0
        self.lost_exc = None
        self.pauses = 0
        self.resumes = 0
        self.paused = False
        self._changed = asyncio.Event()

    def connection_made(self, transport):
        self.events.append('connection_made')
        self.transport = transport
        self.made.set_result(transport)

    def data_received(self, data):
        assert isinstance(data, bytes), type(data)
        assert data, 'data_received(b"")'
        self.events.append('data_received')
        self.data += data
        self._changed.set()

    def eof_received(self):
        self.events.append('eof_received')
        self.eof.set_result(None)
        self._changed.set()
        return self.eof_keep_open

    def pause_writing(self):
        self.events.append('pause_writing')
        assert not self.paused, 'pause_writing twice in a row'
        self.paused = True
        self.pauses += 1

    def resume_writing(self):
        self.events.append('resume_writing')
        assert self.paused, 'resume_writing without pause_writing'
        self.paused = False
        self.resumes += 1
        self._changed.set()

    def connection_lost(self, exc):
        self.events.append('connection_lost')
        self.lost_calls += 1
        self.lost_exc = exc
        if not self.lost.done():
            self.lost.set_result(exc)
        self._changed.set()

    async def wait_bytes(self, n):
        """Wait until at least n bytes came in."""
        while len(self.data) < n:
            if self.lost.done() or self.eof.done():
                raise AssertionError(
                    f'connection ended with {len(self.data)} of {n} bytes '
                    f'(events {self.callback_summary()})')
            self._changed.clear()
            await self._changed.wait()
        return bytes(self.data)

    def callback_summary(self):
        """The events with runs of data_received collapsed."""
        out = []
        for e in self.events:
            if out and out[-1] == e == 'data_received':
                continue
            out.append(e)
        return out


def check_callback_order(events, *, eof):
    """connection_made, data_received*, [eof_received], connection_lost exactly once."""
    assert events[0] == 'connection_made', events
    assert events.count('connection_made') == 1, events
    assert events.count('connection_lost') == 1, events
    assert events[-1] == 'connection_lost', events
    stream = [e for e in events if e not in ('pause_writing', 'resume_writing')]
    body = stream[1:-1]
    if eof:
        assert body.count('eof_received') == 1, events
        assert body[-1] == 'eof_received', events
        body = body[:-1]
    else:
        assert 'eof_received' not in body, events
    assert all(e == 'data_received' for e in body), events


async def recv_all(loop, sock, limit=None):
    """Read a non-blocking socket to EOF with sock_recv."""
    buf = bytearray()
    while True:
        chunk = await loop.sock_recv(sock, 1 << 18)
        if not chunk:
            return bytes(buf)
        buf += chunk
        if limit is not None and len(buf) >= limit:
            return bytes(buf)


def pattern(n, seed=0):
    """n deterministic, non-repeating-looking bytes."""
    import random
    return random.Random(seed).randbytes(n)
