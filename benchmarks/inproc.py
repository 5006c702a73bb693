"""In-process benchmarks: UDP ping-pong, pipes, subprocess spawn and TLS echo, per loop.

    python benchmarks/inproc.py [--quick] [--rounds N] [--time S] [--only udp,tls-1k]
                                [--loops evioloop,uvloop] [--json FILE]

Both ends of each workload run in one process, on the loop under test (the children of
the pipe and spawn workloads are small C programs: dd, wc, true):

    udp          10 pairs of datagram endpoints on 127.0.0.1, 512-byte datagrams; one
                 in flight per pair; one operation = one round trip (content checked)
    pipe-read    a SubprocessProtocol counts what a child (dd, 64 KiB writes) writes to
                 its stdout pipe: 1 GiB (--quick: 128 MiB); one operation = one MiB
    pipe-write   the loop writes 1 GiB (--quick: 128 MiB) in 256 KiB chunks (write +
                 drain) into the stdin of `wc -c`, whose count is checked; one op = one MiB
    spawn        10 coroutines each spawn `true` and wait for it, in a loop: 10 children
                 at a time; one operation = one child spawned and reaped (exit code 0)
    tls-1k       TLS echo over asyncio.open_connection(ssl=...) / start_server(ssl=...),
    tls-100k     10 connections, 1 KiB / 100 KiB messages; one op = one checked round trip

Every run is its own process (`inproc.py --worker LOOP WORKLOAD SECONDS`), which
imports only its loop, warms up, measures a window and prints one JSON line: the
operations, the window's wall time, the process's CPU time (user+sys, RUSAGE_SELF),
its children's (RUSAGE_CHILDREN: dd, wc, true) and its peak RSS (VmHWM).  Rounds are
interleaved like micro.py's: each round runs every loop once, the order rotated.
"""
import argparse
import asyncio
import hashlib
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:        # loaded by path (benchmarks/run.py, the tests)
    sys.path.insert(0, HERE)

from rounds import fmt_ratio, median, paired_ratios, probe, run_rounds, worker_env  # noqa: E402
LOOPS = ('evioloop', 'uvloop', 'asyncio', 'rloop')
OPTIONAL_LOOPS = ('rloop',)
WORKLOADS = ('udp', 'pipe-read', 'pipe-write', 'spawn', 'tls-1k', 'tls-100k')
TITLE = {
    'udp': 'UDP ping-pong, 10 endpoint pairs, 512 B',
    'pipe-read': 'pipe read: a child writes to its stdout, a SubprocessProtocol counts',
    'pipe-write': 'pipe write: the loop writes into `wc -c`\'s stdin (write + drain)',
    'spawn': 'subprocess spawn: `true`, 10 at a time',
    'tls-1k': 'TLS echo, 10 connections, 1 KiB',
    'tls-100k': 'TLS echo, 10 connections, 100 KiB',
}
UNIT = {'pipe-read': 'MiB/s', 'pipe-write': 'MiB/s', 'spawn': 'spawns/s'}
UDP_PAIRS, UDP_SIZE = 10, 512
TLS_CONNS = 10
SPAWN_PARALLEL = 10
PIPE_CHUNK = 64 * 1024          # dd's block size: one pipe's capacity
WRITE_CHUNK = 256 * 1024
MIB = 1024 * 1024
WARMUP = 0.15
CERT_ENV = 'EVIOLOOP_BENCH_CERT'


# ---------------------------------------------------------------- the worker

def new_loop(name):
    if name == 'asyncio':
        return asyncio.SelectorEventLoop()
    return __import__(name).new_event_loop()


def usage():
    s = resource.getrusage(resource.RUSAGE_SELF)
    c = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.perf_counter(), s.ru_utime + s.ru_stime, c.ru_utime + c.ru_stime


class Window:
    """A counter whose value and the process's usage are sampled at the window's ends."""

    def __init__(self):
        self.ops = 0
        self.start = self.end = None
        self.stopping = False

    def open(self):
        self.start = (self.ops,) + usage()

    def close(self):
        self.end = (self.ops,) + usage()
        self.stopping = True

    def result(self):
        (n0, t0, s0, c0), (n1, t1, s1, c1) = self.start, self.end
        return {'ops': n1 - n0, 'seconds': t1 - t0, 'cpu': s1 - s0, 'child_cpu': c1 - c0}


async def timed(win, seconds, warmup=WARMUP):
    """Open the window after the warm-up, close it `seconds` later."""
    await asyncio.sleep(warmup)
    win.open()
    await asyncio.sleep(seconds)
    win.close()


class UdpEcho(asyncio.DatagramProtocol):
    def connection_made(self, transport):
        self.transport = transport

    def datagram_received(self, data, addr):
        self.transport.sendto(data, addr)


class UdpPing(asyncio.DatagramProtocol):
    def __init__(self, win, msg, done):
        self.win, self.msg, self.done = win, msg, done

    def connection_made(self, transport):
        self.transport = transport
        transport.sendto(self.msg)

    def datagram_received(self, data, addr):
        if data != self.msg:
            self.done.set_exception(RuntimeError(f'udp: wrong datagram ({len(data)} B)'))
            return
        self.win.ops += 1
        if self.win.stopping:
            if not self.done.done():
                self.done.set_result(None)
        else:
            self.transport.sendto(self.msg)

    def error_received(self, exc):
        if not self.done.done():
            self.done.set_exception(exc)


async def run_udp(loop, seconds):
    win = Window()
    msg = hashlib.sha256(b'udp').digest() * (UDP_SIZE // 32)
    transports, dones = [], []
    try:
        for _ in range(UDP_PAIRS):
            echo_t, _ = await loop.create_datagram_endpoint(
                UdpEcho, local_addr=('127.0.0.1', 0))
            transports.append(echo_t)
            done = loop.create_future()
            ping_t, _ = await loop.create_datagram_endpoint(
                lambda d=done: UdpPing(win, msg, d),
                remote_addr=echo_t.get_extra_info('sockname'))
            transports.append(ping_t)
            dones.append(done)
        await timed(win, seconds)
        await asyncio.wait_for(asyncio.gather(*dones), 10)
    finally:
        for t in transports:
            t.close()
        await asyncio.sleep(0)
    return win.result()


class CountingProtocol(asyncio.SubprocessProtocol):
    """Counts the child's stdout; done when the child has exited and its pipe is at EOF
    (the two come in either order)."""

    def __init__(self, done):
        self.done, self.nbytes, self.waiting = done, 0, {'exit', 'eof'}

    def pipe_data_received(self, fd, data):
        self.nbytes += len(data)

    def _seen(self, what):
        self.waiting.discard(what)
        if not self.waiting and not self.done.done():
            self.done.set_result(None)

    def pipe_connection_lost(self, fd, exc):
        if fd == 1:
            self._seen('eof')

    def process_exited(self):
        self._seen('exit')


async def run_pipe_read(loop, total):
    win = Window()
    done = loop.create_future()
    cmd = ['dd', 'if=/dev/zero', f'bs={PIPE_CHUNK}', f'count={total // PIPE_CHUNK}',
           'status=none']
    win.open()
    transport, proto = await loop.subprocess_exec(
        lambda: CountingProtocol(done), *cmd, stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        await asyncio.wait_for(done, 120)
    finally:
        transport.close()
    win.ops = proto.nbytes
    win.close()
    if proto.nbytes != total:
        raise RuntimeError(f'pipe-read: {proto.nbytes} bytes arrived of {total}')
    r = win.result()
    r['ops'] = r['ops'] / MIB
    return r


async def run_pipe_write(loop, total):
    win = Window()
    chunk = b'w' * WRITE_CHUNK
    win.open()
    proc = await asyncio.create_subprocess_exec(
        'wc', '-c', stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL)
    for _ in range(total // WRITE_CHUNK):
        proc.stdin.write(chunk)
        await proc.stdin.drain()
    proc.stdin.close()
    out = await asyncio.wait_for(proc.stdout.read(), 120)
    await proc.wait()
    win.ops = total
    win.close()
    if int(out.split()[0]) != total:
        raise RuntimeError(f'pipe-write: wc counted {out!r}, {total} were written')
    r = win.result()
    r['ops'] = r['ops'] / MIB
    return r


async def run_spawn(loop, seconds):
    win = Window()
    true = shutil.which('true') or '/bin/true'

    async def spawner():
        while not win.stopping:
            proc = await asyncio.create_subprocess_exec(
                true, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL)
            if await proc.wait() != 0:
                raise RuntimeError(f'spawn: true exited with {proc.returncode}')
            win.ops += 1
    tasks = [loop.create_task(spawner()) for _ in range(SPAWN_PARALLEL)]
    await timed(win, seconds)
    await asyncio.wait_for(asyncio.gather(*tasks), 30)
    return win.result()


async def run_tls(loop, seconds, size):
    import ssl
    cert = os.environ[CERT_ENV]
    sctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    sctx.load_cert_chain(cert)
    cctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    # a self-signed benchmark certificate: the handshake is outside the window
    cctx.check_hostname = False
    cctx.verify_mode = ssl.CERT_NONE
    win = Window()
    msg = (hashlib.sha256(b'tls').digest() * (size // 32 + 1))[:size]

    async def echo(reader, writer):
        try:
            while data := await reader.read(256 * 1024):
                writer.write(data)
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    async def client(port):
        reader, writer = await asyncio.open_connection('127.0.0.1', port, ssl=cctx)
        try:
            while not win.stopping:
                writer.write(msg)
                await writer.drain()
                if await reader.readexactly(size) != msg:
                    raise RuntimeError('tls: the echo differs from what was sent')
                win.ops += 1
        finally:
            writer.close()
            try:
                await writer.wait_closed()
            except (ConnectionError, ssl.SSLError):
                pass

    server = await asyncio.start_server(echo, '127.0.0.1', 0, ssl=sctx)
    try:
        port = server.sockets[0].getsockname()[1]
        tasks = [loop.create_task(client(port)) for _ in range(TLS_CONNS)]
        await timed(win, seconds, warmup=WARMUP + 0.1)
        await asyncio.wait_for(asyncio.gather(*tasks), 30)
    finally:
        server.close()
        await server.wait_closed()
    return win.result()


def vm_hwm_kib():
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith('VmHWM:'):
                return int(line.split()[1])
    return None


def worker(loop_name, workload, seconds):
    loop = new_loop(loop_name)
    asyncio.set_event_loop(loop)
    try:
        if workload == 'udp':
            coro = run_udp(loop, seconds)
        elif workload.startswith('pipe-'):
            # a fixed size, not a time: --time 0.15 or less is the quick size
            total = (128 if seconds <= 0.15 else 1024) * MIB
            coro = (run_pipe_read if workload == 'pipe-read' else run_pipe_write)(loop, total)
        elif workload == 'spawn':
            coro = run_spawn(loop, seconds)
        else:
            coro = run_tls(loop, seconds, 1024 if workload == 'tls-1k' else 100 * 1024)
        r = loop.run_until_complete(coro)
    finally:
        loop.close()
    r['hwm_kib'] = vm_hwm_kib()
    print(json.dumps(r), flush=True)


# ---------------------------------------------------------------- the driver

def find_cert(tmpdir):
    """A PEM file with a key and a self-signed certificate: (path, where it came from)."""
    openssl = shutil.which('openssl')
    if openssl:
        path = os.path.join(tmpdir, 'bench.pem')
        r = subprocess.run([openssl, 'req', '-x509', '-newkey', 'rsa:2048', '-nodes',
                            '-keyout', path, '-out', path + '.crt', '-days', '1',
                            '-subj', '/CN=localhost'], capture_output=True)
        if r.returncode == 0:
            with open(path + '.crt') as f, open(path, 'a') as out:
                out.write(f.read())
            return path, f'generated now with `{openssl} req -x509 -newkey rsa:2048`'
    import test
    base = os.path.dirname(test.__file__)
    for rel in ('certdata/keycert.pem', 'keycert.pem'):
        path = os.path.join(base, rel)
        if os.path.exists(path):
            return path, f'CPython\'s test certificate {path} (no openssl on PATH)'
    return None, 'no openssl on PATH and no keycert.pem in CPython\'s test package'


def run_one(loop_name, workload, seconds, env):
    cmd = [sys.executable, os.path.join(HERE, 'inproc.py'), '--worker', loop_name, workload,
           repr(seconds)]
    try:
        r = subprocess.run(cmd, cwd=HERE, env=env, capture_output=True, text=True,
                           timeout=180)
    except subprocess.TimeoutExpired:
        return {'error': 'timed out after 180 s'}
    if r.returncode != 0:
        last = (r.stderr.strip().splitlines() or [f'exit {r.returncode}'])[-1]
        return {'error': last[:300]}
    return json.loads(r.stdout.strip().splitlines()[-1])


def parse_args(argv):
    p = argparse.ArgumentParser(prog='inproc.py', description=__doc__.split('\n')[0])
    p.add_argument('--quick', action='store_true', help='3 rounds of short runs')
    p.add_argument('--rounds', type=int, help='rounds (default 5, --quick 3)')
    p.add_argument('--time', type=float, help='measured seconds per run (default 1, quick 0.15)')
    p.add_argument('--only', default=','.join(WORKLOADS),
                   help='comma-separated workloads: ' + ', '.join(WORKLOADS))
    p.add_argument('--loops', default=','.join(LOOPS), help='comma-separated loops')
    p.add_argument('--json', metavar='FILE', help='also write every run to FILE')
    a = p.parse_args(argv)
    a.rounds = a.rounds or (3 if a.quick else 5)
    a.time = a.time or (0.15 if a.quick else 1.0)
    a.only = [w for w in a.only.split(',') if w]
    a.loops = [x for x in a.loops.split(',') if x]
    for w in a.only:
        if w not in WORKLOADS:
            p.error(f'unknown workload {w!r}; workloads: {", ".join(WORKLOADS)}')
    return a


def main(argv=None, collect=None):
    """Run the rounds and print a table; with a dict as collect, leave the results there."""
    a = parse_args(sys.argv[1:] if argv is None else argv)
    found = probe(a.loops)     # the loops' names are their modules' names
    loops = [x for x in a.loops if found.get(x)]
    missing = [x for x in a.loops if not found[x]]
    skipped = []
    for x in missing:
        if x not in OPTIONAL_LOOPS:
            print(f'inproc: loop {x} does not import', file=sys.stderr)
            return 2
    env = worker_env()
    workloads = list(a.only)
    results = {w: {x: [] for x in loops} for w in workloads}
    with tempfile.TemporaryDirectory(prefix='evioloop-bench-') as tmp:
        cert_note = None
        if any(w.startswith('tls') for w in workloads):
            cert, cert_note = find_cert(tmp)
            if cert is None:
                for w in [w for w in workloads if w.startswith('tls')]:
                    skipped.append((w, cert_note))
                    workloads.remove(w)
            else:
                env[CERT_ENV] = cert
            print(f'inproc: TLS certificate: {cert_note}')
        for w in [w for w in workloads if w.startswith('pipe') or w == 'spawn']:
            need = {'pipe-read': 'dd', 'pipe-write': 'wc', 'spawn': 'true'}[w]
            if not shutil.which(need):
                skipped.append((w, f'no `{need}` on PATH'))
                workloads.remove(w)
        for w, why in skipped:
            print(f'inproc: skipped {w}: {why}')
        print(f'inproc: {", ".join(workloads)} on {", ".join(loops)}; {a.rounds} rounds, '
              f'{a.time} s per run, one process per run', flush=True)
        t0 = time.monotonic()
        for i, w in enumerate(workloads):
            def one(x, w=w):
                r = run_one(x, w, a.time, env)
                if 'error' in r:
                    print(f'  ! {w} {x}: {r["error"]}')
                return r
            results[w] = run_rounds(loops, a.rounds, one, i)
            print(f'  {w}: done ({time.monotonic() - t0:.0f} s)', flush=True)
    print_table(results, workloads, loops)
    if collect is not None:
        collect.update(results=results, workloads=workloads, loops=loops, missing=missing,
                       found={x: found.get(x) for x in a.loops},
                       skipped=skipped, cert=cert_note, rounds=a.rounds, seconds=a.time)
    if a.json:
        with open(a.json, 'w') as f:
            json.dump({'results': results, 'skipped': skipped, 'cert': cert_note}, f, indent=1)
    failed = any('error' in r and x == 'evioloop' for w in results
                 for x, runs in results[w].items() for r in runs)
    return 1 if failed else 0


def print_table(results, workloads, loops):
    print(f'\n{"workload":<11} {"loop":<9} {"rate":>10} {"unit":<9} {"CPU us/op":>9} '
          f'{"cpu%":>5} {"child%":>6} {"peak MiB":>8} {"vs uvloop":>20}')
    def rate(r):
        return r['ops'] / r['seconds']

    for w in workloads:
        base = results[w].get('uvloop', [])
        for x in loops:
            ok = [r for r in results[w][x] if 'error' not in r]
            if not ok:
                print(f'{w:<11} {x:<9} FAILED')
                continue
            us = median(r['cpu'] / r['ops'] * 1e6 for r in ok if r['ops'])
            pct = median(100 * r['cpu'] / r['seconds'] for r in ok)
            cpct = median(100 * r['child_cpu'] / r['seconds'] for r in ok)
            hwm = median(r['hwm_kib'] for r in ok) / 1024
            ratio = fmt_ratio(paired_ratios(ok, base, rate)) if x != 'uvloop' else '-'
            med = median(map(rate, ok))
            print(f'{w:<11} {x:<9} {med:>10,.1f} {UNIT.get(w, "ops/s"):<9} {us:>9.2f} '
                  f'{pct:>5.0f} {cpct:>6.0f} {hwm:>8.1f} {ratio:>20}')


if __name__ == '__main__':
    if len(sys.argv) == 5 and sys.argv[1] == '--worker':
        worker(sys.argv[2], sys.argv[3], float(sys.argv[4]))
    else:
        sys.exit(main())
