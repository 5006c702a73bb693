"""Turn what micro.py, net/run.py and inproc.py measured into report.py's structure.

Each from_*() takes the dict that part's main(..., collect=dict) filled and returns
(groups, skipped); meta() describes the machine and the loops.  The load generator
sentences are built here, one per workload, from the numbers of the same run.
"""
import datetime
import os
import platform
import shlex
import statistics
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def _cpu_model():
    try:
        with open('/proc/cpuinfo') as f:
            for line in f:
                if line.startswith('model name'):
                    return line.split(':', 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _ram_gib():
    try:
        with open('/proc/meminfo') as f:
            for line in f:
                if line.startswith('MemTotal:'):
                    return int(line.split()[1]) / 1024 / 1024
    except (OSError, ValueError):
        pass
    return None


def loadavg():
    try:
        return ', '.join(f'{x:.2f}' for x in os.getloadavg())
    except OSError:
        return '?'


def meta(argv, rounds, loops, start_load):
    return {
        'date': datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M UTC'),
        'command': ' '.join(shlex.quote(x) for x in ['python', 'benchmarks/run.py'] + argv),
        'rounds': rounds,
        'machine': {'cpu': _cpu_model(), 'cores': os.cpu_count(), 'ram_gib': _ram_gib()},
        'kernel': platform.release(),
        'python': f'{sys.version.split()[0]} ({sys.executable})',
        'loops': loops,
        'loadavg_start': start_load, 'loadavg_end': loadavg(),
        # a statement of what may be, not a claim about this run: the load
        # averages above are the measurement
        'shared_note': ('The machine is shared and other work may run beside a benchmark; '
                        'the load averages show how busy it was: compare ratios within '
                        'this report, not numbers across reports.'),
    }


def _loop_of(server):
    name = server.partition(':')[0]
    return name if name in ('evioloop', 'uvloop', 'asyncio', 'rloop') else 'C'


# ---------------------------------------------------------------- micro

def from_micro(c, rows_meta):
    if not c.get('results'):
        return [], []
    wls = []
    for row in c['rows']:
        rws = []
        for x in c['loops']:
            runs = []
            for rnd, m in enumerate(c['results'][row][x]):
                if 'error' in m:
                    runs.append({'round': rnd, 'error': m['error']})
                else:
                    runs.append({'round': rnd, 'rate': m['ops_per_s'],
                                 'cpu_us': m['cpu_seconds'] / m['ops'] * 1e6})
            rws.append({'id': x, 'label': 'stock' if x == 'asyncio' else x, 'loop': x,
                        'runs': runs})
        busy = [100 * m['ops_per_s'] / m['ops_per_cpu_s'] for x in c['loops']
                for m in c['results'][row][x] if 'error' not in m and m['ops_per_cpu_s']]
        sentence = None
        if busy:
            sentence = ('no load generator: the worker process does every operation itself '
                        f'and was on the CPU {statistics.median(busy):.0f}% of its timed '
                        'runs (CPU / wall time, median over all loops and rounds).')
        wls.append({'id': row, 'title': rows_meta[row][0], 'unit': 'ops/s', 'base': 'uvloop',
                    'rows': rws, 'loadgen': sentence})
    group = {'id': 'micro', 'title': 'Micro benchmark: loop primitives', 'workloads': wls,
             'note': 'One process per loop and row, no load generator: every operation is '
                     'the loop\'s own work (benchmarks/README.md). CPU is the worker '
                     'process\'s.'}
    skipped = [(f'micro on {x}', 'not installed') for x in c.get('missing', [])]
    return [group], skipped


# ---------------------------------------------------------------- net

def _net_runs(runs):
    out = []
    for r in runs:
        if 'error' in r:
            out.append({'round': r['round'], 'error': r['error']})
        else:
            out.append({'round': r['round'], 'rate': r['rps'], 'cpu_us': r['srv_us'],
                        'hwm_kib': r.get('srv_hwm_kib'), 'cli_pct': r.get('cli_pct'),
                        'srv_pct': r.get('srv_pct')})
    return out


def _cell_title(cell):
    if cell.mode == 'redis':
        return f'{cell.id} (redis-benchmark -P {cell.pipeline})'
    if cell.mode == 'http':
        return f'{cell.kind} {cell.conns} conns'
    return f'{cell.kind} {cell.size // 1024} KiB x{cell.conns}'


def _loadgen_net(net, cells, servers, results):
    """{(mode, size, conns): sentence} from the C reference runs of the same client."""
    from benchlib import CREF, summarize
    out = {}
    for cell in cells:
        c = summarize(results.get((cell.id, CREF), []))
        key = (cell.mode, cell.size, cell.conns)
        if not c or key in out:
            continue
        py = []
        for cc in cells:
            if (cc.mode, cc.size, cc.conns) != key:
                continue
            for s in cc.rows(servers, False):
                sm = summarize(results.get((cc.id, s), []))
                if sm and s != CREF:
                    py.append(sm)
        if not py:
            continue
        best = max(sm['rps'] for sm in py)
        min_us = min(sm['srv_us'] for sm in py)
        srv_pct = statistics.median(sm['srv_pct'] for sm in py)
        cli_pct = statistics.median(sm['cli_pct'] for sm in py)
        verdict, why = net.client_verdict(cell, c, best, min_us, srv_pct, cli_pct)
        out[key] = f'{verdict}: {why}.'
    return out


def _loadgen_redis(cell, results, servers):
    from redis_bench import CLIENT_BOUND
    pcts = {}
    for s in cell.rows(servers, False):
        for r in results.get((cell.id, s), []):
            if 'error' not in r and s.partition(':')[0] in servers:
                pcts.setdefault(s, []).append(r['cli_pct'])
    if not pcts:
        return None
    med = {s: statistics.median(v) for s, v in pcts.items()}
    top = max(med.values())
    bound = [s for s, v in med.items() if v >= CLIENT_BOUND]
    if bound:
        return (f'redis-benchmark (single-threaded) used {top:.0f}% of a core (median of '
                f'the runs) with {", ".join(bound)}: there req/s is the client\'s limit; '
                'compare server CPU per request.')
    return (f'redis-benchmark (single-threaded) used at most {top:.0f}% of a core (median '
            f'of the runs, worst Python row), below the {CLIENT_BOUND}% where it would be '
            'the limit.')


def from_net(c, net):
    """net: the loaded benchmarks/net/run.py module."""
    import events_bench
    import redis_bench
    from benchlib import CREF, LOOP_LABEL
    cells, servers, results = c.get('cells', []), c.get('servers', []), c.get('results', {})
    skipped = [(f'net cell {cid}', why) for cid, why in c.get('skipped', [])]
    skipped += [(f'net on {x}', 'not importable') for x in c.get('missing', [])]
    if not results:
        return [], skipped
    lg = _loadgen_net(net, cells, servers, results)
    groups = {
        'echo': {'id': 'echo', 'title': 'TCP echo (loadgen.c; three server flavours)',
                 'workloads': []},
        'http': {'id': 'http', 'title': 'Keep-alive HTTP (loadgen.c; one write, and head + '
                                        'body in two writes)', 'workloads': []},
        'events': {'id': 'events', 'title': 'Events API examples: echo, HTTP, Redis',
                   'workloads': []},
    }
    for g in groups.values():
        g['note'] = ('Server CPU per request and the server process\'s peak RSS; the client '
                     'runs in its own process (benchmarks/net/README.md).')
    groups['events']['note'] += (' Here "vs uvloop" is against the asyncio.Protocol (or '
                                 'resp.py Redis) server on uvloop of the same workload: the '
                                 'row shown with "-".')
    for cell in cells:
        if cell.classic:
            g = groups['http' if cell.mode == 'http' else 'echo']
            rows = [s for s in servers + [CREF] if (cell.id, s) in results]
            label = LOOP_LABEL.get
        else:
            g = groups['events']
            rows = [s for s in cell.rows(servers, True) if (cell.id, s) in results]
            mod = redis_bench if cell.mode == 'redis' else events_bench
            label = lambda s, _d=None, _m=mod: _m.row_label(s)  # noqa: E731
        rws = [{'id': s, 'label': label(s, s), 'loop': _loop_of(s),
                'runs': _net_runs(results[(cell.id, s)])} for s in rows]
        if cell.mode == 'redis':
            sentence = _loadgen_redis(cell, results, servers)
        else:
            sentence = lg.get((cell.mode, cell.size, cell.conns))
        g['workloads'].append({'id': cell.id, 'title': _cell_title(cell), 'unit': 'req/s',
                               'base': cell.base, 'rows': rws, 'loadgen': sentence})
    return [g for g in groups.values() if g['workloads']], skipped


# ---------------------------------------------------------------- in-process

def _inproc_sentence(w, runs):
    ok = [r for rs in runs.values() for r in rs if 'error' not in r and r['seconds']]
    if not ok:
        return None
    proc = statistics.median(100 * r['cpu'] / r['seconds'] for r in ok)
    child = [100 * r['child_cpu'] / r['seconds'] for r in ok]
    if w in ('pipe-read', 'pipe-write'):
        who = 'the writer (dd, 64 KiB writes)' if w == 'pipe-read' else 'the reader (wc -c)'
        return (f'{who} used {statistics.median(child):.0f}% of a core (median over all '
                f'runs, at most {max(child):.0f}%) while the loop\'s process used '
                f'{proc:.0f}%: the child is far from a core\'s limit, so the loop side '
                'sets the rate.')
    if w == 'spawn':
        per = statistics.median(r['child_cpu'] / r['ops'] * 1e3 for r in ok if r['ops'])
        mine = statistics.median(r['cpu'] / r['ops'] * 1e3 for r in ok if r['ops'])
        return (f'the children are `true` (exec and exit: {per:.2f} ms of CPU each, median); '
                f'the same `true` on every loop is the floor, and the loop\'s process spent '
                f'{mine:.2f} ms per spawn at {proc:.0f}% of a core.')
    what = 'UDP' if w == 'udp' else 'TLS (open_connection(ssl=...))'
    return (f'no separate load generator: the {what} client is the same Python code on '
            f'every loop, in the one process with the server, which used {proc:.0f}% of a '
            'core (median over all runs); the rate is that of the loop under test running '
            'both halves.')


def from_inproc(c):
    import inproc
    skipped = [(f'in-process {w}', why) for w, why in c.get('skipped', [])]
    skipped += [(f'in-process on {x}', 'not installed') for x in c.get('missing', [])]
    if not c.get('results'):
        return [], skipped
    wls = []
    for w in c['workloads']:
        runs = c['results'][w]
        rws = []
        for x in c['loops']:
            rr = []
            for r in runs[x]:
                if 'error' in r or not r.get('ops'):
                    rr.append({'round': r['round'], 'error': r.get('error', 'no operations')})
                else:
                    rr.append({'round': r['round'], 'rate': r['ops'] / r['seconds'],
                               'cpu_us': r['cpu'] / r['ops'] * 1e6, 'hwm_kib': r['hwm_kib']})
            rws.append({'id': x, 'label': 'stock' if x == 'asyncio' else x, 'loop': x,
                        'runs': rr})
        wls.append({'id': w, 'title': inproc.TITLE[w], 'unit': inproc.UNIT.get(w, 'ops/s'),
                    'base': 'uvloop', 'rows': rws, 'loadgen': _inproc_sentence(w, runs)})
    note = ('Both ends in one process on the loop under test; CPU per operation and peak '
            'RSS are that process\'s (for the pipes one operation is one MiB).')
    if c.get('cert'):
        note += f' TLS certificate: {c["cert"]}.'
    return [{'id': 'inproc', 'title': 'UDP, pipes, subprocess spawn, TLS (in-process)',
             'note': note, 'workloads': wls}], skipped
