"""The benchmark report writer (benchmarks/report.py) and one end-to-end smoke run.

No speed is asserted anywhere: the synthetic results have known numbers, and the smoke
run checks that the report shows what the run's own JSON says, whatever the speed.
"""
import builtins
import importlib.util
import json
import os
import re
import statistics
import subprocess
import sys

import pytest

BENCH = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'benchmarks')
if not os.path.exists(os.path.join(BENCH, 'report.py')):
    # the sdist holds tests/ but not benchmarks/ (MANIFEST.in)
    pytest.skip(f'no benchmarks/ beside the tests ({BENCH})', allow_module_level=True)


def _load(name):
    spec = importlib.util.spec_from_file_location(f'_bench_{name}', os.path.join(BENCH,
                                                                                 f'{name}.py'))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


report = _load('report')


def _runs(rates, cpus=None, start=0):
    cpus = cpus or [1.0] * len(rates)
    return [{'round': start + i, 'rate': r, 'cpu_us': c, 'hwm_kib': 2048}
            for i, (r, c) in enumerate(zip(rates, cpus, strict=True))]


def synthetic():
    # evioloop/uvloop per round: 200/100, 300/100, 100/50 -> 2, 3, 2: median 2, [2-3].
    # The stock loop's round 3 has no uvloop partner and its round 1 failed: the paired
    # ratios are 50/100 and 25/50 only.
    evio = _runs([200, 300, 100], cpus=[4, 6, 2])
    uv = _runs([100, 100, 50], cpus=[8, 8, 8])
    stock = _runs([50, 999, 25, 1000])
    stock[1] = {'round': 1, 'error': 'boom'}
    wl = {'id': 'w1', 'title': 'Workload one', 'unit': 'ops/s', 'base': 'uvloop',
          'loadgen': 'the client used 12% of a core.',
          'rows': [{'id': 'evioloop', 'label': 'evioloop', 'loop': 'evioloop', 'runs': evio},
                   {'id': 'uvloop', 'label': 'uvloop', 'loop': 'uvloop', 'runs': uv},
                   {'id': 'asyncio', 'label': 'stock', 'loop': 'asyncio', 'runs': stock}]}
    failed = {'id': 'w2', 'title': 'Workload two', 'base': 'uvloop', 'loadgen': None,
              'rows': [{'id': 'evioloop', 'label': 'evioloop', 'loop': 'evioloop',
                        'runs': [{'round': 0, 'error': 'it broke | badly'}]},
                       {'id': 'uvloop', 'label': 'uvloop', 'loop': 'uvloop',
                        'runs': _runs([10])}]}
    return {
        'meta': {'date': '2026-01-02 03:04 UTC', 'command': 'python benchmarks/run.py -x',
                 'rounds': 3, 'machine': {'cpu': 'Test CPU', 'cores': 2, 'ram_gib': 4.0},
                 'kernel': '6.1.0-test', 'python': '3.12.0 (/x/python)',
                 'loops': {'evioloop': ['0.1.0', '/e/__init__.py'],
                           'uvloop': ['0.19.0', '/u/__init__.py'], 'rloop': None},
                 'loadavg_start': '1.00, 2.00, 3.00', 'loadavg_end': '4.00, 5.00, 6.00'},
        'groups': [{'id': 'g1', 'title': 'Group One', 'note': 'A note.',
                    'workloads': [wl, failed]}],
        'skipped': [('net cell redis-p1', 'redis-benchmark is not installed')],
        'memory_notes': ['server RSS: 20.0 MiB before, peak 30.0 MiB'],
    }


def test_ratio_math_on_known_numbers():
    data = synthetic()
    rows = {r['id']: r['runs'] for r in data['groups'][0]['workloads'][0]['rows']}
    s = report.row_stats(rows['evioloop'], rows['uvloop'])
    assert (s['rate'], s['rate_min'], s['rate_max']) == (200, 100, 300)
    assert (s['ratio'], s['ratio_min'], s['ratio_max']) == (2, 2, 3)
    assert s['cpu_ratio'] == 0.5        # 4/8, 6/8, 2/8 -> median 0.5
    assert s['hwm_mib'] == 2.0
    st = report.row_stats(rows['asyncio'], rows['uvloop'])
    assert (st['n'], st['failed'], st['error']) == (3, 1, 'boom')
    assert (st['ratio'], st['ratio_min'], st['ratio_max']) == (0.5, 0.5, 0.5)
    assert report.paired_ratios(rows['asyncio'], rows['uvloop'], 'rate') == [0.5, 0.5]
    assert report.loop_summary(data['groups'][0], 'evioloop') == (2, 1)


def _no_matplotlib(monkeypatch):
    real = builtins.__import__

    def fake(name, *args, **kwargs):
        if name == 'matplotlib' or name.startswith('matplotlib.'):
            raise ImportError('No module named matplotlib (test)')
        return real(name, *args, **kwargs)
    monkeypatch.setattr(builtins, '__import__', fake)
    for mod in [m for m in sys.modules if m == 'matplotlib' or m.startswith('matplotlib.')]:
        monkeypatch.delitem(sys.modules, mod)


def test_report_has_every_section_and_skips_plots_without_matplotlib(tmp_path, monkeypatch):
    _no_matplotlib(monkeypatch)
    out = report.write_report(synthetic(), str(tmp_path))
    assert out['plots'] == [] and 'matplotlib is not installed' in out['plot_note']
    assert sorted(os.listdir(tmp_path)) == ['data.json', 'report.md']      # no PNG
    md = (tmp_path / 'report.md').read_text()
    for needed in ('# Benchmark report', '**Date (UTC):** 2026-01-02 03:04 UTC',
                   '`python benchmarks/run.py -x`', '**Rounds:** 3', 'Test CPU, 2 cores, 4.0 GiB',
                   '**Kernel:** 6.1.0-test', '**Python:** 3.12.0 (/x/python)',
                   '1.00, 2.00, 3.00', '4.00, 5.00, 6.00', 'shared',
                   '| evioloop | 0.1.0 | `/e/__init__.py` |', '| rloop | not installed | - |',
                   '## Summary', '## Skipped', '- net cell redis-p1: redis-benchmark is not '
                   'installed', '- the plots: matplotlib is not installed', '## Group One',
                   'A note.', '*Plot skipped: matplotlib is not installed',
                   '- `w1`: the client used 12% of a core.', '## How to read this'):
        assert needed in md, needed
    lines = md.splitlines()
    evio = next(x for x in lines if x.startswith('| Workload one | evioloop |'))
    assert '| 200 | ops/s | [100-300] | 2.00 [2.00-3.00] | 4.00 | 0.50 | 2.0 |' in evio
    stock = next(x for x in lines if x.startswith('|  | stock (1 failed) |'))
    assert '0.50 [0.50-0.50]' in stock
    # a failed row says so, and its error cannot break the table (no bare '|')
    broke = next(x for x in lines if '| Workload two | evioloop |' in x)
    assert 'failed: it broke / badly' in broke
    assert '| evioloop / uvloop | asyncio / uvloop |' in md
    assert '| Group One | 2.00 (1 rows) | 0.50 (1 rows) |' in md
    # every run of the synthetic rows peaked at 2048 KiB; the failed row has none
    assert '## Peak memory of each server' in md
    assert '| Group One | 2.0 (max 2.0) | 2.0 (max 2.0) | 2.0 (max 2.0) |' in md
    assert '    server RSS: 20.0 MiB before, peak 30.0 MiB' in md


def test_report_writes_one_png_per_group_with_matplotlib(tmp_path):
    if importlib.util.find_spec('matplotlib') is None:
        pytest.skip('matplotlib is not installed (the bench extra has it)')
    # In a child: matplotlib keeps its font files open for the life of the process.
    with open(tmp_path / 'data.json', 'w') as f:
        json.dump(synthetic(), f)
    code = ('import json, sys; sys.path.insert(0, sys.argv[1]); import report; '
            'out = report.write_report(json.load(open(sys.argv[2])), sys.argv[3]); '
            'print(json.dumps(out))')
    r = subprocess.run([sys.executable, '-c', code, BENCH, str(tmp_path / 'data.json'),
                        str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr[-2000:]
    out = json.loads(r.stdout)
    assert out['plots'] == [str(tmp_path / 'g1.png')]
    with open(out['plots'][0], 'rb') as f:
        assert f.read(8) == b'\x89PNG\r\n\x1a\n'
    assert '![Group One: rate ratio to uvloop](g1.png)' in (tmp_path / 'report.md').read_text()


def test_quick_spawn_run_end_to_end(tmp_path):
    """run.py --quick --only spawn: the report shows the ratios of the run's own JSON."""
    rdir, jdir = tmp_path / 'report', tmp_path / 'json'
    # one round (the [min-max] math is tested above): the cheapest run that goes through
    # every step, from the workers to the report
    cmd = [sys.executable, os.path.join(BENCH, 'run.py'), '--quick', '--only', 'spawn',
           '--rounds', '1', '--no-plots', '--report-dir', str(rdir), '--json-dir', str(jdir)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert 'skipped:' in r.stdout and 'part micro: not asked for (--only)' in r.stdout
    with open(jdir / 'inproc.json') as f:
        runs = json.load(f)['results']['spawn']
    md = (rdir / 'report.md').read_text()
    assert '## UDP, pipes, subprocess spawn, TLS (in-process)' in md
    assert '- `spawn`: the children are `true`' in md
    uv = {r['round']: r['ops'] / r['seconds'] for r in runs['uvloop']}
    for loop, label in (('evioloop', 'evioloop'), ('asyncio', 'stock')):
        rs = [(r['ops'] / r['seconds']) / uv[r['round']] for r in runs[loop]]
        assert all(r['ops'] > 0 for r in runs[loop])
        row = next(x for x in md.splitlines() if re.match(rf'\| [^|]* \| {label} \|', x)
                   and '| spawns/s |' in x)
        want = f'{statistics.median(rs):.2f} [{min(rs):.2f}-{max(rs):.2f}]'
        assert want in row, (want, row)


def test_publish_moves_headings_down_and_links_the_plots_from_docs(tmp_path, monkeypatch):
    _no_matplotlib(monkeypatch)
    src, docs = tmp_path / 'src', tmp_path / 'docs'
    report.write_report(synthetic(), str(src))
    (src / 'g1.png').write_bytes(b'png')      # as if matplotlib had drawn it
    with open(src / 'report.md', 'a') as f:
        f.write('![Group One](g1.png)\n')
    dest = docs / 'data' / 'bench'
    dest.mkdir(parents=True)
    (dest / 'old.png').write_bytes(b'stale')   # a plot of an older report: removed
    written = report.publish(str(src), str(dest), str(docs))
    assert sorted(os.listdir(dest)) == ['data.json', 'g1.png', 'report.md']
    assert len(written) == 3
    md = (dest / 'report.md').read_text()
    assert md.startswith('## Benchmark report\n') and '\n### Group One\n' in md
    assert '![Group One](data/bench/g1.png)' in md and '](g1.png)' not in md
