"""Shared helpers of the fault-injection tests (tests/test_faults_*.py).

Hostile peers (resets, half-closes, slowloris, peers that never read), fd
exhaustion, datagram send storms, a callback that blocks the loop, and fork().
Every test runs on evioloop and on the stock loop with the same assertions
(the stock loop's behaviour is the expected one), through net_helpers.run();
the Events API parts run natively on evioloop and through the portable
adapter on the stock loop.
"""
import asyncio
import contextlib
import hashlib
import os
import resource
import socket
import struct
import time

import evioloop

from net_helpers import LOOP_KINDS, open_fds, run  # noqa: F401  (re-exported)

HERE = os.path.dirname(os.path.abspath(__file__))


def sha(data):
    return hashlib.sha256(data).hexdigest()


def linger0_close(sock):
    """Close with SO_LINGER {on, 0}: the kernel sends RST, not FIN."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack('ii', 1, 0))
    sock.close()


def subprocess_env():
    """The environment for a child Python that imports evioloop and these helpers."""
    env = dict(os.environ)
    # the evioloop this test imported (installed, or built in place), never
    # a source tree without its compiled modules
    paths = ([os.path.dirname(os.path.dirname(evioloop.__file__)), HERE]
             + [p for p in env.get('PYTHONPATH', '').split(os.pathsep) if p])
    env['PYTHONPATH'] = os.pathsep.join(paths)
    env.pop('PYTHONASYNCIODEBUG', None)
    return env


@contextlib.contextmanager
def nofile_soft_limit(need):
    """Raise RLIMIT_NOFILE's soft limit to the hard one for the block.

    Returns False (and changes nothing) when the hard limit is below `need`.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 16)
    if target < need:
        yield False
        return
    resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    try:
        yield True
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def rss_bytes():
    """Resident set size of this process, from /proc/self/statm."""
    with open('/proc/self/statm') as f:
        return int(f.read().split()[1]) * os.sysconf('SC_PAGE_SIZE')


class Echo(asyncio.Protocol):
    """asyncio echo server protocol; records what it saw."""

    instances = None        # a list to append to, set by the test

    def __init__(self):
        self.transport = None
        self.received = 0
        self.lost_exc = None
        self.lost = asyncio.get_running_loop().create_future()
        if self.instances is not None:
            self.instances.append(self)

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.received += len(data)
        self.transport.write(data)

    def connection_lost(self, exc):
        self.lost_exc = exc
        if not self.lost.done():
            self.lost.set_result(exc)


async def sock_echo(loop, sock, payload, timeout=20):
    """Send payload on a non-blocking socket; return the echoed bytes."""
    send = asyncio.ensure_future(loop.sock_sendall(sock, payload))
    got = bytearray()
    try:
        end = time.monotonic() + timeout
        while len(got) < len(payload):
            left = end - time.monotonic()
            if left <= 0:
                raise AssertionError(f'echo timed out with {len(got)} of {len(payload)} bytes')
            b = await asyncio.wait_for(loop.sock_recv(sock, 1 << 18), left)
            if not b:
                raise AssertionError(f'EOF after {len(got)} of {len(payload)} bytes')
            got += b
        await send
    finally:
        if not send.done():
            send.cancel()
    return bytes(got)


async def recv_to_eof(loop, sock, timeout=30):
    got = bytearray()
    end = time.monotonic() + timeout
    while True:
        left = end - time.monotonic()
        if left <= 0:
            raise AssertionError(f'no EOF after {len(got)} bytes')
        b = await asyncio.wait_for(loop.sock_recv(sock, 1 << 18), left)
        if not b:
            return bytes(got)
        got += b


async def connect(loop, addr, family=socket.AF_INET):
    s = socket.socket(family, socket.SOCK_STREAM)
    try:
        s.setblocking(False)
        await asyncio.wait_for(loop.sock_connect(s, addr), 10)
    except BaseException:
        s.close()
        raise
    return s

