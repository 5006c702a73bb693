"""Shared helpers of the Events API tests (tests/test_events_*.py).

docs/events.md is the contract these tests check. Every behaviour test runs
in each *mode*, with the same assertions:

* ``native``: an evioloop loop (`evioloop.new_event_loop()`), plain addresses:
  the server is native (compiled owners in the loop's fd table);
* ``stock``: the stock asyncio loop: the portable `asyncio.Protocol` adapter;
* ``uvloop``: uvloop's loop, portable (skipped only when uvloop does not import);
* ``net``: an evioloop loop with a ``-net`` scheme suffix (``tcp-net://``):
  portable on evioloop. Used by a subset of the tests (fixture `hn`).

`Harness.run(coro)` runs a coroutine on a new loop of the mode, bounded in
time, and fails the test when anything reaches the loop's exception handler,
unless the test said it expects errors (`h.expect_errors = True`), in which
case the contexts are in `h.errors` for the test to check.

Clients are plain non-blocking sockets driven with the loop's ``sock_*``
methods (`Client`), or blocking sockets with a timeout used from threads.
Every socket, thread and Unix socket directory a helper makes is cleaned up
and checked at the end of the test: a Unix socket file left behind fails it.
"""
import asyncio
import contextlib
import hashlib
import os
import random
import shutil
import socket
import stat
import sys
import tempfile
import threading
import time

import pytest

import evioloop
from net_helpers import has_ipv6_loopback  # noqa: F401  (re-exported for the Events tests)

MODES = ['native', 'stock', 'uvloop']
ALL_MODES = MODES + ['net']


def _uvloop():
    try:
        import uvloop
    except ImportError:
        pytest.skip('uvloop is not installed')
    return uvloop


def _warm_up_uvloop():
    # uvloop's first loop opens a pipe pair that stays open for the life of
    # the process (libuv's signal pipe): open it now, before any test's fd
    # snapshot, so that the fd check sees only what a test itself leaked.
    try:
        import uvloop
    except ImportError:
        return
    loop = uvloop.new_event_loop()
    try:
        loop.run_until_complete(asyncio.sleep(0))
    finally:
        loop.close()


_warm_up_uvloop()


def loop_factory(mode):
    if mode in ('native', 'net'):
        return evioloop.new_event_loop
    if mode == 'stock':
        return asyncio.SelectorEventLoop
    if mode == 'uvloop':
        return _uvloop().new_event_loop
    raise ValueError(mode)


class UnexpectedLoopErrors(AssertionError):
    pass


def describe_errors(contexts):
    return '; '.join(f"{c.get('message')!r} {c.get('exception')!r}" for c in contexts)


class Harness:
    """One test's mode: its loop, its addresses, its cleanup."""

    def __init__(self, mode):
        self.mode = mode
        self.portable = mode != 'native'
        self.errors = []            # exception-handler contexts
        self.expect_errors = False
        self._clients = []
        self._threads = []
        self._dirs = []
        self.loop = None

    # -- addresses ----------------------------------------------------------
    def addr(self, address):
        """`address` as this mode spells it: with a -net scheme suffix in net mode."""
        if self.mode != 'net':
            return address
        if '://' not in address:
            return 'tcp-net://' + address
        scheme, rest = address.split('://', 1)
        return f'{scheme}-net://{rest}'

    def tmpdir(self):
        d = tempfile.mkdtemp(prefix='evt-', dir='/tmp')
        self._dirs.append(d)
        return d

    def unix_path(self, name='s'):
        return os.path.join(self.tmpdir(), name)

    # -- running ------------------------------------------------------------
    def run(self, coro, timeout=30.0):
        """Run `coro` on a new loop of this mode for at most `timeout` seconds."""
        factory = loop_factory(self.mode)
        loop = factory()
        self.loop = loop
        errors = self.errors
        loop.set_exception_handler(lambda _loop, ctx: errors.append(ctx))
        self._check_loop_type(loop)

        async def guarded():
            try:
                return await asyncio.wait_for(coro, timeout)
            finally:
                # let callbacks scheduled by the last step run
                for _ in range(5):
                    await asyncio.sleep(0)

        try:
            asyncio.set_event_loop(loop)
            try:
                result = loop.run_until_complete(guarded())
            except BaseException as exc:
                if errors:
                    exc.add_note('exception handler calls: ' + describe_errors(errors))
                raise
            finally:
                self._close_clients()
                try:
                    _cancel_all_tasks(loop)
                    loop.run_until_complete(loop.shutdown_asyncgens())
                    loop.run_until_complete(loop.shutdown_default_executor())
                finally:
                    asyncio.set_event_loop(None)
                    loop.close()
        finally:
            self._join_threads()
        if errors and not self.expect_errors:
            raise UnexpectedLoopErrors('exception handler called: ' + describe_errors(errors))
        return result

    def _check_loop_type(self, loop):
        if self.mode in ('native', 'net'):
            assert isinstance(loop, evioloop.Loop), type(loop)
        elif self.mode == 'stock':
            assert type(loop) is asyncio.SelectorEventLoop, type(loop)
        else:
            assert type(loop).__module__.startswith('uvloop'), type(loop)

    async def listen(self, events, *addrs, **kw):
        """evioloop.listen() with this mode's addresses."""
        addrs = [self.addr(a) for a in addrs]
        server = await evioloop.listen(events, *addrs, **kw)
        try:
            self.check_mode(server, addrs, kw.get('portable', False))
        except BaseException:
            server.stop()
            await asyncio.wait_for(server.wait_closed(), 10)
            raise
        return server

    def check_mode(self, server, addrs=(), portable=False):
        """The server runs the way this mode says (where the Server tells)."""
        native = getattr(server, 'native', None)   # not in the contract: checked if there
        if native is None:
            return
        portable = portable or any('-net://' in a for a in addrs)
        want = self.mode == 'native' and not portable
        assert native == want, (self.mode, server)

    @contextlib.asynccontextmanager
    async def serve(self, events, *addrs, **kw):
        """listen() in this mode; on exit stop the server and wait (bounded)."""
        server = await self.listen(events, *addrs, **kw)
        try:
            yield server
        finally:
            server.stop()
            await asyncio.wait_for(server.wait_closed(), 10)

    # -- clients ------------------------------------------------------------
    async def connect(self, server_or_addr, index=0, *, rcvbuf=None, sndbuf=None,
                      family=None):
        """A `Client` connected to listener `index` of a server (or to an address)."""
        if isinstance(server_or_addr, (tuple, str)):
            fam, target = target_of(server_or_addr)
        else:
            fam, target = target_of(server_or_addr.addrs[index])
        if family is not None:
            fam = family
        if fam == socket.AF_UNIX:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        else:
            sock = socket.socket(fam, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        c = Client(sock)
        self._clients.append(c)
        if rcvbuf:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        if sndbuf:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf)
        sock.setblocking(False)
        loop = asyncio.get_running_loop()
        await asyncio.wait_for(loop.sock_connect(sock, target), 10)
        return c

    def blocking_client(self, server_or_addr, index=0, *, timeout=20.0):
        """A connected blocking socket (with a timeout), closed at the end of the test."""
        if isinstance(server_or_addr, (tuple, str)):
            fam, target = target_of(server_or_addr)
        else:
            fam, target = target_of(server_or_addr.addrs[index])
        sock = socket.socket(fam, socket.SOCK_STREAM)
        self._clients.append(Client(sock))
        sock.settimeout(timeout)
        sock.connect(target)
        return sock

    def udp_client(self, family=socket.AF_INET):
        sock = socket.socket(family, socket.SOCK_DGRAM)
        self._clients.append(Client(sock))
        sock.setblocking(False)
        return sock

    def adopt(self, sock):
        """Close `sock` at the end of the test if the test did not."""
        self._clients.append(Client(sock))
        return sock

    def _close_clients(self):
        for c in self._clients:
            c.close()
        self._clients.clear()

    # -- threads ------------------------------------------------------------
    def thread(self, fn, *args):
        """Start a daemon thread; the test fails if it is still alive at the end."""
        t = threading.Thread(target=fn, args=args, daemon=True)
        self._threads.append(t)
        t.start()
        return t

    def _join_threads(self):
        alive = []
        for t in self._threads:
            t.join(20)
            if t.is_alive():
                alive.append(t)
        self._threads.clear()
        if alive:
            raise AssertionError(f'threads still running at the end: {alive}')

    # -- teardown -----------------------------------------------------------
    def finish(self):
        self._close_clients()
        left = []
        for d in self._dirs:
            for root, _dirs, files in os.walk(d):
                for f in files:
                    p = os.path.join(root, f)
                    try:
                        if stat.S_ISSOCK(os.lstat(p).st_mode):
                            left.append(p)
                    except OSError:
                        pass
            shutil.rmtree(d, ignore_errors=True)
        self._dirs.clear()
        assert not left, f'Unix socket files left behind: {left}'


def _cancel_all_tasks(loop):
    tasks = [t for t in asyncio.all_tasks(loop) if not t.done()]
    for t in tasks:
        t.cancel()
    if tasks:
        loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))


def harness(mode):
    """A fixture body: `yield from harness(request.param)` in each test module.

    (Each module defines its own `h` fixture so that no fixture is imported.)
    """
    if mode == 'uvloop':
        _uvloop()
    hh = Harness(mode)
    yield hh
    hh.finish()


# -- addresses ------------------------------------------------------------------
_WILDCARDS = {'', '0.0.0.0', '::', '::0'}


def target_of(addr):
    """(family, connectable address) of one of `server.addrs` (a tuple or a string)."""
    if isinstance(addr, tuple):
        host = addr[0]
        if len(addr) == 4 or ':' in host:
            fam = socket.AF_INET6
            host = '::1' if host in _WILDCARDS else host
            return fam, (host, addr[1])
        host = '127.0.0.1' if host in _WILDCARDS else host
        return socket.AF_INET, (host, addr[1])
    if isinstance(addr, bytes):
        return socket.AF_UNIX, addr
    if not isinstance(addr, str):
        raise TypeError(f'cannot connect to {addr!r}')
    scheme = 'tcp'
    rest = addr
    if '://' in addr:
        scheme, rest = addr.split('://', 1)
    rest = rest.split('?', 1)[0]
    scheme = scheme.removesuffix('-net')
    if scheme == 'unix' or rest.startswith('/') or rest.startswith('\0'):
        if rest.startswith('@'):
            rest = '\0' + rest[1:]
        return socket.AF_UNIX, rest
    host, _, port = rest.rpartition(':')
    if host.startswith('['):
        host = host[1:-1]
        fam = socket.AF_INET6
    elif scheme.endswith('6') or ':' in host:
        fam = socket.AF_INET6
    else:
        fam = socket.AF_INET
    if host in _WILDCARDS:
        host = '::1' if fam == socket.AF_INET6 else '127.0.0.1'
    return fam, (host, int(port))


def port_of(server, index=0):
    return target_of(server.addrs[index])[1][1]


needs_ipv6 = pytest.mark.skipif(not has_ipv6_loopback(), reason='no IPv6 loopback')


# -- clients --------------------------------------------------------------------
class Client:
    """A client socket driven by the running loop's sock_* methods."""

    def __init__(self, sock):
        self.sock = sock

    @property
    def loop(self):
        return asyncio.get_running_loop()

    async def send(self, data, timeout=20):
        await asyncio.wait_for(self.loop.sock_sendall(self.sock, data), timeout)

    async def recv(self, n=1 << 16, timeout=10):
        return await asyncio.wait_for(self.loop.sock_recv(self.sock, n), timeout)

    async def recv_exactly(self, n, timeout=20, chunk=1 << 18, delay=0.0):
        """Exactly n bytes; fails on EOF before that. `delay`: a slow reader."""
        buf = bytearray()
        end = time.monotonic() + timeout
        while len(buf) < n:
            left = end - time.monotonic()
            if left <= 0:
                raise AssertionError(f'timed out with {len(buf)} of {n} bytes')
            b = await asyncio.wait_for(
                self.loop.sock_recv(self.sock, min(chunk, n - len(buf))), left)
            if not b:
                raise AssertionError(f'EOF after {len(buf)} of {n} bytes')
            buf += b
            if delay:
                await asyncio.sleep(delay)
        return bytes(buf)

    async def recv_until_eof(self, timeout=20, chunk=1 << 18, delay=0.0):
        buf = bytearray()
        end = time.monotonic() + timeout
        while True:
            left = end - time.monotonic()
            if left <= 0:
                raise AssertionError(f'timed out waiting for EOF after {len(buf)} bytes')
            b = await asyncio.wait_for(self.loop.sock_recv(self.sock, chunk), left)
            if not b:
                return bytes(buf)
            buf += b
            if delay:
                await asyncio.sleep(delay)

    async def expect_eof(self, timeout=10):
        """The server closed: nothing more, then EOF (a reset counts as closed too)."""
        try:
            rest = await self.recv_until_eof(timeout)
        except ConnectionResetError:
            return
        assert rest == b'', f'unexpected bytes before EOF: {rest[:100]!r}'

    async def nothing_for(self, seconds):
        """Assert nothing arrives (and no EOF) for `seconds`."""
        try:
            b = await asyncio.wait_for(self.loop.sock_recv(self.sock, 1 << 16), seconds)
        except (asyncio.TimeoutError, TimeoutError):
            return
        raise AssertionError(f'expected nothing, got {b[:100]!r}')

    def getsockname(self):
        return self.sock.getsockname()

    def getpeername(self):
        return self.sock.getpeername()

    def reset(self):
        """Close with SO_LINGER 0: the peer gets a RST."""
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                             b'\x01\x00\x00\x00\x00\x00\x00\x00')
        self.close()

    def close(self):
        if self.sock.fileno() >= 0:
            try:
                self.sock.close()
            except OSError:
                pass


# -- waiting --------------------------------------------------------------------
async def until(pred, timeout=10.0, what='condition'):
    """Wait (bounded) until pred() is true, yielding to the loop in between."""
    end = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > end:
            raise AssertionError(f'timed out waiting for {what}')
        await asyncio.sleep(0.002)


async def spin(seconds=0.0, n=10):
    """Let the loop run a few iterations and at least `seconds`."""
    for _ in range(n):
        await asyncio.sleep(0)
    if seconds:
        await asyncio.sleep(seconds)


# -- recording ------------------------------------------------------------------
class ConnLog:
    """Records callbacks per connection and checks their order.

    `log` is a list of (callback name, conn key) in call order; conn keys are
    small integers given in opened() order (the conns are kept alive, so ids
    are not reused).
    """

    def __init__(self):
        self.log = []
        self.keys = {}
        self.conns = []
        self.closed_errs = {}
        self.loop_thread = None
        self.threads = set()

    def key(self, conn):
        k = self.keys.get(id(conn))
        if k is None:
            k = self.keys[id(conn)] = len(self.conns)
            self.conns.append(conn)
        return k

    def note(self, name, conn=None, **extra):
        self.threads.add(threading.get_ident())
        self.log.append((name, None if conn is None else self.key(conn)))

    def names(self, key=None):
        return [n for n, k in self.log if key is None or k == key]

    def closed_count(self, key):
        return sum(1 for n, k in self.log if n == 'closed' and k == key)

    def check_conn(self, key, *, closed=True, detached=False):
        """opened first, then data/pre_write*, closed exactly once and last."""
        names = [n for n, k in self.log if k == key]
        assert names and names[0] == 'opened', names
        assert names.count('opened') == 1, names
        tail = 'closed' if closed else ('detached' if detached else None)
        if tail is not None:
            assert names.count(tail) == 1, names
            assert names[-1] == tail, names
        if not closed:
            assert 'closed' not in names, names
        assert all(n in ('data', 'wake', 'opened', 'closed', 'detached') for n in names), names


def fill_pattern(n, seed=0):
    """n deterministic pseudo-random bytes."""
    return random.Random(seed).randbytes(n)


def sha(data):
    return hashlib.sha256(data).hexdigest()


def dup_sock(conn):
    """A socket object over a dup of conn.fd (the caller closes it)."""
    return socket.socket(fileno=os.dup(conn.fd))


def open_fds():
    """The set of fd numbers open in this process."""
    fds = set()
    for name in os.listdir('/proc/self/fd'):
        fd = int(name)
        try:
            os.fstat(fd)
        except OSError:
            continue
        fds.add(fd)
    return fds


PY312 = sys.version_info >= (3, 12)
