"""The benchmark driver: evioloop vs uvloop vs the stock loop (and rloop when installed).

    python benchmarks/run.py [--quick] [--only micro|net] [--rounds N]    # or: tox -e bench

Runs the micro benchmark (benchmarks/micro.py), then the network benchmarks
(benchmarks/net/run.py), and prints their ratio tables. Run it with a Python where
evioloop and the `bench` extra are installed (`pip install '.[bench]'`, optionally
`pip install rloop`); the source tree itself is never imported.
"""
import argparse
import importlib.util
import os
import subprocess
import sys
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
NET_RUN = os.path.join(HERE, 'net', 'run.py')


def parse_args(argv):
    p = argparse.ArgumentParser(prog='run.py', description=__doc__.split('\n')[0])
    p.add_argument('--quick', action='store_true',
                   help='smoke run: fewer rounds and shorter measurements')
    p.add_argument('--only', choices=('micro', 'net'), help='run only this part')
    p.add_argument('--rounds', type=int, metavar='N',
                   help='rounds per benchmark (default: 5, --quick: 2)')
    p.add_argument('--filter', metavar='GLOBS',
                   help='network cells to run, comma-separated globs on their ids, e.g. '
                        '"events-*,redis-*" (benchmarks/net/run.py --list shows them; the '
                        'micro part still runs unless --only net)')
    p.add_argument('--json-dir', metavar='DIR',
                   help='also write every measurement to DIR/micro.json and DIR/net.json')
    return p.parse_args(argv)


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


def run_micro(a):
    sys.path.insert(0, HERE)
    import micro
    argv = []
    if a.quick:
        argv.append('--quick')
    if a.rounds:
        argv += ['--rounds', str(a.rounds)]
    if a.json_dir:
        argv += ['--json', os.path.join(a.json_dir, 'micro.json')]
    summary = micro.main(argv)
    if isinstance(summary, int):
        return summary
    # a row that fails on evioloop is a failure of the run; rloop may lack a feature
    failed = [row for row, s in summary.items() if 'evioloop' in s['errors']]
    if failed:
        print(f'micro benchmark: evioloop failed on {", ".join(failed)}', file=sys.stderr)
        return 1
    return 0


def run_net(a):
    if not os.path.exists(NET_RUN):
        print('network benchmarks: benchmarks/net/run.py is not there yet; skipped')
        return 0
    try:
        # by path, under a name of its own: nothing else called `net` can shadow it
        spec = importlib.util.spec_from_file_location('_evioloop_bench_net_run', NET_RUN)
        net_run = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(net_run)
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
        rc = net_run.main(argv)
    except SystemExit as e:
        rc = e.code
    return rc if isinstance(rc, int) else 0


def main(argv=None):
    a = parse_args(sys.argv[1:] if argv is None else argv)
    if a.rounds is not None and a.rounds < 1:
        print('run.py: --rounds must be at least 1', file=sys.stderr)
        return 2
    if not check_installed():
        return 2
    if a.json_dir:
        os.makedirs(a.json_dir, exist_ok=True)
    t0 = time.monotonic()
    rc = 0
    if a.only in (None, 'micro'):
        print('=' * 20, 'micro benchmark', '=' * 20, flush=True)
        rc = run_micro(a)
        print(flush=True)
    if a.only in (None, 'net'):
        print('=' * 20, 'network benchmarks', '=' * 20, flush=True)
        rc = run_net(a) or rc
    print(f'benchmarks done in {time.monotonic() - t0:.0f} s', flush=True)
    return rc


if __name__ == '__main__':
    sys.exit(main())
