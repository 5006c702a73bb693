"""The benchmark driver: evioloop vs uvloop vs the stock loop (and rloop when installed).

    python benchmarks/run.py [--quick] [--only PARTS] [--rounds N] [--report-dir DIR]
    tox -e bench [-- --quick]

Runs the micro benchmark (benchmarks/micro.py), the network benchmarks
(benchmarks/net/run.py) and the in-process ones (benchmarks/inproc.py: UDP, pipes,
spawn, TLS), prints their tables, and writes a Markdown report with PNG plots
(benchmarks/report.py) into --report-dir. Run it with a Python where evioloop and the
`bench` extra are installed (`pip install '.[bench]'`, optionally `pip install rloop`);
the source tree itself is never imported.
"""
import argparse
import datetime
import importlib.util
import os
import subprocess
import sys
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
NET_RUN = os.path.join(HERE, 'net', 'run.py')
DEFAULT_REPORT_DIR = os.path.join(HERE, 'results', 'latest')
PARTS = ('micro', 'net', 'inproc', 'memory')
EVENTS_MEMORY = os.path.join(HERE, 'net', 'events_memory.py')
QUICK_ROUNDS = 3        # --quick still runs 3 interleaved rounds, of shorter runs


def parse_args(argv):
    p = argparse.ArgumentParser(prog='run.py', description=__doc__.split('\n')[0])
    p.add_argument('--quick', action='store_true',
                   help='smoke run: fewer rounds and shorter measurements')
    p.add_argument('--only', metavar='PARTS',
                   help='comma-separated parts to run: micro, net, inproc, memory '
                        '(net/events_memory.py), or in-process workloads (udp, pipe-read, '
                        'pipe-write, spawn, tls-1k, tls-100k)')
    p.add_argument('--rounds', type=int, metavar='N',
                   help='rounds per benchmark (default: micro and inproc 5, net 3; '
                        f'--quick: {QUICK_ROUNDS})')
    p.add_argument('--filter', metavar='GLOBS',
                   help='network cells to run, comma-separated globs on their ids, e.g. '
                        '"events-*,redis-*" (benchmarks/net/run.py --list shows them; the '
                        'micro part still runs unless --only net)')
    p.add_argument('--json-dir', metavar='DIR',
                   help='also write every measurement to DIR/{micro,net,inproc}.json')
    p.add_argument('--report-dir', metavar='DIR', default=DEFAULT_REPORT_DIR,
                   help='where report.md and the PNG plots go (default: '
                        'benchmarks/results/latest)')
    p.add_argument('--no-plots', action='store_true', help='write the report without plots')
    a = p.parse_args(argv)
    import inproc
    a.parts, a.inproc = set(), []
    for x in (a.only or ','.join(PARTS)).split(','):
        x = x.strip()
        if x in PARTS:
            a.parts.add(x)
        elif x in inproc.WORKLOADS:
            a.parts.add('inproc')
            a.inproc.append(x)
        elif x:
            p.error(f'--only: unknown part {x!r}: {", ".join(PARTS + inproc.WORKLOADS)}')
    if a.quick and a.rounds is None:
        a.rounds = QUICK_ROUNDS
    return a


def check_installed():
    """evioloop and uvloop must import from site-packages, in a fresh interpreter."""
    code = 'import evioloop, uvloop; print(evioloop.__file__)'
    r = subprocess.run([sys.executable, '-c', code], cwd=HERE, capture_output=True, text=True)
    if r.returncode != 0:
        last = (r.stderr.strip().splitlines() or ['?'])[-1]
        print(f'run.py: {last}\n  install evioloop with the bench extra into this Python '
              f"first: pip install '.[bench]' (from the repository), or run `tox -e bench`",
              file=sys.stderr)
        return False
    return True


def run_micro(a, collect):
    import micro
    argv = []
    if a.quick:
        argv.append('--quick')
    if a.rounds:
        argv += ['--rounds', str(a.rounds)]
    if a.json_dir:
        argv += ['--json', os.path.join(a.json_dir, 'micro.json')]
    summary = micro.main(argv, collect=collect)
    if isinstance(summary, int):
        return summary
    # a row that fails on evioloop is a failure of the run; rloop may lack a feature
    failed = [row for row, s in summary.items() if 'evioloop' in s['errors']]
    if failed:
        print(f'micro benchmark: evioloop failed on {", ".join(failed)}', file=sys.stderr)
        return 1
    return 0


def load_net():
    # by path, under a name of its own: nothing else called `net` can shadow it
    spec = importlib.util.spec_from_file_location('_evioloop_bench_net_run', NET_RUN)
    net_run = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(net_run)
    return net_run


def run_net(a, collect):
    if not os.path.exists(NET_RUN):
        print('network benchmarks: benchmarks/net/run.py is not there yet; skipped')
        return 0
    try:
        net_run = load_net()
    except Exception:
        traceback.print_exc()
        print('network benchmarks: benchmarks/net/run.py failed to import; skipped',
              file=sys.stderr)
        return 1
    if not hasattr(net_run, 'main'):
        print('network benchmarks: benchmarks/net/run.py has no main(argv); skipped')
        return 0
    argv = []
    if a.quick:
        argv.append('--quick')
    if a.rounds:
        argv += ['--rounds', str(a.rounds)]
    if a.json_dir:
        argv += ['--json', os.path.join(a.json_dir, 'net.json')]
    if a.filter:
        argv += ['--filter', a.filter]
    try:
        rc = net_run.main(argv, collect=collect)
    except SystemExit as e:
        rc = e.code
    collect['module'] = net_run
    return rc if isinstance(rc, int) else 0


def run_inproc(a, collect):
    import inproc
    argv = ['--quick'] if a.quick else []
    if a.rounds:
        argv += ['--rounds', str(a.rounds)]
    if a.inproc:
        argv += ['--only', ','.join(a.inproc)]
    if a.json_dir:
        argv += ['--json', os.path.join(a.json_dir, 'inproc.json')]
    return inproc.main(argv, collect=collect)


def run_memory(a, collect):
    """net/events_memory.py: an Events server's RSS while its peers never read."""
    cmd = [sys.executable, EVENTS_MEMORY, '--seconds', '2' if a.quick else '5']
    # from benchmarks/net/: its server child (python -c) must not import the source tree
    try:
        r = subprocess.run(cmd, cwd=os.path.dirname(EVENTS_MEMORY), capture_output=True,
                           text=True, timeout=120)
    except subprocess.TimeoutExpired:
        r = None
    if r is None or r.returncode != 0:
        why = 'timed out' if r is None else (r.stderr.strip().splitlines() or ['?'])[-1]
        print(f'events_memory.py failed: {why}', file=sys.stderr)
        collect['error'] = why
        return 1
    print(r.stdout, end='')
    collect['lines'] = r.stdout.strip().splitlines()
    return 0


def write_report(a, argv, parts, start_load):
    import collect as col
    import inproc
    import micro
    import report
    groups, skipped = [], []
    if 'micro' in parts:
        g, s = col.from_micro(parts['micro'], micro.ROWS)
        groups += g
        skipped += s
    if 'net' in parts and parts['net'].get('module'):
        g, s = col.from_net(parts['net'], parts['net']['module'])
        groups += g
        skipped += s
    if 'inproc' in parts:
        g, s = col.from_inproc(parts['inproc'])
        groups += g
        skipped += s
    memory = parts.get('memory', {})
    if memory.get('error'):
        skipped.append(('net/events_memory.py', f'failed: {memory["error"]}'))
    skipped += [(f'part {x}', 'not asked for (--only)') for x in PARTS if x not in a.parts]
    # the versions and paths of the loops measured (probed by the parts themselves)
    loops = (parts.get('inproc', {}).get('found') or parts.get('micro', {}).get('found')
             or inproc.probe(inproc.LOOPS))
    loops = {k: v for k, v in loops.items() if ':' not in k}
    rounds = a.rounds or 'micro and in-process 5, network 3'
    data = {'meta': col.meta(argv, rounds, loops, start_load), 'groups': groups,
            'skipped': skipped, 'memory_notes': memory.get('lines', [])}
    out = report.write_report(data, a.report_dir, plots=not a.no_plots)
    print(f'\nreport: {out["report"]}' + (f' and {len(out["plots"])} plots'
                                         if out['plots'] else f' (plots skipped: '
                                         f'{out["plot_note"] or "nothing to plot"})'))
    if skipped:
        print('skipped:')
        for what, why in skipped:
            print(f'  {what}: {why}')
    else:
        print('skipped: nothing')


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    if HERE not in sys.path:
        sys.path.insert(0, HERE)
    a = parse_args(argv)
    if a.rounds is not None and a.rounds < 1:
        print('run.py: --rounds must be at least 1', file=sys.stderr)
        return 2
    if not check_installed():
        return 2
    if a.json_dir:
        os.makedirs(a.json_dir, exist_ok=True)
    import collect as col
    start_load = col.loadavg()
    print(f'benchmarks: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC, '
          f'load average {start_load}', flush=True)
    t0 = time.monotonic()
    rc = 0
    parts = {}
    if 'micro' in a.parts:
        print('=' * 20, 'micro benchmark', '=' * 20, flush=True)
        rc = run_micro(a, parts.setdefault('micro', {}))
        print(flush=True)
    if 'net' in a.parts:
        print('=' * 20, 'network benchmarks', '=' * 20, flush=True)
        rc = run_net(a, parts.setdefault('net', {})) or rc
        print(flush=True)
    if 'inproc' in a.parts:
        print('=' * 20, 'in-process benchmarks (UDP, pipes, spawn, TLS)', '=' * 20, flush=True)
        rc = run_inproc(a, parts.setdefault('inproc', {})) or rc
        print(flush=True)
    if 'memory' in a.parts:
        print('=' * 20, 'memory of an Events server whose peers never read', '=' * 20,
              flush=True)
        rc = run_memory(a, parts.setdefault('memory', {})) or rc
    try:
        write_report(a, argv, parts, start_load)
    except Exception:       # the measurements were printed; a report bug must show
        traceback.print_exc()
        rc = rc or 1
    print(f'benchmarks done in {time.monotonic() - t0:.0f} s', flush=True)
    return rc


if __name__ == '__main__':
    sys.exit(main())
