"""`python -m evioloop`: what is installed; `--selftest`: does it work here.

    python -m evioloop              version, poller, compiled core, Python
    python -m evioloop --selftest   also echo over TCP on 127.0.0.1, through an
                                    asyncio Protocol and through the Events
                                    API, checking every byte; exit 1 on failure
"""
import argparse
import asyncio
import importlib.machinery
import os
import platform
import sys
import time

import evioloop
from evioloop.core import _core

ROUND_TRIPS = 1000
SELFTEST_TIMEOUT = 60.0     # seconds, for both echoes together


def info():
    """The lines `python -m evioloop` prints."""
    loader = getattr(_core, '__loader__', None)
    compiled = isinstance(loader, importlib.machinery.ExtensionFileLoader)
    return [
        f'evioloop {evioloop.__version__}',
        f'backend: {evioloop.BACKEND}',
        f'core: {_core.__file__} '
        f'({"compiled extension module" if compiled else "NOT an extension module"})',
        f'python: {platform.python_version()} ({platform.python_implementation()}) '
        f'{sys.executable}',
    ]


def _payloads(n):
    """n messages of 1 .. 4096 bytes, every byte value, none alike in a row."""
    seed = os.urandom(4096)
    shift = [bytes((b + i) & 0xFF for b in range(256)) for i in range(256)]
    return [seed[:1 + (i * 131) % 4096].translate(shift[i & 0xFF]) for i in range(n)]


async def _round_trips(port, payloads):
    """Send each payload, read back exactly as many bytes; how many matched."""
    reader, writer = await asyncio.open_connection('127.0.0.1', port)
    try:
        ok = 0
        for p in payloads:
            writer.write(p)
            got = await reader.readexactly(len(p))
            if got != p:
                raise AssertionError(f'round trip {ok}: sent {len(p)} bytes, the echo '
                                     f'differs at byte {_first_difference(p, got)}')
            ok += 1
        return ok
    finally:
        writer.close()
        await writer.wait_closed()


def _first_difference(a, b):
    pairs = enumerate(zip(a, b, strict=False))
    return next((i for i, (x, y) in pairs if x != y), min(len(a), len(b)))


class _EchoProtocol(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.transport.write(data)


async def _protocol_echo(payloads):
    loop = asyncio.get_running_loop()
    server = await loop.create_server(_EchoProtocol, '127.0.0.1', 0)
    try:
        port = server.sockets[0].getsockname()[1]
        return await _round_trips(port, payloads)
    finally:
        server.close()
        await server.wait_closed()


async def _events_echo(payloads):
    events = evioloop.Events(data=lambda conn, in_: in_)
    async with await evioloop.listen(events, 'tcp://127.0.0.1:0') as server:
        if not server.native:
            raise AssertionError('the Events server is not native on an evioloop loop')
        return await _round_trips(server.addrs[0][1], payloads)


async def _selftest(out):
    loop = asyncio.get_running_loop()
    if not isinstance(loop, evioloop.Loop):
        raise AssertionError(f'the running loop is {type(loop).__name__}, not evioloop.Loop')
    payloads = _payloads(ROUND_TRIPS)
    nbytes = sum(map(len, payloads))
    failed = 0
    for name, echo in (('asyncio Protocol echo', _protocol_echo),
                       ('Events API echo', _events_echo)):
        t0 = time.perf_counter()
        try:
            n = await echo(payloads)
        except (Exception, asyncio.TimeoutError) as exc:
            failed += 1
            out(f'selftest: {name}: FAILED after {time.perf_counter() - t0:.3f} s: '
                f'{type(exc).__name__}: {exc}')
        else:
            out(f'selftest: {name}: ok, {n} round trips, {nbytes} bytes each way, '
                f'{time.perf_counter() - t0:.3f} s')
    return failed


def selftest(out=print):
    """Run both echoes on a new evioloop loop; True if every byte came back."""
    async def main():
        return await asyncio.wait_for(_selftest(out), SELFTEST_TIMEOUT)

    t0 = time.perf_counter()
    try:
        failed = evioloop.run(main())
    except Exception as exc:
        out(f'selftest: FAILED: {type(exc).__name__}: {exc}')
        return False
    result = 'ok' if failed == 0 else f'FAILED ({failed} of 2)'
    out(f'selftest: {result} in {time.perf_counter() - t0:.3f} s')
    return failed == 0


def main(argv=None):
    parser = argparse.ArgumentParser(prog='python -m evioloop', description=__doc__.split('\n')[0])
    parser.add_argument('--selftest', action='store_true',
                        help=f'echo {ROUND_TRIPS} messages over TCP on 127.0.0.1 through an '
                             f'asyncio Protocol and through the Events API, checking every byte')
    args = parser.parse_args(argv)
    for line in info():
        print(line)
    if args.selftest:
        sys.stdout.flush()
        return 0 if selftest() else 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
