#!/usr/bin/env python3
"""The Compatibility page's tables, from the conformance runner's JSON files.

    python docs/gen_compat.py [docs/data/conformance/*.json]   # prints the Markdown

Each file is what `tests/conformance/run.py --loop all --json FILE` writes for
one Python: {"python": "3.12.1", "loops": [...], "complete": true, "runs":
[{"module", "loop", "counts", "seconds", "meta", "problems", "records"}, ...]},
one run per module and loop (`evioloop`, `asyncio` for the stock loop,
`uvloop`). The file is named after the Python it covers (`3.12.json`).
Nothing is made up here: a Python without a file is said to have no data, a
loop that was not run is shown as not run, and a file that does not hold what
its name says, or that a run left unfinished (`"complete": false`), stops the
build.

docs/hooks.py calls `render()` on every `mkdocs build`.
"""
import json
import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DATA = HERE / 'data' / 'conformance'

# the runner's loop names, in the order the tables show them, and their labels
LOOPS = (('asyncio', 'stock'), ('uvloop', 'uvloop'), ('evioloop', 'evioloop'))
COLUMNS = ('pass', 'fail', 'err', 'skip', 'xfail', 'xpass', 'other')
RUNNER_COLUMNS = ('tests',) + COLUMNS


class DataError(ValueError):
    """A conformance JSON file that does not hold what the page needs."""


def supported_pythons():
    """The Python versions pyproject.toml's classifiers name, e.g. ['3.10', ...]."""
    text = (ROOT / 'pyproject.toml').read_text(encoding='utf-8')
    found = re.findall(r'"Programming Language :: Python :: (3\.\d+)"', text)
    return sorted(set(found), key=_vkey)


def _vkey(version):
    return tuple(int(x) for x in version.split('.'))


def load(path):
    """One runner file, checked: (python version, {(module, loop): run}).

    Raises DataError when the file is not the runner's JSON, names another
    Python than its file name, is unfinished, or has counts that do not add up.
    """
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
    if doc.get('complete') is False:
        raise DataError(f'{path}: an unfinished run ("complete": false)')
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
        return ['not run'] + [''] * len(COLUMNS)
    c = run['counts']
    cells = [str(c[k]) for k in RUNNER_COLUMNS]
    if run.get('problems'):
        cells[1] += ' (!)'
    return cells


def _table(rows, head):
    out = ['| ' + ' | '.join(head) + ' |', '|' + '|'.join(' --- ' for _ in head) + '|']
    out += ['| ' + ' | '.join(r) + ' |' for r in rows]
    return '\n'.join(out)


def _total(runs, loop):
    mine = [r for (m, lp), r in runs.items() if lp == loop]
    if not mine:
        return None
    counts = {c: sum(r['counts'][c] for r in mine) for c in RUNNER_COLUMNS}
    return {'counts': counts, 'problems': [p for r in mine for p in r.get('problems', [])]}


def _modules(runs):
    modules = []
    for module, _ in runs:
        if module not in modules:
            modules.append(module)
    return modules


def _differs(runs, module):
    """Whether the loops that ran module got different counts (or one did not run it)."""
    got = [runs.get((module, loop)) for loop, _ in LOOPS]
    seen = {tuple(sorted(r['counts'].items())) if r else None for r in got}
    return len(seen) > 1 or any(r and r.get('problems') for r in got)


def render(paths=None):
    """The Markdown for every file given (default: docs/data/conformance/*.json).

    Raises DataError when a file is not usable (see load()) or two files
    cover the same Python.
    """
    if paths is None:
        paths = sorted(DATA.glob('*.json'))
    data = {}
    for p in paths:
        python, runs = load(p)
        minor = '.'.join(python.split('.')[:2])
        if minor in data:
            raise DataError(f'{p}: a second file for Python {minor}')
        data[minor] = (python, runs, Path(p))
    order = sorted(data, key=_vkey)
    without = [v for v in supported_pythons() if v not in data]

    parts = []
    if data:
        covered = ', '.join(f'{data[v][0]}' for v in order)
        parts.append(f'The committed data covers **Python {covered}**'
                     + (f'; there is none for {", ".join(without)}: those rows are not '
                        'shown, not guessed.' if without else '.'))
    else:
        parts.append('**No conformance data is committed**: there is nothing to show.')
        return '\n\n'.join(parts) + '\n'

    head = ['loop'] + list(RUNNER_COLUMNS)
    rows = []
    for v in order:
        python, runs, _ = data[v]
        for loop, label in LOOPS:
            rows.append([f'{python}', label] + _cells(_total(runs, loop)))
    parts.append('## Summary\n\nEvery module, summed, per Python and loop.\n\n'
                 + _table(rows, ['Python'] + head))

    for v in order:
        python, runs, path = data[v]
        section = [f'## Python {python}',
                   f'From `{path.relative_to(ROOT).as_posix()}`.'
                   if path.is_relative_to(ROOT) else f'From `{path.name}`.']
        modules = _modules(runs)
        same = [m for m in modules if not _differs(runs, m)]
        differ = [m for m in modules if _differs(runs, m)]
        if same:
            section.append('The same counts on every loop: '
                           + ', '.join(f'`{m}`' for m in same) + '.')
        if differ:
            rows = []
            for module in differ:
                for loop, label in LOOPS:
                    rows.append([f'`{module}`', label] + _cells(runs.get((module, loop))))
            section.append('The modules where the loops differ:\n\n'
                           + _table(rows, ['module'] + head))
        section += _details(runs)
        parts.append('\n\n'.join(section))
    return '\n\n'.join(parts) + '\n'


def _details(runs):
    """Per loop, the tests that did not simply pass, in a collapsed block."""
    out = []
    for loop, label in LOOPS:
        if not any(lp == loop for _, lp in runs):
            continue
        items = []
        reasons = {}
        for (module, lp), run in runs.items():
            if lp != loop:
                continue
            for rec in run.get('records', []):
                final = rec.get('final')
                if final in ('fail', 'err', 'xfail', 'xpass'):
                    why = rec.get('expected') or (rec.get('detail') or '').strip()
                    why = why.splitlines()[-1].strip() if why else ''
                    if final in ('fail', 'err'):
                        where = _raised_in(rec.get('detail') or '')
                        key = f'{why[:120]} (in {where[:60]})' if where else why[:120]
                        reasons[key] = reasons.get(key, 0) + 1
                    items.append(f'- `{rec.get("id")}`: {final}'
                                 + (f' ({_escape(why[:160])})' if why else ''))
            for p in run.get('problems', []):
                lines = [ln.strip() for ln in p.splitlines() if ln.strip()] or ['']
                said = lines[0] if len(lines) == 1 else f'{lines[0]} ... {lines[-1]}'
                items.append(f'- `{module}`: runner problem: {_escape(said[:200])}')
        if not items:
            out.append(f'**{label}**: no failures, errors or expected failures: every '
                       'test passed, was skipped by the test itself, or ran on no loop '
                       'of this kind (`other`).')
            continue
        body = '\n'.join('    ' + item for item in items)
        out.append(f'??? note "{label}: {len(items)} failures, errors and expected '
                   f'failures"\n\n{body}')
        common = sorted(reasons.items(), key=lambda kv: (-kv[1], kv[0]))[:3]
        if common and sum(reasons.values()) >= 10:
            out.append(f'The most common causes of {label}\'s failures and errors '
                       '(the last line of the traceback, and the function it ends in): '
                       + '; '.join(f'{n} x "{_escape(why) or "(none)"}"'
                                   for why, n in common) + '.')
    return out


def _raised_in(detail):
    """The function of a traceback's last frame ('set_child_watcher'), or ''."""
    frames = re.findall(r'^\s*File "[^"]*", line \d+, in (\S+)', detail, re.M)
    return frames[-1] if frames else ''


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
