"""The benchmark report: one Markdown file and one PNG plot per workload group.

    write_report(data, report_dir) -> {'report': path, 'plots': [paths], 'plot_note': str}
    python benchmarks/report.py --publish [DIR]     # DIR (default benchmarks/results/latest)
                                                    # -> docs/data/bench/, for the docs

write_report also saves `data` as DIR/data.json, so a report can be written again
(`python benchmarks/report.py --from DIR/data.json --to OTHER_DIR`).

`data` is what benchmarks/run.py collects (collect.py turns each part's results into
it), and what tests/test_bench_report.py builds by hand:

    {'meta': {'date': ..., 'command': ..., 'rounds': ..., 'machine': {...}, 'kernel': ...,
              'python': ..., 'loops': {name: [version, path] or None},
              'loadavg_start': ..., 'loadavg_end': ...},
     'groups': [{'id': 'micro', 'title': ..., 'note': ...,
                 'workloads': [{'id': ..., 'title': ..., 'unit': 'ops/s', 'base': 'uvloop',
                                'loadgen': one sentence or None,
                                'rows': [{'id': 'evioloop', 'label': ..., 'loop': 'evioloop',
                                          'runs': [{'round': 0, 'rate': ..., 'cpu_us': ...,
                                                    'hwm_kib': ...} or {'round': 0,
                                                    'error': ...}]}]}]}],
     'skipped': [[what, why], ...]}

Every number in the tables is computed here from the runs: the median rate over the
rounds and its [min-max]; the ratio to the workload's base row (uvloop), paired: the
ratio of the two runs of the same round, median and [min-max] over the rounds; the
median CPU time per operation and its paired ratio; the median peak RSS (VmHWM).
The plots use matplotlib's Agg backend; without matplotlib the report says they were
skipped and is written all the same.
"""
import argparse
import json
import math
import os
import re
import shutil
import statistics
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:        # loaded by path (benchmarks/run.py, the tests)
    sys.path.insert(0, HERE)

import rounds  # noqa: E402
REPO = os.path.dirname(HERE)
DEFAULT_DIR = os.path.join(HERE, 'results', 'latest')
DOCS = os.path.join(REPO, 'docs')
DOCS_DIR = os.path.join(DOCS, 'data', 'bench')

LOOP_COLORS = {'evioloop': '#2a7ab9', 'uvloop': '#8c8c8c', 'asyncio': '#e08a2c',
               'rloop': '#6a3d9a', 'C': '#3b9a4a'}


def _ok(runs):
    return [r for r in runs if 'error' not in r and r.get('rate') is not None]


_median = rounds.median


def paired_ratios(runs, base_runs, key):
    """[runs[key] / base[key]] for each round where both ran, in round order."""
    return rounds.paired_ratios(_ok(runs), _ok(base_runs), key)


def row_stats(runs, base_runs=None):
    """The numbers of one table row (None where there is nothing to compute)."""
    ok = _ok(runs)
    rates = [r['rate'] for r in ok]
    s = {'n': len(ok), 'failed': len(runs) - len(ok),
         'error': next((r['error'] for r in runs if 'error' in r), None),
         'rate': _median(rates), 'rate_min': min(rates) if rates else None,
         'rate_max': max(rates) if rates else None,
         'cpu_us': _median([r.get('cpu_us') for r in ok]),
         'hwm_mib': None, 'ratio': None, 'ratio_min': None, 'ratio_max': None,
         'cpu_ratio': None}
    hwm = _median([r.get('hwm_kib') for r in ok])
    if hwm is not None:
        s['hwm_mib'] = hwm / 1024
    if base_runs is not None:
        rs = rounds.spread(paired_ratios(runs, base_runs, 'rate'))
        if rs:
            s.update(ratio=rs[0], ratio_min=rs[1], ratio_max=rs[2])
        cs = paired_ratios(runs, base_runs, 'cpu_us')
        if cs:
            s['cpu_ratio'] = statistics.median(cs)
    return s


def _base_runs(workload):
    for row in workload['rows']:
        if row['id'] == workload.get('base', 'uvloop'):
            return row['runs']
    return None


def _num(x, spec='.2f'):
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return '-'
    return format(x, spec)


def _rate(x):
    if x is None:
        return '-'
    if x >= 1e6:
        return f'{x / 1e6:.2f}M'
    if x >= 1e4:
        return f'{x / 1e3:.1f}k'
    return f'{x:,.1f}' if x < 100 else f'{x:,.0f}'


def loop_summary(group, loop):
    """Median over the group's workloads of `loop`'s paired rate ratio to the base row."""
    rs = []
    for wl in group['workloads']:
        base = _base_runs(wl)
        for row in wl['rows']:
            if row.get('loop') == loop and row['id'] != wl.get('base', 'uvloop') and base:
                r = row_stats(row['runs'], base)['ratio']
                if r is not None:
                    rs.append(r)
    return (statistics.median(rs), len(rs)) if rs else (None, 0)


def _memory(data):
    """Per group and loop: the median and the largest peak RSS of its server rows."""
    order = ['evioloop', 'uvloop', 'asyncio', 'rloop', 'C']
    per = {}
    for g in data['groups']:
        for wl in g['workloads']:
            for row in wl['rows']:
                h = row_stats(row['runs'])['hwm_mib']
                if h is not None:
                    per.setdefault(g['title'], {}).setdefault(row.get('loop'), []).append(h)
    notes = data.get('memory_notes') or []
    if not per and not notes:
        return []
    loops = [x for x in order if any(x in v for v in per.values())]
    name = {'asyncio': 'stock', 'C': 'reference servers'}
    lines = ['', '## Peak memory of each server']
    if per:
        lines += ['', 'VmHWM (the RSS high-water mark) of the server process of every network '
                  'run, or of the one process of the in-process runs, in MiB: the median over '
                  'the group\'s rows (each row: the median over its runs), and the largest '
                  'row.', '', '| group | ' + ' | '.join(name.get(x, x) for x in loops) + ' |',
                  '| --- |' + ' ---: |' * len(loops)]
    for title, by_loop in per.items():
        cells = [f'{statistics.median(by_loop[x]):.1f} (max {max(by_loop[x]):.1f})'
                 if x in by_loop else '-' for x in loops]
        lines.append(f'| {title} | ' + ' | '.join(cells) + ' |')
    if notes:
        lines += ['', 'An Events server on evioloop whose peers send and never read '
                  '(`benchmarks/net/events_memory.py`: each input gets a large reply, so '
                  'without the output bound its memory would grow without end):', '']
        lines += [f'    {x}' for x in notes]
    return lines


def _header(meta):
    m = meta.get('machine', {})
    lines = ['# Benchmark report', '',
             f'- **Date (UTC):** {meta.get("date", "?")}',
             f'- **Command:** `{meta.get("command", "?")}`',
             f'- **Rounds:** {meta.get("rounds", "?")}, interleaved (every loop once per '
             'round, the order rotated)',
             f'- **Machine:** {m.get("cpu", "?")}, {m.get("cores", "?")} cores, '
             f'{_num(m.get("ram_gib"), ".1f")} GiB RAM',
             f'- **Kernel:** {meta.get("kernel", "?")}',
             f'- **Python:** {meta.get("python", "?")}',
             f'- **Load average** (1, 5, 15 min) at the start: {meta.get("loadavg_start", "?")};'
             f' at the end: {meta.get("loadavg_end", "?")}. '
             + meta.get('shared_note', 'The machine may be shared with other work: compare '
                        'ratios within this report, not numbers across reports.'),
             '', '| loop | version | path |', '| --- | --- | --- |']
    for name, info in meta.get('loops', {}).items():
        if info:
            lines.append(f'| {name} | {info[0]} | `{info[1]}` |')
        else:
            lines.append(f'| {name} | not installed | - |')
    return lines


def _summary(data, loops):
    lines = ['', '## Summary', '',
             'Median over each group\'s workloads of the paired rate ratio to uvloop '
             '(higher is faster; each workload\'s ratio is itself the median over the '
             'rounds).', '',
             '| group | ' + ' | '.join(f'{x} / uvloop' for x in loops) + ' |',
             '| --- |' + ' --- |' * len(loops)]
    for g in data['groups']:
        cells = []
        for x in loops:
            r, n = loop_summary(g, x)
            cells.append(f'{r:.2f} ({n} rows)' if r is not None else '-')
        lines.append(f'| {g["title"]} | ' + ' | '.join(cells) + ' |')
    return lines


def _group(g, plot_name, plot_note):
    lines = ['', f'## {g["title"]}', '']
    if g.get('note'):
        lines += [g['note'], '']
    if plot_name:
        lines += [f'![{g["title"]}: rate ratio to uvloop]({plot_name})', '']
    else:
        lines += [f'*Plot skipped: {plot_note}*', '']
    lines += ['| workload | row | rate | unit | [min-max] | vs uvloop [min-max] | CPU us/op '
              '| CPU vs uvloop | peak RSS MiB |',
              '| --- | --- | ---: | --- | --- | --- | ---: | ---: | ---: |']
    for wl in g['workloads']:
        base = _base_runs(wl)
        first = True
        for row in wl['rows']:
            s = row_stats(row['runs'], base if row['id'] != wl.get('base', 'uvloop') else None)
            name = wl['title'] if first else ''
            first = False
            if s['n'] == 0:
                err = ' '.join(str(s['error']).split())[:120].replace('|', '/')
                lines.append(f'| {name} | {row["label"]} | failed: {err} |||||||')
                continue
            ratio = (f'{s["ratio"]:.2f} [{s["ratio_min"]:.2f}-{s["ratio_max"]:.2f}]'
                     if s['ratio'] is not None else '-')
            fail = f' ({s["failed"]} failed)' if s['failed'] else ''
            lines.append(f'| {name} | {row["label"]}{fail} | {_rate(s["rate"])} | '
                         f'{wl.get("unit", "ops/s")} | '
                         f'[{_rate(s["rate_min"])}-{_rate(s["rate_max"])}] | {ratio} | '
                         f'{_num(s["cpu_us"])} | {_num(s["cpu_ratio"])} | '
                         f'{_num(s["hwm_mib"], ".1f")} |')
    said = [wl for wl in g['workloads'] if wl.get('loadgen')]
    if said:
        lines += ['', '**Is the load generator the bottleneck?** One sentence per workload:', '']
        lines += [f'- `{wl["id"]}`: {wl["loadgen"]}' for wl in said]
    return lines


def _plot(g, path):
    """One horizontal bar per non-base row: its paired rate ratio to uvloop, [min-max]."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.patches
    import matplotlib.pyplot as plt
    import matplotlib.ticker
    labels, vals, lo, hi, colors = [], [], [], [], []
    for wl in g['workloads']:
        base = _base_runs(wl)
        if not base:
            continue
        for row in wl['rows']:
            if row['id'] == wl.get('base', 'uvloop'):
                continue
            s = row_stats(row['runs'], base)
            if s['ratio'] is None:
                continue
            labels.append(f'{wl["id"]} · {row["label"]}')
            vals.append(s['ratio'])
            lo.append(s['ratio'] - s['ratio_min'])
            hi.append(s['ratio_max'] - s['ratio'])
            colors.append(LOOP_COLORS.get(row.get('loop'), '#999999'))
    if not vals:
        return False
    fig, ax = plt.subplots(figsize=(8, 1.2 + 0.28 * len(vals)))
    y = list(range(len(vals)))[::-1]
    # log scale: 2x faster and 2x slower are the same distance from 1
    ax.set_xscale('log', base=2)
    # each bar runs from 1 to its ratio: right of the line faster than uvloop, left slower
    ax.barh(y, [v - 1 for v in vals], left=1, xerr=[lo, hi], color=colors, capsize=2,
            error_kw={'elinewidth': 0.8})
    ax.axvline(1.0, color='black', linewidth=0.8)
    ax.set_yticks(y)
    ax.set_yticklabels(labels, fontsize=7)
    lo_x = min(min(v - e for v, e in zip(vals, lo, strict=True)), 0.5)
    hi_x = max(max(v + e for v, e in zip(vals, hi, strict=True)), 2)
    ax.set_xlim(lo_x / 1.3, hi_x * 1.3)
    ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f'{v:g}'))
    ax.set_xlabel('rate / the workload\'s uvloop row, paired per round: median, '
                  '[min-max] as error bars (log scale; > 1: faster)', fontsize=8)
    ax.set_title(g['title'], fontsize=9)
    seen = dict.fromkeys(c for c in colors)
    names = {v: k for k, v in LOOP_COLORS.items()}
    names[LOOP_COLORS['C']] = 'reference server'
    names[LOOP_COLORS['asyncio']] = 'stock'
    handles = [matplotlib.patches.Patch(color=c, label=names.get(c, 'other')) for c in seen]
    ax.legend(handles=handles, fontsize=7, loc='lower right')
    fig.savefig(path, dpi=90, bbox_inches='tight')
    plt.close(fig)
    return True


def write_report(data, report_dir, plots=True):
    os.makedirs(report_dir, exist_ok=True)
    plot_note = 'not asked for (--no-plots)'
    have_mpl = False
    if plots:
        try:
            import matplotlib  # noqa: F401
            have_mpl = True
        except ImportError:
            plot_note = ('matplotlib is not installed (`pip install matplotlib`, or the '
                         '`bench` extra)')
    loops = [x for x in ('evioloop', 'asyncio', 'rloop')
             if any(row.get('loop') == x for g in data['groups'] for wl in g['workloads']
                    for row in wl['rows'])]
    lines = _header(data.get('meta', {})) + _summary(data, loops) + _memory(data)
    lines += ['', '## Skipped', '']
    skipped = data.get('skipped') or []
    lines += [f'- {what}: {why}' for what, why in skipped] or ['Nothing was skipped.']
    if not have_mpl:
        lines.append(f'- the plots: {plot_note}')
    written = []
    for g in data['groups']:
        name = None
        if have_mpl:
            fname = f'{g["id"]}.png'
            if _plot(g, os.path.join(report_dir, fname)):
                name = fname
                written.append(os.path.join(report_dir, fname))
        lines += _group(g, name, plot_note if not have_mpl else 'no ratio to plot')
    lines += ['', '## How to read this', '',
              '- **rate** is the median over the rounds; **[min-max]** its range over the '
              'rounds.',
              '- **vs uvloop** is paired: the ratio between the two runs of the same round '
              '(seconds apart, under the same load), median and [min-max] over the rounds. '
              'Above 1: faster than uvloop. Trust a ratio when its whole range is on one '
              'side of 1.',
              '- **CPU us/op** is the CPU time (user + sys) per operation of the server '
              'process (network workloads) or of the one process (micro and in-process '
              'workloads); **CPU vs uvloop** its paired ratio (below 1: cheaper).',
              '- **peak RSS** is the process\'s VmHWM (/proc/PID/status) at the end of the '
              'run: the server\'s for network workloads, the one process\'s otherwise.']
    path = os.path.join(report_dir, 'report.md')
    with open(path, 'w') as f:
        f.write('\n'.join(lines) + '\n')
    with open(os.path.join(report_dir, 'data.json'), 'w') as f:
        json.dump(data, f, indent=1)
    return {'report': path, 'plots': written, 'plot_note': None if have_mpl else plot_note}


def publish(src, dest=DOCS_DIR, docs=DOCS):
    """Copy a report into the docs: report.md with its headings one level down (the
    page docs/benchmarks.md includes it under its own title) and its image links made
    relative to docs/, the PNGs and data.json.  Returns the files written."""
    os.makedirs(dest, exist_ok=True)
    for old in os.listdir(dest):            # plots of a previous report must not linger
        if old.endswith('.png'):
            os.remove(os.path.join(dest, old))
    prefix = os.path.relpath(dest, docs).replace(os.sep, '/') + '/'
    with open(os.path.join(src, 'report.md')) as f:
        md = f.read()
    md = re.sub(r'^(#+) ', lambda m: '#' + m.group(1) + ' ', md, flags=re.M)
    md = re.sub(r'\]\(([\w.-]+\.png)\)', lambda m: f']({prefix}{m.group(1)})', md)
    out = [os.path.join(dest, 'report.md')]
    with open(out[0], 'w') as f:
        f.write(md)
    for name in sorted(os.listdir(src)):
        if name.endswith('.png') or name == 'data.json':
            shutil.copyfile(os.path.join(src, name), os.path.join(dest, name))
            out.append(os.path.join(dest, name))
    return out


def main(argv=None):
    p = argparse.ArgumentParser(prog='report.py', description=__doc__.split('\n')[0])
    p.add_argument('--publish', nargs='?', const=DEFAULT_DIR, metavar='DIR',
                   help='copy the report in DIR (default benchmarks/results/latest) to '
                        'docs/data/bench/')
    p.add_argument('--from', dest='data', metavar='JSON',
                   help='write the report again from a data.json')
    p.add_argument('--to', metavar='DIR', help='with --from: where (default: beside it)')
    a = p.parse_args(argv)
    if a.publish:
        for path in publish(a.publish):
            print(path)
        return 0
    if a.data:
        with open(a.data) as f:
            data = json.load(f)
        out = write_report(data, a.to or os.path.dirname(os.path.abspath(a.data)))
        print(out['report'])
        return 0
    p.print_help()
    return 2


if __name__ == '__main__':
    sys.exit(main())
