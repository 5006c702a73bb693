"""What the network benchmark modules share: cells, child processes, statistics.

run.py (the driver), events_bench.py (the Events API cells) and redis_bench.py (the
Redis cells) import this; it imports none of them.
"""
import os
import select
import statistics
import subprocess
import time

CREF = 'C-epoll'        # the C reference server's row name
LOOP_LABEL = {'asyncio': 'stock', CREF: 'C epoll (ref)'}


def size_label(size):
    return f'{size // 1024}KiB' if size % 1024 == 0 else f'{size}B'


class Cell:
    """One cell of the matrix: a workload, run by every row (server) in turn each round.

    The classic cells (echo flavours, http) are run by one server per loop, with the
    cell's kind, and share one C reference run per size x connections and round.  A
    subclass may have rows of its own ("LOOP:KIND" strings, CREF or anything its run()
    understands), its own C reference run, another base row for the ratios, a run()
    of its own and a reason why it cannot run on this machine.
    """
    classic = True          # printed by run.py's own tables
    own_cref = False        # runs the C reference itself every round
    base = 'uvloop'         # the row the "vs uv" ratios are taken against
    run = None              # run(server, opts, exes) -> result dict; None: run.py's run_one

    def __init__(self, kind, size, conns):
        self.kind, self.size, self.conns = kind, size, conns

    def rows(self, servers, with_cref):
        return list(servers) + ([CREF] if with_cref else [])

    def run_seconds(self, opts):
        """About how long one run of this cell takes (for the extra rounds' budget)."""
        return opts.warmup + opts.duration + 0.2

    def unavailable(self):
        """Why this cell cannot run here (a missing program), or None."""
        return None

    @property
    def id(self):
        if self.mode == 'http':
            return f'{self.kind}-c{self.conns}'
        return f'{self.kind}-{self.size // 1024}k-c{self.conns}'

    @property
    def mode(self):
        # 'http2w' (head and body in two writes) is driven like 'http'
        return 'http' if self.kind.startswith('http') else 'echo'


class LineReader:
    """Read lines from a child's stdout with a timeout (no buffering surprises)."""

    def __init__(self, proc):
        self.proc, self.fd, self.buf = proc, proc.stdout.fileno(), b''

    def readline(self, timeout):
        deadline = time.monotonic() + timeout
        while b'\n' not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise RuntimeError(f'timed out after {timeout:.0f}s waiting for output')
            r, _, _ = select.select([self.fd], [], [], left)
            if r:
                chunk = os.read(self.fd, 65536)
                if not chunk:
                    raise RuntimeError('process exited')
                self.buf += chunk
        line, self.buf = self.buf.split(b'\n', 1)
        return line.decode()


def stderr_tail(f):
    f.seek(0)
    text = f.read().decode(errors='replace').strip()
    return text[-800:]


def send(proc, line):
    proc.stdin.write((line + '\n').encode())
    proc.stdin.flush()


def proc_stat_busy():
    """(task, irq+softirq, idle) seconds summed over all cores so far, or None.

    Task time is user+nice+system.  This kernel accounts interrupt and softirq time
    apart from the tasks (CONFIG_IRQ_TIME_ACCOUNTING): the loopback TCP receive path
    runs in softirq, so it is in neither process's rusage, and we report it apart.
    """
    try:
        with open('/proc/stat') as f:
            fields = [int(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    tck = os.sysconf('SC_CLK_TCK')
    return sum(fields[0:3]) / tck, sum(fields[5:7]) / tck, sum(fields[3:5]) / tck


def vm_hwm_kib(pid):
    """The peak resident set size (VmHWM, KiB) of a live process so far, or None."""
    try:
        with open(f'/proc/{pid}/status') as f:
            for line in f:
                if line.startswith('VmHWM:'):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return None


def stop(proc):
    if proc is None or proc.poll() is not None:
        return
    try:
        send(proc, 'quit')
        proc.stdin.close()
    except OSError:
        pass
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def fmt_int(x):
    return f'{x:,.0f}' if x == x else '-'


def fmt(x, spec):
    return format(x, spec) if x is not None and x == x else '-'


def median(xs):
    xs = [x for x in xs if x == x]
    return statistics.median(xs) if xs else float('nan')


def disagreement(runs):
    """max/min of server CPU per request over the runs; inf if one failed; 1 if < 2 runs."""
    if any('error' in r for r in runs):
        return float('inf')
    us = [r['srv_us'] for r in runs if r['srv_us'] == r['srv_us'] and r['srv_us'] > 0]
    return max(us) / min(us) if len(us) > 1 else 1.0


def paired_list(runs, base, key):
    """Per-round ratios runs[key] / base[key] for rounds where both runs succeeded."""
    b = {r['round']: r for r in base if 'error' not in r}
    return [r[key] / b[r['round']][key] for r in sorted(runs, key=lambda r: r['round'])
            if 'error' not in r and r['round'] in b and b[r['round']][key]]


def paired(runs, base, key):
    return median(paired_list(runs, base, key))


def summarize(runs):
    ok = [r for r in runs if 'error' not in r]
    if not ok:
        return None
    s = {k: median([r.get(k, float('nan')) for r in ok])
         for k in ('rps', 'srv_us', 'cli_us', 'srv_pct', 'cli_pct', 'other', 'sirq_us')}
    s['n'] = len(ok)
    rps = [r['rps'] for r in ok]
    s['spread'] = 100 * (max(rps) - min(rps)) / s['rps'] if len(ok) > 1 else float('nan')
    us = [r['srv_us'] for r in ok]
    s['us_spread'] = 100 * (max(us) - min(us)) / s['srv_us'] if len(ok) > 1 else float('nan')
    return s
