"""Micro benchmark: the loop's own costs, evioloop vs uvloop vs the stock loop (and rloop).

    python benchmarks/micro.py [--quick] [--rounds N] [--time S] [--rows a,b]
                               [--loops a,b] [--json FILE]

For each row, one fresh worker process per loop calibrates the operation count so that
a run takes about S seconds; then N rounds follow, and in each round every loop makes
one timed run on a fresh loop, in an order that rotates from round to round, so the
loops being compared are measured back to back under the same machine load. The table
shows the median ops/s per loop and, per row, the median of the per-round ratios
evioloop/uvloop (and evioloop/rloop) with their min-max over the rounds, so the noise
is visible next to the number. README.md explains the choices.

A worker (`micro.py --worker LOOP ROW S`) prints "ready N", then one JSON line per
"run" line on its stdin.
"""
import argparse
import gc
import json
import os
import select
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:        # loaded by path (benchmarks/run.py, the tests)
    sys.path.insert(0, HERE)

from rounds import fmt_ratio, median, paired_ratios, probe, run_rounds, worker_env  # noqa: E402

# Loops in table order. Each entry: the module to import and how to make a loop.
LOOPS = {
    'evioloop': ('evioloop', 'new_event_loop'),
    'uvloop': ('uvloop', 'new_event_loop'),
    'asyncio': ('asyncio', 'new_event_loop'),   # the stock loop (epoll selector)
    'rloop': ('rloop', 'new_event_loop'),
}
OPTIONAL_LOOPS = ('rloop',)       # reported as missing, not an error, if it will not import
BASELINES = ('uvloop', 'rloop')   # the ratio columns: evioloop / each of these

BATCH = 1000        # callbacks, timers or tasks queued per loop iteration in the batch rows
BG_TIMERS = 1000    # long timers pending in the heap during the timer rows
CHAIN_DEPTH = 5     # nested coroutines above the awaited future in the await chain row


# ---------------------------------------------------------------- the rows
#
# Each row function takes a fresh loop and an operation count n, runs about n
# operations and returns (ops, seconds): the clock covers only the operations,
# not the setup (background timers, the loop's creation).

def _noop():
    pass


def _noop2(a, b):
    pass


def _batched(loop, n, queue_one, chain_with):
    """Run n // BATCH iterations of: queue BATCH operations, then continue.

    `queue_one` queues one operation; `chain_with(driver)` queues the driver so
    that it runs after this batch's operations, i.e. once per loop iteration.
    """
    batches = max(1, n // BATCH)
    left = [batches]
    rng = range(BATCH)

    def driver():
        if left[0] == 0:
            loop.stop()
            return
        left[0] -= 1
        for _ in rng:
            queue_one()
        chain_with(driver)

    loop.call_soon(driver)
    t0 = time.perf_counter()
    loop.run_forever()
    return batches * BATCH, time.perf_counter() - t0


def row_call_soon(loop, n):
    cs = loop.call_soon
    return _batched(loop, n, lambda: cs(_noop), cs)


def row_call_soon_args(loop, n):
    cs = loop.call_soon
    return _batched(loop, n, lambda: cs(_noop2, 1, 'x'), cs)


def _with_background_timers(loop, fn):
    # A server's heap is rarely empty: keep long timers (idle timeouts) pending,
    # so that pushes and pops walk a heap of realistic depth.
    bg = [loop.call_later(3600.0 + i, _noop) for i in range(BG_TIMERS)]
    try:
        return fn()
    finally:
        for h in bg:
            h.cancel()


def row_call_later(loop, n):
    # call_later(0): due at the next iteration, so the run measures schedule,
    # heap push, heap pop and the call, without ever sleeping. The driver is a
    # timer too, scheduled after the batch: it fires after the batch has fired.
    cl = loop.call_later
    return _with_background_timers(
        loop, lambda: _batched(loop, n, lambda: cl(0, _noop), lambda d: cl(0, d)))


def row_timer_cancel(loop, n):
    # The timeout pattern: arm a timer, the operation finishes first, cancel it.
    cl = loop.call_later
    return _with_background_timers(
        loop, lambda: _batched(loop, n, lambda: cl(10.0, _noop).cancel(), loop.call_soon))


def row_call_soon_threadsafe(loop, n):
    # One producer thread posts n callbacks as fast as it can, then a stop; the
    # clock runs until the loop has run them all (both threads share the GIL).
    def producer():
        cst = loop.call_soon_threadsafe
        for _ in range(n):
            cst(_noop)
        cst(loop.stop)

    th = threading.Thread(target=producer)
    loop.call_soon(th.start)
    t0 = time.perf_counter()
    loop.run_forever()
    dt = time.perf_counter() - t0
    th.join()
    return n, dt


async def _nothing():
    pass


def row_create_task(loop, n):
    # create_task of a trivial coroutine; the op ends when the task has finished.
    ct = loop.create_task
    return _batched(loop, n, lambda: ct(_nothing()), loop.call_soon)


def row_await_chain(loop, n):
    # One task awaits a chain of CHAIN_DEPTH nested coroutines whose innermost
    # awaits a future that a call_soon callback resolves; repeated n times. One
    # op: create_future, call_soon with an argument, the task's suspension and
    # wake-up (future done callback -> call_soon -> Task step) through the chain:
    # two loop iterations with a single ready callback each, the latency-bound
    # case the batch rows do not show.
    async def leaf():
        fut = loop.create_future()
        loop.call_soon(fut.set_result, None)
        return await fut

    async def chain(depth):
        if depth:
            return await chain(depth - 1)
        return await leaf()

    async def main():
        t0 = time.perf_counter()
        for _ in range(n):
            await chain(CHAIN_DEPTH)
        return time.perf_counter() - t0

    return n, loop.run_until_complete(main())


def row_getaddrinfo(loop, n):
    # A numeric host needs no lookup; a loop may answer it without the executor.
    async def main():
        ga = loop.getaddrinfo
        t0 = time.perf_counter()
        for _ in range(n):
            await ga('127.0.0.1', 80)
        return time.perf_counter() - t0

    return n, loop.run_until_complete(main())


# name -> (label, function, smallest sensible n)
ROWS = {
    'call_soon': ('call_soon', row_call_soon, BATCH),
    'call_soon_args': ('call_soon with 2 args', row_call_soon_args, BATCH),
    'call_later': ('call_later(0) + fire', row_call_later, BATCH),
    'timer_cancel': ('timer schedule+cancel', row_timer_cancel, BATCH),
    'threadsafe': ('call_soon_threadsafe (thread)', row_call_soon_threadsafe, 1000),
    'create_task': ('create_task + run', row_create_task, BATCH),
    'await_chain': (f'await chain (depth {CHAIN_DEPTH})', row_await_chain, 100),
    'getaddrinfo': ('getaddrinfo numeric host', row_getaddrinfo, 100),
}


# ---------------------------------------------------------------- the worker

def _loop_factory(name):
    modname, attr = LOOPS[name]
    mod = __import__(modname)
    return getattr(mod, attr)


def _measure(factory, fn, n):
    loop = factory()
    try:
        gc.collect()
        cpu0 = time.process_time()
        ops, dt = fn(loop, n)
        cpu = time.process_time() - cpu0
    finally:
        loop.close()
    return ops, dt, cpu


def worker(loop_name, row, seconds):
    """A persistent worker for one loop and one row, driven through stdin/stdout.

    Calibrates the operation count n so that a run takes about `seconds`, prints
    "ready N", then answers each "run" line with one JSON line: one timed run of n
    operations on a fresh loop. Ends on "quit" or end of input.
    """
    factory = _loop_factory(loop_name)
    _label, fn, n = ROWS[row]
    # Calibrate (this also warms up code paths, freelists and the allocator):
    # grow n until a run takes a fifth of the target, then scale.
    while True:
        ops, dt, _cpu = _measure(factory, fn, n)
        if dt >= seconds / 5 or n >= 1 << 30:
            break
        n *= 4 if dt < seconds / 20 else 2
    n = max(ROWS[row][2], int(n * seconds / max(dt, 1e-9)))
    _measure(factory, fn, n)    # one more warm-up at the final size
    print('ready', n, flush=True)
    for line in sys.stdin:
        if line.strip() != 'run':
            break
        ops, dt, cpu = _measure(factory, fn, n)
        print(json.dumps({'ops': ops, 'seconds': dt, 'cpu_seconds': cpu,
                          'ops_per_s': ops / dt, 'ops_per_cpu_s': ops / max(cpu, 1e-9)}),
              flush=True)


# ---------------------------------------------------------------- the driver

def probe_loops(names):
    """Which loops import here, with their versions and locations: {name: info or None}."""
    return probe(names, {name: LOOPS[name][0] for name in names})


class Worker:
    """The driver's side of one persistent worker process."""

    def __init__(self, loop_name, row, seconds, timeout):
        self.timeout = timeout
        self.error = None
        self.proc = subprocess.Popen(
            [sys.executable, os.path.join(HERE, 'micro.py'), '--worker', loop_name, row,
             repr(seconds)],
            cwd=HERE, env=worker_env(), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True, bufsize=1)
        line = self._readline()
        if line is not None and not line.startswith('ready'):
            self._fail(f'unexpected output: {line[:100]!r}')

    def _readline(self):
        ready, _, _ = select.select([self.proc.stdout], [], [], self.timeout)
        if not ready:
            self._fail(f'timed out after {self.timeout:.0f} s')
            return None
        line = self.proc.stdout.readline()
        if not line:
            self._fail(None)
            return None
        return line.strip()

    def _fail(self, why):
        if self.error is not None:
            return
        if self.proc.poll() is None:
            self.proc.kill()
        err = self.proc.stderr.read().strip().splitlines()
        self.error = (why or (err[-1] if err else f'exit {self.proc.wait()}'))[:200]

    def run(self):
        """One timed run: a dict with ops_per_s and ops_per_cpu_s, or with error."""
        if self.error is None:
            try:
                self.proc.stdin.write('run\n')
                self.proc.stdin.flush()
            except OSError:
                self._fail(None)
            line = self._readline()
            if line is not None:
                return json.loads(line)
        return {'error': self.error}

    def close(self):
        if self.proc.poll() is None:
            try:
                self.proc.stdin.close()
                self.proc.wait(timeout=10)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()
        for f in (self.proc.stdout, self.proc.stderr):
            f.close()


def _fmt_ops(x):
    if x is None:
        return '-'
    if x >= 1e6:
        return f'{x / 1e6:.2f}M'
    if x >= 1e3:
        return f'{x / 1e3:.1f}k'
    return f'{x:.0f}'


def summarize(results, rows, loops, metric='ops_per_s'):
    """results[row][loop] = list of per-round dicts (the metric, or an error)."""
    summary = {}
    for row in rows:
        s = summary[row] = {'median_ops_per_s': {}, 'ratios': {}, 'errors': {}}
        per_loop = results[row]
        for name in loops:
            errs = [m['error'] for m in per_loop[name] if 'error' in m]
            s['median_ops_per_s'][name] = median(m.get(metric) for m in per_loop[name])
            if errs:
                s['errors'][name] = errs[0]
        for base in BASELINES:
            if base not in loops or 'evioloop' not in loops:
                continue
            # paired per round: the two were measured back to back
            s['ratios'][base] = paired_ratios(per_loop['evioloop'], per_loop[base], metric)
    return summary


def print_table(summary, rows, loops, out=sys.stdout):
    head = ['row'] + loops + [f'evio/{b}' for b in BASELINES if b in loops]
    table = [head]
    for row in rows:
        s = summary[row]
        line = [ROWS[row][0]]
        for name in loops:
            v = s['median_ops_per_s'][name]
            line.append('error' if v is None and name in s['errors'] else _fmt_ops(v))
        for b in BASELINES:
            if b in loops:
                line.append(fmt_ratio(s['ratios'].get(b), 'x'))
        table.append(line)
    widths = [max(len(r[i]) for r in table) for i in range(len(head))]
    for k, r in enumerate(table):
        cells = [r[0].ljust(widths[0])]
        cells += [c.rjust(w) for c, w in zip(r[1:], widths[1:], strict=True)]
        print('  '.join(cells), file=out)
        if k == 0:
            print('  '.join('-' * w for w in widths), file=out)
    for row in rows:
        for name, err in summary[row]['errors'].items():
            print(f'  note: {ROWS[row][0]} on {name}: {err}', file=out)


def parse_args(argv):
    p = argparse.ArgumentParser(prog='micro.py', description=__doc__.split('\n')[0])
    p.add_argument('--quick', action='store_true',
                   help='smoke run: 2 rounds of 0.1 s runs')
    p.add_argument('--rounds', type=int, default=None, help='rounds (default 5, quick 2)')
    p.add_argument('--time', type=float, default=None,
                   help='seconds per timed run (default 0.3, quick 0.1)')
    p.add_argument('--rows', default=','.join(ROWS), help='comma-separated rows: '
                   + ', '.join(ROWS))
    p.add_argument('--loops', default=','.join(LOOPS), help='comma-separated loops')
    p.add_argument('--json', metavar='FILE', help='also write every measurement to FILE')
    a = p.parse_args(argv)
    a.rounds = a.rounds or (2 if a.quick else 5)
    a.time = a.time or (0.1 if a.quick else 0.3)
    a.rows = [r for r in a.rows.split(',') if r]
    a.loops = [x for x in a.loops.split(',') if x]
    for r in a.rows:
        if r not in ROWS:
            p.error(f'unknown row {r!r}; rows: {", ".join(ROWS)}')
    for x in a.loops:
        if x not in LOOPS:
            p.error(f'unknown loop {x!r}; loops: {", ".join(LOOPS)}')
    return a


def main(argv=None, collect=None):
    """Run the rows; with a dict as collect, leave the per-round results there too."""
    a = parse_args(sys.argv[1:] if argv is None else argv)
    found = probe_loops(a.loops)
    loops = []
    print(f'micro benchmark: Python {sys.version.split()[0]} ({sys.executable}), '
          f'{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}')
    for name in a.loops:
        info = found[name]
        if info is None:
            if name in OPTIONAL_LOOPS:
                print(f'  {name}: not installed, left out ({found[name + ":error"]}); '
                      f'`pip install {name}` to include it')
                continue
            print(f'  {name}: cannot import: {found[name + ":error"]}', file=sys.stderr)
            return 2
        print(f'  {name} {info[0]}: {info[1]}')
        loops.append(name)
    print(f'  per row: one fresh worker process per loop; then {a.rounds} rounds, each '
          f'timing every loop once (~{a.time} s on a fresh loop) in an order rotated '
          'every round')
    sys.stdout.flush()

    results = {row: {name: [] for name in loops} for row in a.rows}
    timeout = max(60.0, 50 * a.time)
    t_start = time.monotonic()
    for i, row in enumerate(a.rows):
        workers = {name: Worker(name, row, a.time, timeout) for name in loops}
        try:
            results[row] = run_rounds(loops, a.rounds, lambda name, ws=workers: ws[name].run(),
                                      i)
        finally:
            for w in workers.values():
                w.close()
        print(f'  {ROWS[row][0]}: done ({time.monotonic() - t_start:.0f} s)', flush=True)
    if collect is not None:
        collect.update(results=results, rows=a.rows, loops=loops, rounds=a.rounds,
                       found=found, missing=[x for x in a.loops if x not in loops])
    summary = summarize(results, a.rows, loops)
    cpu_summary = summarize(results, a.rows, loops, 'ops_per_cpu_s')
    print()
    print(f'ops/s, wall clock (median of {a.rounds} rounds); evio/X = median of the '
          'per-round ratios evioloop/X [min-max over rounds]; > 1: evioloop is faster')
    print_table(summary, a.rows, loops)
    print()
    print('ops per CPU-second (user+sys of the worker process, all its threads); the '
          'same ratios from CPU time instead of wall time')
    print_table(cpu_summary, a.rows, loops)
    sys.stdout.flush()
    if a.json:
        with open(a.json, 'w') as f:
            json.dump({'python': sys.version, 'loops': {n: found[n] for n in loops},
                       'rounds': a.rounds, 'seconds': a.time, 'results': results,
                       'summary': summary, 'cpu_summary': cpu_summary}, f, indent=1)
    return summary


if __name__ == '__main__':
    if len(sys.argv) == 5 and sys.argv[1] == '--worker':
        worker(sys.argv[2], sys.argv[3], float(sys.argv[4]))
    else:
        main()
