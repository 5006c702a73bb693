"""Shared helpers for the network tests (tests/test_net_*.py, tests/test_thirdparty.py).

The tests check asyncio's transport contract, not evioloop's internals, so
that they hold whichever transports evioloop uses (the stock ones on its
dispatch, or its compiled ones). Behaviour tests run on evioloop and on the
stock loop: the stock loop passing is what shows that an expectation is
asyncio's own.
"""
import asyncio
import contextlib
import os
import random
import select
import shutil
import signal
import socket
import sys
import tempfile
import time
import traceback

import evioloop

# name -> loop factory
LOOPS = {
    'evioloop': evioloop.new_event_loop,
    'stock': asyncio.SelectorEventLoop,
}
LOOP_KINDS = list(LOOPS)

PY313 = sys.version_info >= (3, 13)


class LoopErrors(AssertionError):
    pass


# id(loop) -> the exception-handler contexts recorded by run()
_LOOP_ERRORS = {}


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
        errors = _LOOP_ERRORS[id(loop)] = []
        loop.set_exception_handler(lambda _loop, ctx: errors.append(ctx))
        try:
            result = await asyncio.wait_for(coro, timeout)
        except BaseException as exc:
            if errors and hasattr(exc, 'add_note'):
                exc.add_note('exception handler calls: ' + _describe(errors))
            raise
        finally:
            del _LOOP_ERRORS[id(loop)]
        # let callbacks scheduled by the last step (connection_lost, ...) run
        for _ in range(3):
            await asyncio.sleep(0)
        if errors and not allow_loop_errors:
            raise LoopErrors('exception handler called: ' + _describe(errors))
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


def _describe(contexts):
    return '; '.join(f"{c.get('message')!r} {c.get('exception')!r}" for c in contexts)


def _cancel_all_tasks(loop):
    tasks = [t for t in asyncio.all_tasks(loop) if not t.done()]
    for t in tasks:
        t.cancel()
    if tasks:
        loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))


def loop_errors(loop):
    """The exception-handler contexts recorded by run() for this loop."""
    return _LOOP_ERRORS[id(loop)]


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

    def __init__(self, *, eof_keep_open=False):
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
    """n deterministic pseudo-random bytes."""
    return random.Random(seed).randbytes(n)


class Pair:
    """A connected stream pair made by `connected_pair`."""
    server = None          # the asyncio Server
    sproto = None          # the server-side protocol
    cproto = None          # the client-side protocol
    ctransport = None
    path = None            # Unix socket path


def keeping(make):
    """A protocol factory that calls make() and keeps what it made, in order:
    (factory, made)."""
    made = []

    def factory():
        p = make()
        made.append(p)
        return p
    return factory, made


@contextlib.asynccontextmanager
async def connected_pair(family, server_factory, client_factory, *, small_buffers=False):
    """Serve with `server_factory`, connect with `client_factory`, yield a Pair.

    family is 'tcp', 'tcp6' or 'unix'. With small_buffers the kernel buffers
    between the two are shrunk (client SO_RCVBUF, server SO_SNDBUF), so a
    transport's own buffer fills after a few KiB instead of megabytes.
    On exit every transport is closed and the server waited for.
    """
    loop = asyncio.get_running_loop()
    pair = Pair()
    sprotos = []
    got_one = loop.create_future()

    def sfactory():
        p = server_factory()
        sprotos.append(p)
        if not got_one.done():
            got_one.set_result(p)
        return p

    tmpdir = None
    csock = None
    try:
        if family == 'unix':
            tmpdir = tempfile.mkdtemp(prefix='evn-', dir='/tmp')
            pair.path = os.path.join(tmpdir, 's')
            pair.server = await loop.create_unix_server(sfactory, pair.path)
            csock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            addr = pair.path
        else:
            host = '::1' if family == 'tcp6' else '127.0.0.1'
            pair.server = await loop.create_server(sfactory, host, 0)
            # proto IPPROTO_TCP as getaddrinfo would give: the stock loop
            # only sets TCP_NODELAY on sockets that say they are TCP
            csock = socket.socket(socket.AF_INET6 if family == 'tcp6' else socket.AF_INET,
                                  socket.SOCK_STREAM, socket.IPPROTO_TCP)
            addr = pair.server.sockets[0].getsockname()[:2]
        if small_buffers:
            csock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        csock.setblocking(False)
        await loop.sock_connect(csock, addr)
        if family == 'unix':
            tr, pair.cproto = await loop.create_unix_connection(client_factory, sock=csock)
        else:
            tr, pair.cproto = await loop.create_connection(client_factory, sock=csock)
        csock = None
        pair.ctransport = tr
        pair.sproto = await asyncio.wait_for(got_one, 10)
        await until(lambda: getattr(pair.sproto, 'transport', None) is not None,
                    what='connection_made on the server side')
        if small_buffers:
            strans = pair.sproto.transport
            strans.get_extra_info('socket').setsockopt(
                socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        yield pair
    finally:
        if csock is not None:
            csock.close()
        transports = [p.transport for p in sprotos if getattr(p, 'transport', None)]
        if pair.ctransport is not None:
            transports.append(pair.ctransport)
        for t in transports:
            if not t.is_closing():
                t.abort()
        if pair.server is not None:
            pair.server.close()
            await asyncio.wait_for(pair.server.wait_closed(), 10)
        # let connection_lost callbacks (and the closing of the sockets) run
        for _ in range(5):
            await asyncio.sleep(0)
        if tmpdir is not None:
            shutil.rmtree(tmpdir, ignore_errors=True)


async def until(pred, timeout=10.0, what='condition'):
    """Wait (bounded) until pred() is true, yielding to the loop in between."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not pred():
        if loop.time() > end:
            raise AssertionError(f'timed out waiting for {what}')
        await asyncio.sleep(0.001)


async def spin(n=20, delay=0.0):
    """Let the loop run n iterations (and at least `delay` seconds)."""
    loop = asyncio.get_running_loop()
    end = loop.time() + delay
    for _ in range(n):
        await asyncio.sleep(0)
    while loop.time() < end:
        await asyncio.sleep(0.005)


def run_in_fork(child_main, timeout=20.0):
    """Run child_main() in a forked child; return (exit code, what it wrote).

    The child writes str(child_main()) (or its traceback: exit code 2) to a
    pipe and never returns into pytest. A child still running after
    `timeout` seconds is killed, and the test sees it hung.
    """
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never return into pytest
        code = 3
        try:
            os.close(r)
            os.write(w, str(child_main()).encode())
            code = 0
        except BaseException:  # noqa: BLE001 - report anything to the parent
            try:
                os.write(w, traceback.format_exc().encode())
            except BaseException:  # noqa: BLE001
                pass
            code = 2
        finally:
            os._exit(code)
    os.close(w)
    chunks = []
    try:
        end = time.monotonic() + timeout
        while True:
            left = end - time.monotonic()
            if left <= 0 or not select.select([r], [], [], left)[0]:
                os.kill(pid, signal.SIGKILL)     # a hung child fails the test
                chunks.append(b'(the child hung: killed)')
                break
            chunk = os.read(r, 65536)
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(r)
        _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), b''.join(chunks).decode()


class Ticker:
    """Self-rescheduling callbacks; `count` is the iteration number.

    Several chains run, so that the ready queue is never empty; the first
    one counts (each chain runs exactly once per iteration).
    """

    def __init__(self, loop, chains=3):
        self.loop = loop
        self.count = 0
        self.running = True
        for i in range(chains):
            loop.call_soon(self.tick, i == 0)

    def tick(self, counts):
        if counts:
            self.count += 1
        if self.running:
            self.loop.call_soon(self.tick, counts)


async def drain_datagrams(sock, n, timeout=10.0):
    """Read n datagrams from a plain non-blocking socket, yielding to the loop."""
    got = []
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while len(got) < n:
        assert loop.time() < end, f'{len(got)} of {n} datagrams'
        try:
            got.append(sock.recv(1 << 18))
        except BlockingIOError:
            await asyncio.sleep(0.001)
    return got
