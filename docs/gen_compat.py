#!/usr/bin/env python3
"""The Compatibility page's tables, from the conformance runner's JSON files.

    python docs/gen_compat.py [docs/data/conformance/*.json]   # prints the Markdown

Each file is what `tests/conformance/run.py --loop both --json FILE` writes for
one Python: {"python": "3.12.1", "runs": [{"module", "loop", "counts",
"seconds", "meta", "problems", "records"}, ...]}, one run per module and loop
(`evioloop`, or `asyncio` for the stock loop). The file is named after the
Python it covers (`3.12.json`). Nothing is made up here: a Python without a
file is said to have no data, a loop that was not run is shown as not run,
and a file that does not hold what its name says stops the build.

docs/hooks.py calls `render()` on every `mkdocs build`.
"""
import json
import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DATA = HERE / 'data' / 'conformance'

# the runner's loop names, in the order the tables show them
LOOPS = (('evioloop', 'evioloop'), ('asyncio', 'stock'))
COLUMNS = ('pass', 'fail', 'err', 'skip', 'xfail', 'xpass', 'other')
RUNNER_COLUMNS = ('tests',) + COLUMNS


class DataError(ValueError):
    """A conformance JSON file that does not hold what the page needs."""


def supported_pythons():
    """The Python versions pyproject.toml's classifiers name, e.g. ['3.10', ...]."""
    text = (ROOT / 'pyproject.toml').read_text(encoding='utf-8')
    found = re.findall(r'"Programming Language :: Python :: (3\.\d+)"', text)
    return sorted(set(found), key=lambda v: tuple(int(x) for x in v.split('.')))


def load(path):
    """One runner file, checked: (python version, {(module, loop): run})."""
    path = Path(path)
    try:
        doc = json.loads(path.read_text(encoding='utf-8'))
    except ValueError as exc:
        raise DataError(f'{path}: not JSON ({exc})') from None
    if not isinstance(doc, dict) or not isinstance(doc.get('python'), str) \
            or not isinstance(doc.get('runs'), list):
        raise DataError(f'{path}: expected {{"python": ..., "runs": [...]}} '
                        f'as tests/conformance/run.py --json writes')
    python = doc['python']
    if not (python == path.stem or python.startswith(path.stem + '.')):
        raise DataError(f'{path}: holds Python {python}, not {path.stem}')
    runs = {}
    for i, run in enumerate(doc['runs']):
        where = f'{path}: runs[{i}]'
        try:
            module, loop, counts = run['module'], run['loop'], run['counts']
        except (KeyError, TypeError):
            raise DataError(f'{where}: no module, loop or counts') from None
        if loop not in dict(LOOPS):
            raise DataError(f'{where}: unknown loop {loop!r}')
        missing = [c for c in RUNNER_COLUMNS if not isinstance(counts.get(c), int)]
        if missing:
            raise DataError(f'{where}: counts lack {missing}')
        if sum(counts[c] for c in COLUMNS) != counts['tests']:
            raise DataError(f'{where}: counts do not add up to tests: {counts}')
        if (module, loop) in runs:
            raise DataError(f'{where}: {module} on {loop} twice')
        runs[module, loop] = run
    if not runs:
        raise DataError(f'{path}: no runs')
    return python, runs


def _cells(run):
    if run is None:
        return ['not run'] + [''] * (len(COLUMNS) - 1)
    c = run['counts']
    cells = [str(c[k]) for k in COLUMNS]
    if run.get('problems'):
        cells[0] += ' (!)'
    return cells


def _table(rows, head):
    out = ['| ' + ' | '.join(head) + ' |', '|' + '|'.join(' --- ' for _ in head) + '|']
    out += ['| ' + ' | '.join(r) + ' |' for r in rows]
    return '\n'.join(out)


def _head(first):
    head = list(first)
    for _, label in LOOPS:
        head += [f'{label} {c}' for c in COLUMNS]
    return head


def _total(runs, loop):
    mine = [r for (m, lp), r in runs.items() if lp == loop]
    if not mine:
        return None
    counts = {c: sum(r['counts'][c] for r in mine) for c in RUNNER_COLUMNS}
    return {'counts': counts, 'problems': [p for r in mine for p in r.get('problems', [])]}


def _tests(runs, module):
    # the same tests are selected for every loop; say so when they differ
    seen = sorted({r['counts']['tests'] for (m, _), r in runs.items() if m == module})
    return ' / '.join(str(n) for n in seen)


def render(paths=None):
    """The Markdown for every file given (default: docs/data/conformance/*.json)."""
    if paths is None:
        paths = sorted(DATA.glob('*.json'))
    data = {}
    for p in paths:
        python, runs = load(p)
        minor = '.'.join(python.split('.')[:2])
        if minor in data:
            raise DataError(f'{p}: a second file for Python {minor}')
        data[minor] = (python, runs, Path(p))
    order = sorted(data, key=lambda v: tuple(int(x) for x in v.split('.')))
    supported = supported_pythons()
    without = [v for v in supported if v not in data]

    parts = []
    if data:
        covered = ', '.join(f'{data[v][0]}' for v in order)
        parts.append(f'The committed data covers **Python {covered}**'
                     + (f'; there is none for {", ".join(without)}: those rows are not '
                        'shown, not guessed.' if without else '.'))
    else:
        parts.append('**No conformance data is committed**: there is nothing to show.')
    parts.append('uvloop is not a column: the conformance runner tests evioloop '
                 '(`--loop evioloop`) and the stock loop (`--loop asyncio`) only.')

    if data:
        rows = []
        for v in order:
            python, runs, _ = data[v]
            totals = {loop: _total(runs, loop) for loop, _ in LOOPS}
            tests = sorted({t['counts']['tests'] for t in totals.values() if t})
            row = [python, ' / '.join(map(str, tests))]
            for loop, _ in LOOPS:
                row += _cells(totals[loop])
            rows.append(row)
        parts.append('## Summary\n\n' + _table(rows, _head(['Python', 'tests'])))

    for v in order:
        python, runs, path = data[v]
        modules = []
        for module, _ in runs:
            if module not in modules:
                modules.append(module)
        rows = []
        for module in modules:
            row = [f'`{module}`', _tests(runs, module)]
            for loop, _ in LOOPS:
                row += _cells(runs.get((module, loop)))
            rows.append(row)
        section = [f'## Python {python}',
                   f'From `{path.relative_to(ROOT).as_posix()}`'
                   if path.is_relative_to(ROOT) else f'From `{path.name}`',
                   _table(rows, _head(['module', 'tests']))]
        section += _details(runs)
        parts.append('\n\n'.join(section))
    return '\n\n'.join(parts) + '\n'


def _details(runs):
    """The tests that did not simply pass: failures, errors, expected failures."""
    out = []
    for loop, label in LOOPS:
        items = []
        for (module, lp), run in runs.items():
            if lp != loop:
                continue
            for rec in run.get('records', []):
                final = rec.get('final')
                if final in ('fail', 'err', 'xfail', 'xpass'):
                    why = rec.get('expected') or (rec.get('detail') or '').strip()
                    why = why.splitlines()[-1].strip() if why else ''
                    items.append(f'- `{rec.get("id")}`: {final}'
                                 + (f' ({_escape(why[:160])})' if why else ''))
            for p in run.get('problems', []):
                items.append(f'- `{module}`: runner problem: '
                             f'{_escape(p.splitlines()[0][:160])}')
        body = '\n'.join(items) if items else 'None: every test passed, was skipped by ' \
            'the test itself, or ran on no loop of this kind (`other`).'
        out.append(f'**{label}: failures, errors and expected failures.** ' + (
            '\n\n' + body if items else body))
    return out


def _escape(text):
    return text.replace('|', '\\|').replace('<', '&lt;').replace('`', "'")


def main(argv=None):
    args = sys.argv[1:] if argv is None else argv
    try:
        sys.stdout.write(render([Path(a) for a in args] if args else None))
    except DataError as exc:
        print(f'gen_compat: {exc}', file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
