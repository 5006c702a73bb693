"""Soak evioloop: one process, one loop, a sustained mixed load, then check it.

    python soak/run.py [--duration SECONDS | --quick] [--seed N]
                       [--loop evioloop|stock|uvloop] [--json FILE]

Servers and clients share the one loop (plus a few helper threads): TCP, Unix,
TLS and Events echo, HTTP/1.1, UDP, subprocess pipes, timers,
call_soon_threadsafe and connection churn. Every byte is checked; RSS, fds,
tasks and the loop's tables are sampled. Exit status 0 on PASS, 1 on FAIL
(soak/README.md lists the criteria). `import evioloop` is the installed one:
only this folder is on sys.path, never the repository root.
"""
import argparse
import asyncio
import gc
import json
import os
import platform
import random
import resource
import sys
import time
import tracemalloc

from checks import evaluate, print_summary, rss_threshold_kib_min, rss_trend
from common import STEP_TIMEOUT, Soak, child_processes, open_fds, rss_bytes
from httpload import http_worker, start_http
from others import ThreadCallers, start_udp, subprocess_worker, timer_worker, udp_worker
from streams import StreamServers, stream_tasks

# Concurrent workers per kind: the in-flight work is bounded by these, so memory
# is flat by design (a message is at most 1 MiB, a round at most 8 of them).
WORKERS = {'tcp': 4, 'unix': 3, 'tls': 2, 'events': 3, 'churn': 3,
           'http_keepalive': 3, 'http_short': 2, 'udp': 2, 'subprocess': 2, 'timers': 2}
THREADS = 3
KINDS = ('tcp', 'unix', 'tls', 'events', 'churn', 'http', 'udp', 'subprocess', 'timers',
         'threadsafe')


def worker_counts(only):
    if not only:
        return dict(WORKERS), THREADS
    keep = set(only.split(','))
    counts = {k: (n if k.split('_')[0] in keep else 0) for k, n in WORKERS.items()}
    return counts, (THREADS if 'threadsafe' in keep else 0)


def parse_args(argv):
    p = argparse.ArgumentParser(prog='soak/run.py', description=__doc__.split('\n')[0])
    g = p.add_mutually_exclusive_group()
    g.add_argument('--duration', type=float, default=600.0, metavar='SECONDS',
                   help='how long the load runs (default 600)')
    g.add_argument('--quick', action='store_true', help='a 60 s run (for CI)')
    p.add_argument('--seed', type=int, help='seed of the sizes and choices (default: random, '
                   'printed)')
    p.add_argument('--loop', choices=('evioloop', 'stock', 'uvloop'), default='evioloop')
    p.add_argument('--json', metavar='FILE', help='write the samples and the summary here')
    p.add_argument('--only', metavar='KINDS', help='diagnosis: run only these workloads, '
                   f'comma-separated, of: {",".join(KINDS)}')
    p.add_argument('--tracemalloc', action='store_true', help='diagnosis: trace Python '
                   'allocations; print what grew between the end of warm-up and the end')
    p.add_argument('--trim', action='store_true', help='diagnosis: call glibc malloc_trim(0) '
                   'before each RSS sample, so that RSS shows live memory, not what the '
                   'allocator keeps (a leak still grows; fragmentation does not)')
    a = p.parse_args(argv)
    if a.quick:
        a.duration = 60.0
    if a.duration <= 0:
        p.error('--duration must be positive')
    if a.only:
        bad = set(a.only.split(',')) - set(KINDS)
        if bad:
            p.error(f'--only: unknown workloads {sorted(bad)}')
    if a.seed is None:
        a.seed = random.SystemRandom().randrange(1 << 30)
    return a


def loop_factory(name):
    if name == 'evioloop':
        import evioloop
        return evioloop.new_event_loop
    if name == 'uvloop':
        import uvloop
        return uvloop.new_event_loop
    return asyncio.SelectorEventLoop


def _evio_stats(loop):
    fn = getattr(loop, '_evio_stats', None)
    if fn is None:
        return None
    try:
        return dict(fn())
    except Exception as exc:       # a broken introspection hook is worth seeing
        return {'error': repr(exc)}


class Sampler:
    def __init__(self, soak, interval, print_every, out, trim=False):
        self.trim = _malloc_trim() if trim else None
        self.soak = soak
        self.interval = interval
        self.print_every = print_every
        self.out = out
        self.samples = []
        self.own_blocks = 0
        self.t_start = None

    def take(self):
        soak, loop = self.soak, self.soak.loop
        t = time.monotonic() - self.t_start
        if self.trim is not None:
            self.trim(0)
        blocks = sys.getallocatedblocks()
        s = {
            't': round(t, 3), 'rss': rss_bytes(), 'fds': len(open_fds()),
            # Python-level allocations: tells a leak of objects from allocator noise
            # (less the blocks the kept samples themselves take)
            'blocks': blocks - self.own_blocks,
            'tasks': len(asyncio.all_tasks(loop)), 'errors': soak.error_count,
            'handler_calls': soak.handler_expected + soak.handler_unexpected,
            'work': {n: [st.ops, st.bytes] for n, st in sorted(soak.stats.items())},
        }
        core = _evio_stats(loop)
        if core is not None:
            s['core'] = core
        self.samples.append(s)
        self.own_blocks += sys.getallocatedblocks() - blocks
        if (len(self.samples) - 1) % self.print_every == 0:
            self._print(s)
        soak.prune_resets()
        return s

    def _print(self, s):
        work = ' '.join(f'{n[:4]}={o}' for n, (o, _) in s['work'].items())
        mb = sum(b for _, b in s['work'].values()) / 1e6
        core = s.get('core')
        core_s = (' core=' + ','.join(f'{k}:{v}' for k, v in core.items())) if core else ''
        print(f't={s["t"]:6.0f}s rss={s["rss"] / 2**20:6.1f}M blk={s["blocks"] // 1000}k '
              f'fds={s["fds"]:3d} '
              f'tasks={s["tasks"]:3d} err={s["errors"]} MB={mb:.0f} {work}{core_s}',
              file=self.out, flush=True)


def _print_growth(before, after, out, top=15):
    flt = [tracemalloc.Filter(False, tracemalloc.__file__)]
    diff = after.filter_traces(flt).compare_to(before.filter_traces(flt), 'traceback')
    print(f'tracemalloc: the {top} biggest growths from the end of warm-up to the end',
          file=out)
    for st in diff[:top]:
        print(f'  {st.size_diff / 1024:+.1f} KiB {st.count_diff:+d} blocks', file=out)
        for line in st.traceback.format()[-8:]:
            print(f'    {line}', file=out)


def _malloc_trim():
    import ctypes
    import ctypes.util
    try:
        return ctypes.CDLL(ctypes.util.find_library('c') or 'libc.so.6').malloc_trim
    except (OSError, AttributeError):
        raise SystemExit('soak: --trim needs glibc (malloc_trim)') from None


def _fd_diff(before, after):
    leaked = {fd: t for fd, t in after.items() if before.get(fd) != t}
    closed = {fd: t for fd, t in before.items() if after.get(fd) != t}
    return leaked, closed


async def _settled_fds(want):
    """The fds once finalizers had their chance (the way tests/conftest.py waits)."""
    deadline = time.monotonic() + 3.0
    while True:
        gc.collect()
        now = open_fds()
        if not any(_fd_diff(want, now)) or time.monotonic() > deadline:
            return now
        await asyncio.sleep(0.05)


async def soak_main(loop, args, out):
    soak = Soak(loop, args.seed, args.quick)
    loop.set_exception_handler(soak.exception_handler)
    gc.collect()
    fds_start = open_fds()
    rss_start = rss_bytes()

    servers = StreamServers(soak)
    await servers.start()
    http_server, http_addr = await start_http(soak)
    udp_transport, udp_addr = await start_udp(soak)
    workers, nthreads = worker_counts(args.only)
    callers = ThreadCallers(soak, nthreads)

    tasks = stream_tasks(soak, servers, workers)
    tasks += [asyncio.ensure_future(http_worker(soak, http_addr, w, True))
              for w in range(workers['http_keepalive'])]
    tasks += [asyncio.ensure_future(http_worker(soak, http_addr, w, False))
              for w in range(workers['http_short'])]
    tasks += [asyncio.ensure_future(udp_worker(soak, udp_addr, w))
              for w in range(workers['udp'])]
    tasks += [asyncio.ensure_future(subprocess_worker(soak, w))
              for w in range(workers['subprocess'])]
    tasks += [asyncio.ensure_future(timer_worker(soak, w)) for w in range(workers['timers'])]

    def worker_done(task):
        # a worker ends only when the soak stops; anything else is an error
        if task.cancelled():
            soak.error('worker', f'{task!r} was cancelled')
        elif task.exception() is not None:
            soak.error('worker', f'a worker crashed: {task.exception()!r}')
        elif not soak.stopping:
            soak.error('worker', 'a worker returned before the end')
    for t in tasks:
        t.add_done_callback(worker_done)
    callers.start()

    interval = 1.0 if args.quick or args.duration < 120 else 2.0
    print_every = 1 if args.quick or args.duration < 120 else 5
    sampler = Sampler(soak, interval, print_every, out, args.trim)
    sampler.t_start = t_load = time.monotonic()
    sampler.take()
    ru0 = resource.getrusage(resource.RUSAGE_SELF)
    rc0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    nxt = t_load
    warm_at = t_load + rss_trend([], args.duration, args.quick)[2]
    snap_warm = None
    while True:
        if args.tracemalloc and snap_warm is None and time.monotonic() >= warm_at:
            snap_warm = tracemalloc.take_snapshot()
        nxt += interval
        remaining = t_load + args.duration - time.monotonic()
        if remaining <= 0:
            break
        await asyncio.sleep(max(0.0, min(nxt - time.monotonic(), remaining)))
        sampler.take()
    load_seconds = time.monotonic() - t_load
    if args.tracemalloc and snap_warm is not None:
        _print_growth(snap_warm, tracemalloc.take_snapshot(), out)
    rss_end = rss_bytes()

    # -- stop the load, close everything ---------------------------------------
    soak.stopping = True
    _, pending = await asyncio.wait(tasks, timeout=STEP_TIMEOUT + 10)
    if pending:
        soak.error('shutdown', f'{len(pending)} workers did not stop')
        for t in pending:
            t.cancel()
        await asyncio.wait(pending, timeout=10)
    await callers.stop()
    await servers.stop()
    http_server.close()
    await asyncio.wait_for(http_server.wait_closed(), STEP_TIMEOUT)
    udp_transport.close()
    for _ in range(5):
        await asyncio.sleep(0.01)
    ru1 = resource.getrusage(resource.RUSAGE_SELF)
    rc1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    fds_end = await _settled_fds(fds_start)
    children = child_processes()
    notes = list(soak.notes)
    if args.only:
        notes.append(f'diagnosis run: only {args.only}')
    if args.trim:
        notes.append('diagnosis run: malloc_trim(0) before each RSS sample')
    if _evio_stats(loop) is None:
        notes.append('the loop has no _evio_stats(): its tables are not sampled')
    samples = sampler.samples
    warm = [s for s in samples if s['t'] >= rss_trend(samples, args.duration, args.quick)[2]]
    return {
        'loop': args.loop, 'loop_type': f'{type(loop).__module__}.{type(loop).__name__}',
        'python': platform.python_version(), 'seed': args.seed,
        'only': args.only, 'trim': args.trim,
        'duration': args.duration, 'load_seconds': load_seconds,
        'stats': {n: st.snapshot() for n, st in sorted(soak.stats.items())},
        'errors': soak.errors, 'error_count': soak.error_count,
        'handler_calls': soak.handler_calls, 'handler_expected': soak.handler_expected,
        'handler_unexpected': soak.handler_unexpected,
        'expected_resets': soak.expected_resets,
        'fd_diff': _fd_diff(fds_start, fds_end), 'children': children,
        'fds': {'start': len(fds_start), 'end': len(fds_end),
                'max': max(s['fds'] for s in samples)},
        'rss': {'start': rss_start, 'end': rss_end, 'max': max(s['rss'] for s in samples),
                'warm': warm[0]['rss'] if warm else rss_end},
        'rss_trend': rss_trend(samples, args.duration, args.quick),
        'blocks_trend': rss_trend(samples, args.duration, args.quick, key='blocks'),
        'rss_limit_kib_min': rss_threshold_kib_min(args.duration),
        'cpu': {'user': ru1.ru_utime - ru0.ru_utime, 'sys': ru1.ru_stime - ru0.ru_stime,
                'child_user': rc1.ru_utime - rc0.ru_utime,
                'child_sys': rc1.ru_stime - rc0.ru_stime},
        'notes': notes, 'samples': samples,
        'core_end': _evio_stats(loop),
    }


def main(argv=None):
    args = parse_args(argv)
    out = sys.stdout
    try:
        factory = loop_factory(args.loop)
    except ImportError as exc:
        print(f'soak: --loop {args.loop}: {exc}', file=sys.stderr)
        return 2
    print(f'soak: loop={args.loop} duration={args.duration:.0f}s seed={args.seed} '
          f'python={platform.python_version()} pid={os.getpid()}', file=out, flush=True)
    if args.loop == 'evioloop':
        import evioloop
        print(f'soak: evioloop from {os.path.dirname(evioloop.__file__)}', file=out)
    if args.loop == 'uvloop':
        # uvloop's first loop opens a pipe pair (libuv's signal pipe) that stays
        # open for the life of the process: open it before the fd snapshot
        warm = factory()
        warm.run_until_complete(asyncio.sleep(0))
        warm.close()
    gc.collect()
    fds_before_loop = open_fds()
    if args.tracemalloc:
        tracemalloc.start(12)
    loop = factory()
    asyncio.set_event_loop(loop)
    try:
        result = loop.run_until_complete(soak_main(loop, args, out))
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.run_until_complete(loop.shutdown_default_executor())
    finally:
        asyncio.set_event_loop(None)
        loop.close()
    gc.collect()
    fds_closed = open_fds()
    result['fd_diff_closed'] = _fd_diff(fds_before_loop, fds_closed)
    result['fds']['before_loop'] = len(fds_before_loop)
    result['fds']['closed'] = len(fds_closed)
    why = evaluate(result)
    result['pass'] = not why
    result['fail_reasons'] = why
    print_summary(result, why, out)
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(result, f, indent=1, default=repr)
    return 0 if not why else 1


if __name__ == '__main__':
    sys.exit(main())
