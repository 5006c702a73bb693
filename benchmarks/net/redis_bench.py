"""The Redis cells of the network benchmarks: redis-benchmark against Redis servers.

    redis-p1, redis-p16     redis-benchmark -c 50 -t ping,set,get,incr -P 1 / -P 16

Rows: examples/redis_server.py (Events) on evioloop (native) and on uvloop (portable);
the same protocol as an asyncio.Protocol (resp.py) on every loop; a real redis-server
(persistence off).  Each run starts one server on a free port, warms it up with a
short redis-benchmark run (which also calibrates -n, so that the measured run takes
about the same time on every server), samples the server's CPU time, runs
redis-benchmark once for all the tests, and samples the CPU time again.  Server CPU:
getrusage(RUSAGE_SELF) of the server process, through server.py's "cpu" command, or
redis-server's own INFO cpu (the same getrusage, to the microsecond); the client's
CPU: the rusage of the redis-benchmark process (os.wait4).  redis-benchmark is
single-threaded: where it used about a whole core, it was the bottleneck, and the
output says so.

When redis-benchmark is not on PATH the cells are skipped; when only redis-server is
missing, its row is.  Both come with Debian's redis-tools / redis-server packages.
"""
import functools
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time

from benchlib import Cell, LineReader, fmt, fmt_int, median, paired, paired_list, \
    proc_stat_busy, send, stderr_tail, stop, summarize, vm_hwm_kib

HERE = os.path.dirname(os.path.abspath(__file__))
SERVER_PY = os.path.join(HERE, 'server.py')

REAL = 'redis-server'               # the real server's row name
PIPELINES = (1, 16)
CLIENTS = 50                        # redis-benchmark's default -c
TESTS = 'ping,set,get,incr'
RESULTS = ('PING_INLINE', 'PING_MBULK', 'SET', 'GET', 'INCR')    # what TESTS reports
SHORT = {'PING_INLINE': 'PING_IN', 'PING_MBULK': 'PING_MB'}
WARM_TESTS = 'set,get'
WARM_N = {1: 5000, 16: 40000}       # per warm-up test
MIN_N, MAX_N = 2000, 5_000_000      # per measured test
TIME_FACTOR = 1.5                   # measured time of a run: TIME_FACTOR x --duration ...
MIN_TIME = 1.0                      # ... and at least this many seconds, over all tests
QUICK_TIME = 0.5                    # (--quick: this many)
CLIENT_BOUND = 90                   # redis-benchmark's CPU %, above which it is the limit

# The project's target, shown next to the number, not checked: the Events example at
# -P 16 reaches at least half of redis-server's req/s.
TARGET_VS_REAL = {16: 0.5}


class RedisCell(Cell):
    classic = False
    base = 'uvloop:redis'

    def __init__(self, pipeline):
        super().__init__('redis', None, CLIENTS)
        self.pipeline = pipeline

    @property
    def id(self):
        return f'redis-p{self.pipeline}'

    @property
    def mode(self):
        return 'redis'

    def rows(self, servers, with_cref):
        rows = []
        if 'evioloop' in servers:
            rows.append('evioloop:events-redis')
        if 'uvloop' in servers:
            rows.append('uvloop:events-redis')
        rows += [f'{s}:redis' for s in servers]
        if shutil.which('redis-server'):
            rows.append(REAL)
        return rows

    def run_seconds(self, opts):
        return 1.0 + measured_time(opts)

    def unavailable(self):
        if not shutil.which('redis-benchmark'):
            return ('redis-benchmark is not on PATH (Debian: apt-get install redis-tools '
                    'redis-server)')
        return None

    @staticmethod
    def run(cell, server, opts, exes):
        return run_one(cell, server, opts)


def cells():
    return [RedisCell(p) for p in PIPELINES]


def measured_time(opts):
    """Seconds that the measured redis-benchmark run should take, over all its tests."""
    if getattr(opts, 'quick', False):
        return QUICK_TIME
    return max(MIN_TIME, TIME_FACTOR * opts.duration)


# --------------------------------------------------------------------------- running

def free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def command(port, *args, timeout=5.0):
    """Send one command, return the raw reply (enough of it for PING and INFO)."""
    req = b'*%d\r\n' % len(args) + b''.join(b'$%d\r\n%s\r\n' % (len(a), a) for a in args)
    with socket.create_connection(('127.0.0.1', port), timeout=timeout) as s:
        s.sendall(req)
        buf = b''
        while True:
            chunk = s.recv(65536)
            if not chunk:
                return buf
            buf += chunk
            if buf[:1] in b'+-:' and buf.endswith(b'\r\n'):
                return buf
            if buf[:1] == b'$':
                head, _, rest = buf.partition(b'\r\n')
                if len(rest) >= int(head[1:]) + 2:
                    return buf


def wait_ready(port, proc, timeout=10.0):
    deadline = time.monotonic() + timeout
    while True:
        try:
            reply = command(port, b'PING', timeout=1.0)
            if reply.startswith(b'+PONG'):
                return
            raise RuntimeError(f'PING got {reply[:80]!r}')
        except OSError as exc:
            if proc.poll() is not None:
                raise RuntimeError(f'server exited with {proc.returncode}') from exc
            if time.monotonic() > deadline:
                raise RuntimeError('server did not answer PING') from exc
            time.sleep(0.05)


def info_cpu(port):
    """redis-server's own CPU time (INFO cpu: getrusage RUSAGE_SELF, user + sys)."""
    fields = {}
    for line in command(port, b'INFO', b'cpu').decode().splitlines():
        k, _, v = line.partition(':')
        fields[k] = v
    return float(fields['used_cpu_user']) + float(fields['used_cpu_sys'])


def benchmark(port, pipeline, tests, n, timeout):
    """Run redis-benchmark once: ({test: req/s}, wall seconds, client CPU seconds)."""
    cmd = [shutil.which('redis-benchmark'), '-h', '127.0.0.1', '-p', str(port),
           '-c', str(CLIENTS), '-n', str(n), '-P', str(pipeline), '-t', tests, '--csv']
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        t0 = time.monotonic()
        p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=err)
        timer = threading.Timer(timeout, p.kill)
        timer.start()
        try:
            _, status, ru = os.wait4(p.pid, 0)
        finally:
            timer.cancel()
        wall = time.monotonic() - t0
        p.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        text = out.read().decode(errors='replace')
        if p.returncode != 0:
            raise RuntimeError(f'redis-benchmark exited with {p.returncode}'
                               f'{" (killed after %.0fs)" % timeout if p.returncode < 0 else ""}'
                               f' [{stderr_tail(err)}]')
    rps = {}
    for line in text.splitlines():
        fields = [f.strip().strip('"') for f in line.split(',')]
        if len(fields) >= 2 and fields[0] != 'test':
            try:
                rps[fields[0]] = float(fields[1])
            except ValueError:
                pass
    return rps, wall, ru.ru_utime + ru.ru_stime


def start_server(server, opts, err):
    """Start one server; return (process, port, cpu()) once it answers PING.

    A server that does not get that far is killed before this raises.
    """
    if server == REAL:
        for _ in range(3):      # the free port may be taken in between: try another
            port = free_port()
            cmd = [shutil.which('redis-server'), '--port', str(port), '--bind', '127.0.0.1',
                   '--save', '', '--appendonly', 'no', '--protected-mode', 'no',
                   '--daemonize', 'no', '--loglevel', 'warning', '--dir', tempfile.gettempdir()]
            proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=err, stderr=err)
            try:
                wait_ready(port, proc)
            except BaseException:
                exited = proc.poll() is not None
                kill(proc)
                if exited:
                    continue
                raise
            return proc, port, functools.partial(info_cpu, port)
        raise RuntimeError('redis-server did not start')
    loop, _, kind = server.partition(':')
    proc = subprocess.Popen([opts.python, SERVER_PY, loop, kind, '0'], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=err)
    try:
        reader = LineReader(proc)
        line = reader.readline(30)
        if not line.startswith('ready '):
            raise RuntimeError(f'server said {line!r}')
        port = int(line.split()[1])
        wait_ready(port, proc)
    except BaseException:
        kill(proc)
        raise

    def cpu():
        send(proc, 'cpu')
        return float(reader.readline(10).split()[1])
    return proc, port, cpu


def kill(proc):
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def end_server(server, proc):
    if proc is None or proc.poll() is not None:
        return
    if server != REAL:
        stop(proc)
        return
    proc.terminate()
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def run_one(cell, server, opts):
    p = cell.pipeline
    proc = None
    err = tempfile.TemporaryFile()
    try:
        proc, port, cpu = start_server(server, opts, err)
        warm, _, _ = benchmark(port, p, WARM_TESTS, WARM_N[p], 60)
        est = median(list(warm.values())) if warm else float('nan')
        if not est == est or est <= 0:
            raise RuntimeError(f'warm-up: no result from redis-benchmark: {warm}')
        target = measured_time(opts)
        n = int(min(MAX_N, max(MIN_N, est * target / len(RESULTS))))
        cpu0 = cpu()
        busy0 = proc_stat_busy()
        rps, wall, cli_cpu = benchmark(port, p, TESTS, n, 60 + 20 * target)
        busy1 = proc_stat_busy()
        cpu1 = cpu()
        hwm = vm_hwm_kib(proc.pid)      # the server's peak RSS over its whole life
        missing = [t for t in RESULTS if t not in rps]
        if missing:
            raise RuntimeError(f'redis-benchmark reported no {", ".join(missing)}')
    except Exception as exc:
        if proc is not None:
            kill(proc)
        detail = stderr_tail(err)
        return {'error': f'{exc}' + (f' [{detail}]' if detail else '')}
    finally:
        end_server(server, proc)
        err.close()
    reqs = n * len(RESULTS)
    elapsed = sum(n / rps[t] for t in RESULTS)     # the tests' own timing, no start-up
    srv_cpu = cpu1 - cpu0
    out = {
        'requests': reqs, 'n': n, 'elapsed': elapsed, 'wall': wall, 'rps': reqs / elapsed,
        'tests': {t: rps[t] for t in RESULTS},
        'srv_cpu': srv_cpu, 'cli_cpu': cli_cpu,
        'srv_us': srv_cpu / reqs * 1e6, 'cli_us': cli_cpu / reqs * 1e6,
        # % of one core over redis-benchmark's whole life (its start-up included)
        'srv_pct': 100 * srv_cpu / wall, 'cli_pct': 100 * cli_cpu / wall,
    }
    if hwm is not None:
        out['srv_hwm_kib'] = hwm
    if busy0 is not None and busy1 is not None:
        out['other'] = max(0.0, (busy1[0] - busy0[0]) - srv_cpu - cli_cpu) / wall
        out['sirq_us'] = (busy1[1] - busy0[1]) / reqs * 1e6
        out['idle'] = (busy1[2] - busy0[2]) / wall
    return out


# --------------------------------------------------------------------------- report

def row_label(server):
    if server == REAL:
        return 'redis-server'
    loop, _, kind = server.partition(':')
    loop = {'asyncio': 'stock'}.get(loop, loop)
    if kind.startswith('events-redis'):
        return f'{loop} Events example' + (' (portable)' if loop != 'evioloop' else '')
    return f'{loop} Protocol'


def redis_version():
    exe = shutil.which('redis-server')
    if not exe:
        return None
    try:
        r = subprocess.run([exe, '--version'], capture_output=True, text=True, timeout=10)
        return r.stdout.split()[2].removeprefix('v=')
    except (OSError, IndexError, subprocess.SubprocessError):
        return '?'


def print_tables(cells, results, out):
    w = out.write
    rc = [c for c in cells if isinstance(c, RedisCell)]
    if not rc:
        return
    ver = redis_version()
    w('\nThe Redis tables: redis-benchmark (one thread) with -c 50 against one server at a '
      'time.\nPer-test columns: thousands of req/s (medians); "all": all the requests of a '
      'run over\nthe sum of the tests\' times; "vs uv": against the asyncio.Protocol server on '
      'uvloop,\n"vs rds": against redis-server'
      + (f' {ver}' if ver else ' (not on PATH: no such row)')
      + ' (paired per round); srv% and cli% over\nredis-benchmark\'s whole run; srv us/req '
      'and cli us/req: CPU per request;\nother: cores busy with anything else '
      '(other agents, this script).\n')
    for cell in rc:
        w(f'\n== Redis: redis-benchmark -c {CLIENTS} -t {TESTS} -P {cell.pipeline} ==\n')
        w(f'{"server":<33}' + ''.join(f'{SHORT.get(t, t):>8}' for t in RESULTS)
          + f' {"all req/s":>9} {"spr%":>4} {"vs uv":>5} {"vs rds":>6} {"srv us/req":>10}'
          f' {"spr%":>4} {"vs uv":>5} {"srv%":>4} {"cli%":>4} {"cli us/req":>10} {"other":>5}\n')
        base = results.get((cell.id, cell.base), [])
        real = results.get((cell.id, REAL), [])
        loops = [s.partition(':')[0] for c, s in results if c == cell.id and ':' in s]
        loops = list(dict.fromkeys(x for x in ('evioloop', 'uvloop', 'asyncio', 'rloop')
                                   if x in loops))
        rows = [s for s in cell.rows(loops, False) + [REAL] if (cell.id, s) in results]
        rows = list(dict.fromkeys(rows))
        bound = []
        for s in rows:
            runs = results[(cell.id, s)]
            sm = summarize(runs)
            if sm is None:
                err = next((r['error'] for r in runs if 'error' in r), '?')
                w(f'{row_label(s):<33}FAILED: {" ".join(err.split())[:300]}\n')
                continue
            ok = [r for r in runs if 'error' not in r]
            per = ''.join(f'{median([r["tests"][t] for r in ok]) / 1000:>8.1f}' for t in RESULTS)
            nan = float('nan')
            r_rps = paired(runs, base, 'rps') if s != cell.base else nan
            r_us = paired(runs, base, 'srv_us') if s != cell.base else nan
            q_rps = paired(runs, real, 'rps') if s != REAL else nan
            nfail = len(runs) - sm['n']
            w(f'{row_label(s):<33}{per} {fmt_int(sm["rps"]):>9} {fmt(sm["spread"], ".0f"):>4}'
              f' {fmt(r_rps, ".2f"):>5} {fmt(q_rps, ".2f"):>6} {fmt(sm["srv_us"], ".2f"):>10}'
              f' {fmt(sm["us_spread"], ".0f"):>4} {fmt(r_us, ".2f"):>5}'
              f' {fmt(sm["srv_pct"], ".0f"):>4} {fmt(sm["cli_pct"], ".0f"):>4}'
              f' {fmt(sm["cli_us"], ".2f"):>10} {fmt(sm["other"], ".2f"):>5}'
              + (f'  ({nfail} of {len(runs)} runs failed)' if nfail else '') + '\n')
            if sm['cli_pct'] >= CLIENT_BOUND:
                bound.append((s, sm['cli_pct']))
        if not shutil.which('redis-server') and (cell.id, REAL) not in results:
            w('redis-server: not on PATH, row skipped (Debian: apt-get install redis-server)\n')
        for s, pct in bound:
            w(f'client-bound: redis-benchmark used {pct:.0f}% of a core against '
              f'{row_label(s)}: that row\'s req/s is what the client could drive, the '
              f'server may go faster.\n')
        if not bound:
            w(f'redis-benchmark stayed below {CLIENT_BOUND}% of a core in every row: '
              'it was not the bottleneck.\n')
        ex = results.get((cell.id, 'evioloop:events-redis'), [])
        if cell.pipeline in TARGET_VS_REAL and ex and real:
            ratios = paired_list(ex, real, 'rps')
            w(f'Events example on evioloop / redis-server, req/s: {fmt(median(ratios), ".3f")} '
              f'[{" ".join(f"{x:.2f}" for x in ratios)}] (the project\'s target: >= '
              f'{TARGET_VS_REAL[cell.pipeline]:g}; shown, not checked)\n')


if __name__ == '__main__':      # a manual check: python redis_bench.py LOOP:KIND|redis-server
    class _O:
        python, duration = sys.executable, 0.8
    print(run_one(RedisCell(16), sys.argv[1], _O()))
