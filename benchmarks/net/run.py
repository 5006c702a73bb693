"""Network benchmarks: echo, keep-alive HTTP, the Events API and Redis, evioloop vs uvloop vs stock.

    python benchmarks/net/run.py [--quick] [--rounds N] [--duration SEC] [--filter GLOBS] ...

or, from another script, ``main(argv)`` (returns 0 when every run succeeded).

Each server runs in its own process (server.py, or the C reference cserver.c); the
client is loadgen.c (redis-benchmark for the Redis cells).  Both C programs are compiled
here, with the system C compiler, into benchmarks/build/net/ (git-ignored).  The Events
API cells are defined in events_bench.py, the Redis cells in redis_bench.py.  See README.md
in this directory for what is measured and how to read the tables.
"""
import argparse
import fnmatch
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:        # benchmarks/run.py loads this file by path
    sys.path.insert(0, HERE)

import events_bench  # noqa: E402
import redis_bench  # noqa: E402
from benchlib import (CREF, LOOP_LABEL, Cell, LineReader, disagreement, fmt,  # noqa: E402
                      fmt_int, median, paired, paired_list, proc_stat_busy, send, size_label,
                      stderr_tail, stop, summarize, vm_hwm_kib)

BUILD = os.path.join(os.path.dirname(HERE), 'build', 'net')
SERVER_PY = os.path.join(HERE, 'server.py')

ECHO_KINDS = ('proto', 'streams', 'buffered')
KIND_TITLE = {
    'proto': 'echo, asyncio.Protocol',
    'streams': 'echo, asyncio streams (start_server, read/write/drain)',
    'buffered': 'echo, asyncio.BufferedProtocol',
    'http': 'keep-alive HTTP/1.1, httptools parser (Protocol), fixed 13-byte body',
    'http2w': 'the same HTTP server, each response written as head + body (two writes)',
}
HTTP_KINDS = ('http', 'http2w')
SIZES = (1024, 10240, 102400)
CONNS = (1, 10, 100)
HTTP_CONNS = (10, 100)
BASE_LOOPS = ('evioloop', 'uvloop', 'asyncio')

DEFAULT_ROUNDS = 3
# Without --duration, the measured time per cell and server is split over the rounds
# (3 rounds -> 0.8 s each), so --rounds N does not multiply the run time; min 0.3 s.
MEASURE_BUDGET = 2.4
MIN_DURATION = 0.3
DEFAULT_WARMUP = 0.2
EXTRA_BUDGET = 45.0
QUICK_DURATION = 0.3
QUICK_WARMUP = 0.1
QUICK_ROUNDS = 3
# --quick without --filter: one cell of every workload, 3 rounds (the whole matrix
# took 3 min 40 s for one round of 0.3 s runs here, at a load average of 6)
QUICK_CELLS = ('proto-1k-c10', 'proto-100k-c10', 'streams-1k-c10', 'buffered-1k-c10',
               'http-c10', 'http2w-c10', 'events-1k-c10', 'events-http-c10', 'redis-p16')


def all_cells():
    cells = [Cell(k, s, c) for k in ECHO_KINDS for s in SIZES for c in CONNS]
    cells += [Cell(k, None, c) for k in HTTP_KINDS for c in HTTP_CONNS]
    return cells + events_bench.cells() + redis_bench.cells()


# --------------------------------------------------------------------------- build

def build(cc=None, force=False):
    """Compile loadgen and cserver into benchmarks/build/net/; return their paths."""
    cc = cc or os.environ.get('CC') or shutil.which('cc') or shutil.which('gcc')
    if not cc:
        raise SystemExit('net benchmarks: no C compiler (cc/gcc) found')
    os.makedirs(BUILD, exist_ok=True)
    out = {}
    for name, extra in (('loadgen', ['-pthread']), ('cserver', [])):
        src = os.path.join(HERE, name + '.c')
        exe = os.path.join(BUILD, name)
        if force or not os.path.exists(exe) or os.path.getmtime(exe) < os.path.getmtime(src):
            cmd = [cc, '-O2', '-Wall', '-o', exe, src] + extra
            subprocess.run(cmd, check=True)
        out[name] = exe
    return out


# --------------------------------------------------------------------------- processes


def run_one(cell, server, opts, exes):
    """One server process + one client run; return a result dict (or one with 'error').

    server is a loop name (the cell's kind runs on it), "LOOP:KIND" or CREF.
    """
    if server == CREF:
        cmd = [exes['cserver'], cell.mode, '0']
    else:
        loop, _, kind = server.partition(':')
        cmd = [opts.python, SERVER_PY, loop, kind or cell.kind, '0']
    srv = cli = None
    srv_err = tempfile.TemporaryFile()
    cli_err = tempfile.TemporaryFile()
    pin_srv = (lambda: os.sched_setaffinity(0, {0})) if opts.pin else None
    pin_cli = (lambda: os.sched_setaffinity(0, {1})) if opts.pin else None
    try:
        srv = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                               stderr=srv_err, preexec_fn=pin_srv)
        srv_out = LineReader(srv)
        line = srv_out.readline(30)
        if not line.startswith('ready '):
            raise RuntimeError(f'server said {line!r}')
        port = line.split()[1]
        ccmd = [exes['loadgen'], cell.mode, '127.0.0.1', port, '-c', str(cell.conns),
                '-d', str(opts.duration), '-w', str(opts.warmup), '-t', str(opts.threads),
                '--control']
        if cell.mode == 'echo':
            ccmd += ['-s', str(cell.size)]
        ccmd += {'counts': ['-V'], 'sampled': [], 'all': ['-A']}[opts.verify]
        cli = subprocess.Popen(ccmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                               stderr=cli_err, preexec_fn=pin_cli)
        cli_out = LineReader(cli)
        line = cli_out.readline(opts.warmup + 60)
        if line != 'ready':
            raise RuntimeError(f'client said {line!r}')
        # Both processes are idle now (the client drained its warm-up requests).
        send(srv, 'cpu')
        cpu0 = float(srv_out.readline(10).split()[1])
        busy0 = proc_stat_busy()
        send(cli, 'go')
        res = json.loads(cli_out.readline(opts.duration + 60))
        busy1 = proc_stat_busy()
        send(srv, 'cpu')
        cpu1 = float(srv_out.readline(10).split()[1])
        hwm = vm_hwm_kib(srv.pid)       # the server's peak RSS over its whole life
        stop(cli)
        if cli.returncode not in (0, None):
            raise RuntimeError(f'client exited with {cli.returncode}')
    except Exception as exc:    # one failed run must not end the benchmark
        for p in (cli, srv):
            if p is not None and p.poll() is None:
                p.kill()
                p.wait()
        detail = '; '.join(x for x in (stderr_tail(cli_err), stderr_tail(srv_err)) if x)
        return {'error': f'{exc}' + (f' [{detail}]' if detail else '')}
    finally:
        stop(srv)
        srv_err.close()
        cli_err.close()
    reqs, elapsed = res['requests'], res['elapsed']
    srv_cpu = cpu1 - cpu0
    cli_cpu = res['cpu_user'] + res['cpu_sys']
    out = {
        'requests': reqs, 'elapsed': elapsed, 'rps': res['rps'],
        'srv_cpu': srv_cpu, 'cli_cpu': cli_cpu,
        'srv_us': srv_cpu / reqs * 1e6 if reqs else float('nan'),
        'cli_us': cli_cpu / reqs * 1e6 if reqs else float('nan'),
        'srv_pct': 100 * srv_cpu / elapsed, 'cli_pct': 100 * cli_cpu / elapsed,
    }
    if hwm is not None:
        out['srv_hwm_kib'] = hwm
    if busy0 is not None and busy1 is not None:
        # What the rest of the machine did during the window (other agents, this
        # script), in cores; and the irq+softirq time per request.  Coarse: /proc/stat
        # counts in clock ticks (10 ms).
        out['other'] = max(0.0, (busy1[0] - busy0[0]) - srv_cpu - cli_cpu) / elapsed
        out['sirq_us'] = (busy1[1] - busy0[1]) / reqs * 1e6 if reqs else float('nan')
        out['idle'] = (busy1[2] - busy0[2]) / elapsed
    return out


def loop_available(python, name):
    if name == 'asyncio':
        return True
    r = subprocess.run([python, '-c', f'import {name}'], capture_output=True)
    return r.returncode == 0


# --------------------------------------------------------------------------- report


LEGEND = """\
Columns (medians over the rounds):
  req/s       completed requests per second (echo: one round trip of the message)
  spr%        (max-min)/median of req/s over the rounds
  vs uv       this row / uvloop, paired: the ratio between the two runs of each round,
              median over the rounds (req/s: higher is better; CPU/req: lower is better)
  srv us/req  server process CPU (user+sys, getrusage RUSAGE_SELF) per request
  spr%        (max-min)/median of srv us/req over the rounds
  srv% cli%   server / load generator CPU in % of one core over the window
  cli us/req  load generator CPU per request
  sirq        irq+softirq CPU per request, whole machine (the loopback TCP receive path;
              this kernel accounts it to neither process)
  other       cores busy with anything else during the window (other agents, this script)
"""


def print_tables(cells, servers, results, opts, out):
    w = out.write
    w('\n' + LEGEND)
    for kind in ECHO_KINDS + HTTP_KINDS:
        kcells = [c for c in cells if c.kind == kind]
        if not kcells:
            continue
        w(f'\n== {KIND_TITLE[kind]} ==\n')
        w(f'{"size":>6} {"conns":>5}  {"server":<14}{"req/s":>9} {"spr%":>4} {"vs uv":>5}'
          f' {"srv us/req":>10} {"spr%":>4} {"vs uv":>5} {"srv%":>4} {"cli%":>4}'
          f' {"cli us/req":>10} {"sirq":>5} {"other":>5}\n')
        for cell in kcells:
            rows = [s for s in servers + [CREF] if (cell.id, s) in results]
            base = results.get((cell.id, 'uvloop'), [])
            first = True
            for s in rows:
                runs = results[(cell.id, s)]
                sm = summarize(runs)
                head = (f'{size_label(cell.size) if cell.size else "-":>6} {cell.conns:>5}'
                        if first else ' ' * 12)
                first = False
                label = LOOP_LABEL.get(s, s)
                if sm is None:
                    err = next((r['error'] for r in runs if 'error' in r), '?')
                    w(f'{head}  {label:<14}FAILED: {err[:200]}\n')
                    continue
                r_rps = paired(runs, base, 'rps') if s != 'uvloop' else float('nan')
                r_us = paired(runs, base, 'srv_us') if s != 'uvloop' else float('nan')
                nfail = len(runs) - sm['n']
                w(f'{head}  {label:<14}{fmt_int(sm["rps"]):>9} {fmt(sm["spread"], ".0f"):>4}'
                  f' {fmt(r_rps, ".2f"):>5} {fmt(sm["srv_us"], ".2f"):>10}'
                  f' {fmt(sm["us_spread"], ".0f"):>4} {fmt(r_us, ".2f"):>5}'
                  f' {fmt(sm["srv_pct"], ".0f"):>4} {fmt(sm["cli_pct"], ".0f"):>4}'
                  f' {fmt(sm["cli_us"], ".2f"):>10} {fmt(sm["sirq_us"], ".2f"):>5}'
                  f' {fmt(sm["other"], ".2f"):>5}'
                  + (f'  ({nfail} of {len(runs)} runs failed)' if nfail else '') + '\n')


def print_summary(cells, servers, results, opts, out):
    w = out.write
    if cells and 'evioloop' in servers and 'uvloop' in servers:
        w('\n== evioloop / uvloop, per cell (medians) ==\n')
        w('Paired: each ratio is taken between the two runs of the same round (they ran\n'
          'seconds apart), and the median over rounds is shown; [per-round CPU/req ratios].\n')
        w(f'{"cell":<18}{"req/s":>7}{"CPU/req":>9}  server CPU/request (ahead: < 0.95, '
          'behind: > 1.05)\n')
        tally = {'ahead': 0, 'even': 0, 'behind': 0}
        for cell in cells:
            e = results.get((cell.id, 'evioloop'), [])
            u = results.get((cell.id, 'uvloop'), [])
            r_rps, r_us = paired(e, u, 'rps'), paired(e, u, 'srv_us')
            pairs = paired_list(e, u, 'srv_us')
            if r_us != r_us:
                w(f'{cell.id:<18}{"-":>7}{"-":>9}  (missing runs)\n')
                continue
            verdict = 'ahead' if r_us < 0.95 else 'behind' if r_us > 1.05 else 'even'
            tally[verdict] += 1
            rounds = ''
            if len(pairs) > 1:
                n_lt = sum(x < 1 for x in pairs)
                rounds = f', lower in {n_lt} of {len(pairs)} rounds'
            w(f'{cell.id:<18}{r_rps:>7.2f}{r_us:>9.2f}  {verdict:<7}'
              f'[{" ".join(f"{x:.2f}" for x in pairs)}]{rounds}\n')
        w(f'evioloop vs uvloop, server CPU per request: ahead in {tally["ahead"]}, even in '
          f'{tally["even"]}, behind in {tally["behind"]} of {sum(tally.values())} cells.\n'
          '(Paired medians; with the spreads seen here a ratio within about 10% of 1 is not\n'
          'a result, see the per-round ratios.)\n')
    print_client_check(cells, servers, results, out)


def client_rows(cells, servers, results):
    """Per cell with a C reference run: the numbers the load generator check rests on."""
    rows = []
    for cell in cells:
        c = summarize(results.get((cell.id, CREF), []))
        if not c:
            continue
        same = [cc for cc in cells if cc.mode == cell.mode and cc.size == cell.size
                and cc.conns == cell.conns]
        py = [sm for cc in same for s in servers
              for sm in [summarize(results.get((cc.id, s), []))] if sm]
        if not py:
            continue
        best = max(sm['rps'] for sm in py)
        min_us = min(sm['srv_us'] for sm in py)
        srv_pct = median([sm['srv_pct'] for sm in py])
        cli_pct = median([sm['cli_pct'] for sm in py])
        rows.append((cell, c, best, min_us, srv_pct, cli_pct))
    return rows


def client_verdict(cell, c, best, min_us, srv_pct, cli_pct):
    """(verdict, one sentence with the numbers it rests on) for one client_rows() row."""
    direct = c['rps'] >= 1.3 * best
    by_cpu = min_us >= 1.3 * c['cli_us'] and srv_pct > cli_pct
    if direct:
        return 'not the bottleneck (direct)', (
            f'the same client drove the C server at {c["rps"]:,.0f} req/s, '
            f'{c["rps"] / best:.2f}x the fastest Python server ({best:,.0f})')
    if by_cpu:
        return 'not the bottleneck (by CPU)', (
            f'the client needed {c["cli_us"]:.2f} us of CPU per request (C run), '
            f'{min_us / c["cli_us"]:.2f}x less than the cheapest Python server '
            f'({min_us:.2f} us), and the servers used {srv_pct:.0f}% of a core to the '
            f'client\'s {cli_pct:.0f}%')
    verdict = 'round-trip bound (1 conn)' if cell.conns == 1 else 'shares the limit'
    return verdict, (
        f'not shown: the client drove the C server at only {c["rps"] / best:.2f}x the '
        f'fastest Python server and needed {c["cli_us"]:.2f} us/req to the cheapest '
        f'server\'s {min_us:.2f}; compare server CPU per request here')


def print_client_check(cells, servers, results, out):
    """Show, per cell, that the load generator is not what limits the Python rows."""
    w = out.write
    rows = client_rows(cells, servers, results)
    if not rows:
        return
    w('\n== Is the load generator the bottleneck? ==\n'
      'The same client, with the same settings, against the C epoll reference server\n'
      '(one thread, one read + one write per event).  Two tests per cell:\n'
      '  direct: the client drove the C server at >= 1.3x the req/s of the fastest\n'
      '          Python server (any loop, any flavour) in that cell;\n'
      '  by CPU: the client needs less CPU per request (measured in the C run) than the\n'
      '          cheapest Python server needs, by >= 1.3x, and in the Python runs the\n'
      '          server used more CPU than the client (median srv% > cli%).\n')
    w(f'{"size":>6} {"conns":>5} {"C req/s":>9} {"best Py":>9} {"C/best":>6}'
      f' {"cli us/req":>10} {"min Py srv us":>13} {"ratio":>5} {"Py srv%":>7}'
      f' {"Py cli%":>7}  verdict\n')
    bad = []
    for cell, c, best, min_us, srv_pct, cli_pct in rows:
        verdict, _ = client_verdict(cell, c, best, min_us, srv_pct, cli_pct)
        if not verdict.startswith('not the'):
            bad.append(cell)
        w(f'{size_label(cell.size) if cell.size else "http":>6} {cell.conns:>5}'
          f' {fmt_int(c["rps"]):>9} {fmt_int(best):>9} {c["rps"] / best:>6.2f}'
          f' {c["cli_us"]:>10.2f} {min_us:>13.2f} {min_us / c["cli_us"]:>5.2f}'
          f' {srv_pct:>7.0f} {cli_pct:>7.0f}  {verdict}\n')
    if bad:
        w('Where the client "shares the limit", it needs not much less CPU per request than\n'
          'the server (with large messages both sides do the same send of S bytes, and the\n'
          'kernel copy dominates), so on two shared cores req/s differences between loops\n'
          'are compressed there; compare server CPU per request, which the client does not\n'
          'move.\n')
    else:
        w('In every cell the client is shown not to be what limits the Python servers.\n')
    w('With one connection there is one request in flight: req/s is one over the round\n'
      'trip, which contains the client\'s turn and two wake-ups for every server alike.\n')
    w('req/s of the C server is itself limited by the two cores it shares with the client\n'
      'and with other load ("other"), so "direct" can fail on a busy machine even where\n'
      'the client has headroom; the CPU test does not depend on that load.\n')


def print_noise(results, out):
    w = out.write
    spreads, us_spreads, other, idle = [], [], [], []
    slow = []
    for runs in results.values():
        sm = summarize(runs)
        ok = [r for r in runs if 'error' not in r]
        if sm and sm['n'] > 1:
            spreads.append(sm['spread'])
            us_spreads.append(sm['us_spread'])
            best = min(r['srv_us'] for r in ok)
            slow += [(r['srv_us'] / best, r) for r in ok if r['srv_us'] > 2 * best]
        other += [r['other'] for r in ok if 'other' in r]
        idle += [r['idle'] for r in ok if 'idle' in r]
    pair_spreads = []
    cells = {c for c, _ in results}
    for cell in cells:
        pr = paired_list(results.get((cell, 'evioloop'), []), results.get((cell, 'uvloop'), []),
                         'srv_us')
        if len(pr) > 1:
            pair_spreads.append(max(pr) - min(pr))
    w('\n== Noise ==\n')
    if spreads:
        w(f'Spread over rounds, (max-min)/median, over all cells and servers: req/s median '
          f'{median(spreads):.0f}%, worst {max(spreads):.0f}%; server CPU/request median '
          f'{median(us_spreads):.0f}%, worst {max(us_spreads):.0f}%.\n')
    if pair_spreads:
        w(f'evioloop/uvloop CPU/request ratio, max-min over the rounds of a cell: median '
          f'{median(pair_spreads):.2f}, worst {max(pair_spreads):.2f}.\n')
    nruns = sum(len(r) for r in results.values())
    if slow:
        w(f'{len(slow)} of {nruns} runs needed more than 2x the server CPU/request of the\n'
          'best run of the same cell and server (usually a spell where the whole machine\n'
          'was slow: the client and softirq cost per request rose with it):\n')
        for f, r in sorted(slow, key=lambda x: -x[0])[:8]:
            w(f'  {r["cell"]:<18} {LOOP_LABEL.get(r["server"], r["server"]):<14} round '
              f'{r["round"] + 1}: {f:.1f}x (cli {r["cli_us"]:.1f} us/req, other '
              f'{fmt(r.get("other"), ".2f")}, idle {fmt(r.get("idle"), ".2f")} cores)\n')
    if other:
        w(f'Other load during the windows (cores busy outside server and client): median '
          f'{median(other):.2f}, max {max(other):.2f} of {os.cpu_count()}; idle: median '
          f'{median(idle):.2f}, max {max(idle):.2f}.\n')
    try:
        with open('/proc/loadavg') as f:
            w(f'/proc/loadavg at the end: {f.read().strip()}\n')
    except OSError:
        pass


# --------------------------------------------------------------------------- main

def parse_args(argv):
    p = argparse.ArgumentParser(prog='benchmarks/net/run.py', description=__doc__.split('\n')[0])
    p.add_argument('--quick', action='store_true',
                   help=f'{QUICK_ROUNDS} rounds of {QUICK_DURATION}s runs; without --filter '
                        f'only {", ".join(QUICK_CELLS)}')
    p.add_argument('--rounds', type=int, help=f'rounds (default {DEFAULT_ROUNDS})')
    p.add_argument('--duration', type=float,
                   help=f'measured seconds per run (default {MEASURE_BUDGET} / rounds, at '
                        f'least {MIN_DURATION}: {MEASURE_BUDGET / DEFAULT_ROUNDS:g} for '
                        f'{DEFAULT_ROUNDS} rounds)')
    p.add_argument('--warmup', type=float,
                   help=f'warm-up seconds per run (default {DEFAULT_WARMUP})')
    p.add_argument('--extra', type=float,
                   help=f'seconds for extra rounds of the cells whose runs disagree by more '
                        f'than 2x in server CPU/request (default {EXTRA_BUDGET:g}, '
                        f'--quick: 0)')
    p.add_argument('--filter', default='',
                   help='comma-separated globs on cell ids, e.g. "proto-1k-*,http-*" '
                        '(see --list)')
    p.add_argument('--loops', default='',
                   help='comma-separated loops (default: evioloop,uvloop,asyncio and rloop '
                        'if importable)')
    p.add_argument('--no-rloop', action='store_true', help='do not add rloop by default')
    p.add_argument('--no-cref', action='store_true', help='skip the C reference server')
    p.add_argument('--threads', type=int, default=1,
                   help='load generator threads (0 = one per core; default 1)')
    p.add_argument('--verify', choices=('counts', 'sampled', 'all'), default='sampled',
                   help='echo checks: byte counts only; counts + the content of a random '
                        '1 in 16 replies per connection (default); counts + all content')
    p.add_argument('--pin', action='store_true',
                   help='pin the server to CPU 0 and the client to CPU 1 (on the shared 2-core VM '
                        'this made every request 3-4x dearer)')
    p.add_argument('--python', default=sys.executable,
                   help='interpreter for the Python servers (default: this one)')
    p.add_argument('--json', help='also write every run as JSON to this file')
    p.add_argument('--list', action='store_true', help='list the cell ids and exit')
    p.add_argument('--report', metavar='JSON',
                   help='print the tables from a file written by --json; run nothing')
    opts = p.parse_args(argv)
    if opts.rounds is None:
        opts.rounds = QUICK_ROUNDS if opts.quick else DEFAULT_ROUNDS
    if opts.rounds < 1:
        p.error('--rounds must be at least 1')
    if opts.duration is None:
        opts.duration = (QUICK_DURATION if opts.quick else
                         round(max(MIN_DURATION, MEASURE_BUDGET / opts.rounds), 2))
    if opts.extra is None:
        opts.extra = 0 if opts.quick else EXTRA_BUDGET
    if opts.warmup is None:
        opts.warmup = QUICK_WARMUP if opts.quick else DEFAULT_WARMUP
    return opts


def print_report(cells, servers, results, opts, out):
    classic = [c for c in cells if c.classic]
    print_tables(classic, servers, results, opts, out)
    events_bench.print_tables(cells, results, out)
    redis_bench.print_tables(cells, results, out)
    print_summary(classic, servers, results, opts, out)
    print_noise(results, out)


def report(opts, cells, out):
    with open(opts.report) as f:
        runs = json.load(f)
    results = {}
    for r in runs:
        results.setdefault((r['cell'], r['server']), []).append(r)
    present = {c for c, _ in results}
    cells = [c for c in cells if c.id in present]
    order = list(BASE_LOOPS) + ['rloop']
    found = {s for _, s in results if s != CREF and ':' not in s and s != redis_bench.REAL}
    servers = [s for s in order if s in found] + sorted(found - set(order))
    per = [len(v) for v in results.values()] or [0]
    out.write(f'net benchmarks, from {opts.report}: {len(cells)} cells, {len(runs)} runs, '
              f'{min(per)} to {max(per)} per cell and server\n')
    print_report(cells, servers, results, opts, out)
    return 0


def select_cells(flt, quick=False):
    cells = all_cells()
    if quick and not flt:
        cells = [c for c in cells if c.id in QUICK_CELLS]
    if flt:
        globs = [g.strip() for g in flt.split(',') if g.strip()]
        cells = [c for c in cells if any(fnmatch.fnmatch(c.id, g) for g in globs)]
    return cells


def main(argv=None, out=None, collect=None):
    """Run the matrix; with a dict as collect, leave the cells, servers, results,
    skipped cells and options in it (benchmarks/report.py reads them)."""
    out = out or sys.stdout
    opts = parse_args(sys.argv[1:] if argv is None else list(argv))
    cells = select_cells(opts.filter, opts.quick)
    if opts.list:
        for c in all_cells():
            out.write(c.id + '\n')
        return 0
    if not cells:
        out.write(f'net: no cell matches --filter {opts.filter!r} (see --list)\n')
        return 2
    if opts.report:
        return report(opts, cells, out)
    skipped = [(c, c.unavailable()) for c in cells]
    for reason in dict.fromkeys(r for _, r in skipped if r):
        out.write(f'net: skipped {", ".join(c.id for c, r in skipped if r == reason)}: '
                  f'{reason}\n')
    cells = [c for c, r in skipped if not r]
    if collect is not None:
        collect.update(cells=cells, servers=[], results={}, opts=opts,
                       skipped=[(c.id, r) for c, r in skipped if r])
    if not cells:
        return 0
    exes = build()
    if opts.loops:
        wanted = [x.strip() for x in opts.loops.split(',') if x.strip()]
    else:
        wanted = list(BASE_LOOPS) + ([] if opts.no_rloop else ['rloop'])
    servers, missing = [], []
    for name in wanted:
        (servers if loop_available(opts.python, name) else missing).append(name)
    if 'rloop' in missing and not opts.loops:
        missing.remove('rloop')     # optional unless asked for
    w = out.write
    w(f'net benchmarks: {len(cells)} cells x {len(servers)} loops, {opts.rounds} round(s), '
      f'{opts.warmup}s warm-up + {opts.duration}s per run, up to {opts.extra:g}s of extra '
      f'rounds, client threads '
      f'{opts.threads or os.cpu_count()}, python {opts.python} '
      f'({sys.version.split()[0] if opts.python == sys.executable else "?"})\n')
    w(f'loops: {", ".join(servers)}' + (f'; not importable: {", ".join(missing)}'
                                         if missing else '')
      + ('' if opts.no_cref else '; plus the C reference server') + '\n')
    if not servers:
        return 2
    results = {}
    if collect is not None:
        collect.update(servers=servers, results=results, missing=missing)
    t_start = time.monotonic()
    total_runs = 0

    def cell_round(ci, cell, rnd, with_cref):
        nonlocal total_runs
        row = cell.rows(servers, with_cref)
        k = (rnd + ci) % len(row)
        for server in row[k:] + row[:k]:
            r = (cell.run or run_one)(cell, server, opts, exes)
            r.update(round=rnd, cell=cell.id, server=server)
            results.setdefault((cell.id, server), []).append(r)
            total_runs += 1
            if 'error' in r:
                w(f'  ! {cell.id} {server}: {r["error"][:300]}\n')

    for rnd in range(opts.rounds):
        cref_done = set()
        for ci, cell in enumerate(cells):
            key = (cell.mode, cell.size, cell.conns)
            with_cref = not opts.no_cref and (cell.own_cref or key not in cref_done)
            if not cell.own_cref:
                cref_done.add(key)
            cell_round(ci, cell, rnd, with_cref)
        w(f'  round {rnd + 1}/{opts.rounds} done, {time.monotonic() - t_start:.0f}s\n')
        out.flush() if hasattr(out, 'flush') else None

    # Extra rounds, within a time budget, for the cells where some server's runs
    # disagree by more than 2x in CPU/request (a slow spell of the machine hit one
    # run) or failed; the worst cell first, at most two extra rounds per cell.
    deadline = time.monotonic() + opts.extra
    extra = {}
    while opts.rounds > 1:
        cand = []
        for ci, cell in enumerate(cells):
            if extra.get(cell.id, 0) >= 2:
                continue
            worst = max(disagreement(results.get((cell.id, s), []))
                        for s in cell.rows(servers, True))
            if worst > 2:
                cand.append((worst, ci, cell))
        if not cand:
            break
        worst, ci, cell = max(cand, key=lambda c: c[0])
        with_cref = (cell.id, CREF) in results
        cost = len(cell.rows(servers, with_cref)) * cell.run_seconds(opts)
        if time.monotonic() + cost > deadline:
            break
        n = extra.get(cell.id, 0)
        extra[cell.id] = n + 1
        w(f'  extra round for {cell.id} (runs disagree by '
          f'{"a failure" if worst == float("inf") else f"{worst:.1f}x"})\n')
        cell_round(ci, cell, opts.rounds + n, with_cref)
    print_report(cells, servers, results, opts, out)
    w(f'\n{total_runs} runs in {time.monotonic() - t_start:.0f}s.\n')
    if opts.json:
        with open(opts.json, 'w') as f:
            json.dump([r for runs in results.values() for r in runs], f, indent=1)
    failed = sum('error' in r for runs in results.values() for r in runs)
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
