"""What the benchmark drivers share: interleaved rounds and their paired statistics.

micro.py and inproc.py measure every loop once per round, in an order that rotates
from round to round, so that the loops being compared run back to back under the
same machine load; each result is tagged with its round. A ratio between two loops
is then taken per round (paired), and its median and [min-max] over the rounds are
what the tables show: report.py computes its tables the same way from the same runs.

    worker_env()                          the environment for a worker process
    probe(names, modules)                 which loops import, their versions and paths
    run_rounds(loops, rounds, run_one)    {loop: [result, ...]}, each tagged 'round'
    median(xs), paired_ratios(runs, base_runs, key), spread(rs), fmt_ratio(rs)
"""
import json
import math
import os
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))

# debug modes would change what every loop does on the hot path
DEBUG_VARS = ('PYTHONASYNCIODEBUG', 'PYTHONDEVMODE', 'PYTHONTRACEMALLOC')

PROBE = ('import json, sys; m = __import__(sys.argv[1]); '
         'print(json.dumps([getattr(m, "__version__", sys.version.split()[0]), '
         'getattr(m, "__file__", "")]))')


def worker_env():
    env = dict(os.environ)
    for var in DEBUG_VARS:
        env.pop(var, None)
    return env


def probe(names, modules=None):
    """{name: [version, path] or None} and, for each that failed, name + ':error': the
    last line of its error; one fresh interpreter per loop (modules: name -> module to
    import, the name itself by default)."""
    found = {}
    for name in names:
        mod = (modules or {}).get(name, name)
        r = subprocess.run([sys.executable, '-c', PROBE, mod], cwd=HERE, env=worker_env(),
                           capture_output=True, text=True)
        found[name] = json.loads(r.stdout) if r.returncode == 0 else None
        if found[name] is None:
            found[name + ':error'] = (r.stderr.strip().splitlines() or ['?'])[-1][:300]
    return found


def round_order(loops, rnd, offset=0):
    """The loops in the order of round rnd: rotated by one every round (offset: where
    the rotation starts, so that consecutive workloads do not all start alike)."""
    k = (rnd + offset) % len(loops)
    return loops[k:] + loops[:k]


def run_rounds(loops, rounds, run_one, offset=0):
    """Each round calls run_one(loop) for every loop once, in round_order; returns
    {loop: [result dict, ...]} in round order, each dict tagged with its 'round'."""
    results = {x: [] for x in loops}
    for rnd in range(rounds):
        for x in round_order(loops, rnd, offset):
            r = run_one(x)
            r['round'] = rnd
            results[x].append(r)
    return results


def median(xs):
    """The median of the numbers in xs, None and NaN left out; None if none is left."""
    xs = [x for x in xs if x is not None and not (isinstance(x, float) and math.isnan(x))]
    return statistics.median(xs) if xs else None


def _value(r, key):
    if 'error' in r:
        return None
    return key(r) if callable(key) else r.get(key)


def paired_ratios(runs, base_runs, key):
    """[value(run) / value(base run of the same round)] in round order, for the rounds
    where both have a value (and the base's is not zero). key: a field name, or a
    function of the run dict; runs with an 'error' have no value."""
    base = {r['round']: v for r in base_runs if (v := _value(r, key))}
    out = []
    for r in sorted(runs, key=lambda r: r['round']):
        v = _value(r, key)
        if v is not None and r['round'] in base:
            out.append(v / base[r['round']])
    return out


def spread(rs):
    """(median, min, max) of the ratios, or None without any."""
    return (statistics.median(rs), min(rs), max(rs)) if rs else None


def fmt_ratio(rs, suffix=''):
    """'1.23x [1.10-1.40]' (suffix 'x'), or '-' without any ratio."""
    s = spread(rs)
    if s is None:
        return '-'
    return f'{s[0]:.2f}{suffix} [{s[1]:.2f}-{s[2]:.2f}]'
