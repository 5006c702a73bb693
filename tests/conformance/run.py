#!/usr/bin/env python3
"""Run CPython's own test.test_asyncio suites against evioloop (the stock loop, uvloop).

    python tests/conformance/run.py [--loop evioloop|asyncio|uvloop|both|all]
                                    [--modules M ...] [--json PATH] [-v]

Each module runs in its own subprocess (a "worker": this file with --worker),
with unittest's own machinery, from a scratch directory. The worker wires the
loop under test into the module (see adapters.py), records for every test which
kinds of loop it created (evioloop, the stock selector loop, uvloop, or a mock
loop such as test_utils.TestLoop), and streams one JSON record per test. The parent
applies expected_failures.py and prints a table per module:

  tests  every test of the module that was selected (see adapters.py)
  pass   passed, and created the loop under test
  other  passed without ever creating the loop under test (mock-loop tests,
         tests of the stock loop's classes, tests that need no loop): not
         counted as passes of the loop under test
  fail, err   unexpected failures / errors
  skip   skipped by the test itself
  xfail  expected failures (expected_failures.py), including hangs not run
  xpass  listed in expected_failures.py but passed (reported, not an error)

A test that runs longer than --test-timeout seconds makes the worker dump its
traceback and exit (faulthandler); the parent records it as an error and
restarts the module without it and the tests already done.

The compiled, installed evioloop is used, never the source tree: the repository
root is removed from sys.path and the worker checks where evioloop came from.
uvloop (`--loop uvloop`, in `all`) is wired in like evioloop, through its
policy and factory, plus one shim of the tests' own harness (UVLOOP_SHIM). It
has no entries in expected_failures.py: the stock tests it fails (many test
the stock loop's internals) count as fail/err, as measured.

--json PATH is rewritten after every module with `"complete": false`, and a
last time with `"complete": true`: a crash keeps the modules already run.

Exit status: 0 when nothing failed unexpectedly, 1 otherwise.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
ID_PREFIX = 'test.test_asyncio.'
VERSION = '%d.%d' % sys.version_info[:2]

# Modules run by default, in this order; those missing from a Python's
# test.test_asyncio are left out for it.
MODULES = [
    'test_runners', 'test_taskgroups', 'test_timeouts', 'test_waitfor',
    'test_locks', 'test_queues', 'test_pep492', 'test_context', 'test_futures',
    'test_futures2', 'test_tasks', 'test_eager_task_factory', 'test_staggered',
    'test_threads', 'test_sock_lowlevel', 'test_events', 'test_streams',
    'test_server', 'test_sendfile', 'test_buffered_proto', 'test_unix_events',
    'test_subprocess', 'test_ssl', 'test_sslproto',
]

# Selectable with --modules but not run by default: every test in them uses
# test_utils.TestLoop or mocks, so nothing would run on the loop under test.
_MOCK_ONLY = {
    # module: (Python versions or None for all, why)
    'test_futures': (None, 'asyncio.Future tests, all on test_utils.TestLoop/mocks'),
    'test_queues': (('3.10',), "3.10's queue tests all run on test_utils.TestLoop"),
}
MOCK_ONLY = {m: why for m, (versions, why) in _MOCK_ONLY.items()
             if versions is None or VERSION in versions}

# loop name -> kind under test
LOOPS = {'evioloop': 'evio', 'asyncio': 'stock', 'uvloop': 'uv'}
COLUMNS = ('tests', 'pass', 'other', 'fail', 'err', 'skip', 'xfail', 'xpass')


def _guard_sys_path():
    """Never import evioloop from the source tree (it may hold stale builds)."""
    def is_repo(p):
        return os.path.realpath(p or os.getcwd()) == os.path.realpath(REPO)
    sys.path[:] = [p for p in sys.path if not is_repo(p)]


def available_modules():
    """MODULES that exist in this Python's test.test_asyncio."""
    import importlib.util
    try:
        spec = importlib.util.find_spec('test.test_asyncio')
    except ImportError:
        return []
    if spec is None or not spec.submodule_search_locations:
        return []
    where = list(spec.submodule_search_locations)[0]
    return [m for m in MODULES + sorted(set(MOCK_ONLY) - set(MODULES))
            if os.path.exists(os.path.join(where, m + '.py'))]


# ------------------------------------------------------------------ worker

UVLOOP_SHIM = ("test_utils.TestCase.close_loop, the tearDown of most modules, reads "
               "the stock attribute loop._default_executor; for a uvloop loop it does "
               "what the stock one does through public methods instead "
               "(shutdown_default_executor(), close())")


def _uvloop_close_loop(uvloop):
    """UVLOOP_SHIM: without it nearly every test that passed on uvloop is an error
    in its tearDown (AttributeError: no _default_executor), which says nothing
    about the loop."""
    from test.test_asyncio import utils as test_utils
    stock_close_loop = test_utils.TestCase.close_loop

    def close_loop(loop):
        if not isinstance(loop, uvloop.Loop):
            return stock_close_loop(loop)
        if not loop.is_closed():
            loop.run_until_complete(loop.shutdown_default_executor())
        loop.close()
    test_utils.TestCase.close_loop = staticmethod(close_loop)


def _worker(args):
    _guard_sys_path()
    import signal
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        # Started with SIGINT ignored (a background job of a shell without
        # job control): Python then installs no KeyboardInterrupt handler and
        # the Ctrl-C tests of test_runners wait forever, on any loop. Give
        # the tests the signal disposition of an ordinary process.
        signal.signal(signal.SIGINT, signal.default_int_handler)
    import asyncio
    import faulthandler
    import importlib
    import traceback
    import unittest
    from asyncio import base_events, selector_events

    sys.path.insert(0, HERE)
    import adapters
    import expected_failures

    worker_pid = os.getpid()
    out = open(args.out, 'a', encoding='utf-8')

    def emit(record):
        if os.getpid() != worker_pid:      # a forked child must not write
            return
        out.write(json.dumps(record) + '\n')
        out.flush()

    evioloop = uvloop = None
    if args.loop == 'evioloop':
        import evioloop
        pkg = os.path.realpath(os.path.dirname(evioloop.__file__))
        if (pkg == os.path.realpath(os.path.join(REPO, 'evioloop'))
                and not args.allow_source_tree):
            sys.exit(f'refusing to test the source tree\'s evioloop ({pkg}); '
                     'install it (pip install .) or pass --allow-source-tree')
        factory = evioloop.new_event_loop
        # The policy way in, and the fallback after set_event_loop_policy(None):
        # asyncio.events._init_event_loop_policy() instantiates
        # asyncio.DefaultEventLoopPolicy.
        asyncio.DefaultEventLoopPolicy = evioloop.EventLoopPolicy
        asyncio.set_event_loop_policy(evioloop.EventLoopPolicy())
        target_class = evioloop.Loop
    elif args.loop == 'uvloop':
        import uvloop
        factory = uvloop.new_event_loop
        asyncio.DefaultEventLoopPolicy = uvloop.EventLoopPolicy
        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
        target_class = uvloop.Loop
    else:
        factory = asyncio.SelectorEventLoop
        asyncio.set_event_loop_policy(None)
        target_class = asyncio.SelectorEventLoop

    def kind_of(loop):
        if evioloop is not None and isinstance(loop, evioloop.Loop):
            return 'evio'
        if uvloop is not None and isinstance(loop, uvloop.Loop):
            return 'uv'
        if isinstance(loop, selector_events.BaseSelectorEventLoop):
            return 'stock'
        return 'mock'

    # Sanity: both ways in give the loop under test.
    for how, make in (('factory', factory), ('policy', asyncio.new_event_loop)):
        probe = make()
        try:
            if type(probe) is not target_class:
                sys.exit(f'{how} made {type(probe)!r}, not {target_class!r}')
        finally:
            probe.close()

    # Record the kind of every loop created: all of them pass through
    # BaseEventLoop.__init__ (evioloop.Loop too, through the MRO). A test is
    # charged with the loops created since the previous test ended: 3.10's
    # IsolatedAsyncioTestCase makes its loop in run(), before startTest().
    current = {'kinds': set()}
    orig_init = base_events.BaseEventLoop.__init__

    def counting_init(self, *a, **kw):
        current['kinds'].add(kind_of(self))
        return orig_init(self, *a, **kw)
    base_events.BaseEventLoop.__init__ = counting_init
    if uvloop is not None:
        # uvloop.Loop is no BaseEventLoop: its __init__ (the compiled base
        # class's) is wrapped on the Python subclass uvloop.Loop instead
        orig_uv_init = uvloop.Loop.__init__

        def counting_uv_init(self, *a, **kw):
            current['kinds'].add('uv')
            return orig_uv_init(self, *a, **kw)
        uvloop.Loop.__init__ = counting_uv_init
        _uvloop_close_loop(uvloop)

    emit({'meta': {
        'python': sys.version.split()[0],
        'executable': sys.executable,
        'loop': args.loop,
        'loop_class': f'{target_class.__module__}.{target_class.__qualname__}',
        'evioloop': (getattr(evioloop, '__file__', None)),
        'evioloop_version': getattr(evioloop, '__version__', None),
        'uvloop_version': getattr(uvloop, '__version__', None),
        'harness_shim': UVLOOP_SHIM if uvloop is not None else None,
        'module': args.worker,
        'adaptation': adapters.describe(args.worker),
    }})

    timeout = args.test_timeout

    def arm():
        faulthandler.dump_traceback_later(timeout, exit=True)

    arm()   # covers the import and setUpModule too
    mod = importlib.import_module(ID_PREFIX + args.worker)
    suite = adapters.build_suite(mod, args.worker, factory,
                                 patch_explicit=args.loop != 'asyncio')
    with open(args.exclude, encoding='utf-8') as f:
        exclude = set(json.load(f))

    def short(test_id):
        return test_id[len(ID_PREFIX):] if test_id.startswith(ID_PREFIX) else test_id

    def prune(s):
        kept = unittest.TestSuite()
        for t in s:
            if isinstance(t, unittest.TestSuite):
                sub = prune(t)
                if sub.countTestCases():
                    kept.addTest(sub)
                continue
            tid = short(t.id())
            if tid in exclude:
                continue
            entry = expected_failures.lookup(tid, args.loop, VERSION)
            if entry is not None and entry.hang:
                emit({'id': tid, 'outcome': 'notrun', 'kinds': [],
                      'detail': 'not run (hangs): ' + entry.reason, 'time': 0})
                continue
            kept.addTest(t)
        return kept
    suite = prune(suite)
    emit({'collected': suite.countTestCases()})

    class Result(unittest.TestResult):
        def __init__(self):
            super().__init__()
            self.cur = None

        def startTest(self, test):
            super().startTest(test)
            self.cur = {'id': short(test.id()), 'events': [], 't0': time.monotonic()}
            emit({'start': self.cur['id']})
            arm()

        def stopTest(self, test):
            arm()
            cur, self.cur = self.cur, None
            kinds = sorted(current['kinds'])
            current['kinds'] = set()
            outcome, detail = self.outcome(cur['events'])
            emit({'id': cur['id'], 'outcome': outcome, 'kinds': kinds,
                  'detail': detail, 'time': round(time.monotonic() - cur['t0'], 3)})
            super().stopTest(test)

        @staticmethod
        def outcome(events):
            by = {}
            for kind, text in events:
                by.setdefault(kind, []).append(text)
            if 'error' in by:
                return 'error', '\n'.join(by['error'] + by.get('fail', []))
            if 'fail' in by:
                return 'fail', '\n'.join(by['fail'])
            if 'xpass' in by:
                return 'fail', 'unexpected success of a CPython @expectedFailure test'
            if 'xfail' in by:
                return 'xfail', 'CPython @expectedFailure: ' + by['xfail'][0]
            if 'skip' in by and 'success' not in by:
                return 'skip', by['skip'][0]
            if 'success' in by:
                return 'pass', ''
            return 'error', 'no outcome reported'

        def _event(self, test, kind, text):
            if self.cur is None:
                # setUpClass/tearDownClass/setUpModule/tearDownModule
                emit({'id': short(str(test)), 'outcome': kind, 'kinds': [],
                      'detail': text, 'time': 0, 'fixture': True})
            else:
                self.cur['events'].append((kind, text))

        def _tb(self, err, test):
            text = self._exc_info_to_string(err, test)
            return text if len(text) < 6000 else text[:2000] + '\n[...]\n' + text[-3500:]

        def addSuccess(self, test):
            super().addSuccess(test)
            self._event(test, 'success', '')

        def addFailure(self, test, err):
            super().addFailure(test, err)
            self._event(test, 'fail', self._tb(err, test))

        def addError(self, test, err):
            super().addError(test, err)
            self._event(test, 'error', self._tb(err, test))

        def addSkip(self, test, reason):
            super().addSkip(test, reason)
            self._event(test, 'skip', reason)

        def addExpectedFailure(self, test, err):
            super().addExpectedFailure(test, err)
            self._event(test, 'xfail', str(err[1])[:200])

        def addUnexpectedSuccess(self, test):
            super().addUnexpectedSuccess(test)
            self._event(test, 'xpass', '')

        def addSubTest(self, test, subtest, err):
            super().addSubTest(test, subtest, err)
            if err is not None:
                if issubclass(err[0], test.failureException):
                    kind = 'fail'
                elif issubclass(err[0], unittest.SkipTest):
                    kind = 'skip'
                else:
                    kind = 'error'
                self._event(test, kind, f'{subtest}:\n' + self._tb(err, test))

    result = Result()
    current['kinds'] = set()
    try:
        suite.run(result)
    except BaseException:
        emit({'abort': traceback.format_exc()})
        raise
    finally:
        faulthandler.cancel_dump_traceback_later()
    emit({'end': True})
    out.close()
    return 0


# ------------------------------------------------------------------ parent

class ModuleRun:
    """The records of one module on one loop, after expected failures."""

    def __init__(self, module, loop):
        self.module = module
        self.loop = loop
        self.records = []       # dicts: id, outcome, kinds, detail, time, final
        self.meta = None
        self.problems = []      # worker-level trouble (crash, hang, bad setup)
        self.seconds = 0.0
        self.logs = []

    def counts(self):
        c = dict.fromkeys(COLUMNS, 0)
        for r in self.records:
            c['tests'] += 1
            c[r['final']] += 1
        return c

    @property
    def unexpected(self):
        return [r for r in self.records if r['final'] in ('fail', 'err')]


def _classify(rec, loop):
    import expected_failures
    target = LOOPS[loop]
    entry = expected_failures.lookup(rec['id'], loop, VERSION)
    rec['expected'] = entry.reason if entry is not None else None
    outcome = rec['outcome']
    if outcome == 'notrun':
        final = 'xfail'
    elif outcome in ('fail', 'error'):
        final = 'xfail' if entry is not None else ('fail' if outcome == 'fail' else 'err')
    elif outcome == 'pass':
        if entry is not None:
            final = 'xpass'
        else:
            final = 'pass' if target in rec['kinds'] else 'other'
    elif outcome == 'xfail':
        final = 'xfail'
    else:
        final = 'skip'
    rec['final'] = final
    return rec


def _read_jsonl(path):
    records = []
    if not os.path.exists(path):
        return records
    with open(path, encoding='utf-8') as f:
        for line in f:
            line = line.strip()
            if line:
                try:
                    records.append(json.loads(line))
                except ValueError:
                    pass    # a torn last line of a killed worker
    return records


def run_module(module, loop, opts):
    mr = ModuleRun(module, loop)
    scratch = tempfile.mkdtemp(prefix=f'evio-conf-{module}-{loop}-')
    workdir = os.path.join(scratch, 'cwd')
    os.mkdir(workdir)
    done = set()
    t0 = time.monotonic()
    attempt = 0
    try:
        while True:
            attempt += 1
            out = os.path.join(scratch, f'results.{attempt}.jsonl')
            log = os.path.join(scratch, f'worker.{attempt}.log')
            exclude = os.path.join(scratch, f'exclude.{attempt}.json')
            with open(exclude, 'w', encoding='utf-8') as f:
                json.dump(sorted(done), f)
            cmd = [sys.executable, os.path.abspath(__file__), '--worker', module,
                   '--loop', loop, '--out', out, '--exclude', exclude,
                   '--test-timeout', str(opts.test_timeout)]
            if opts.allow_source_tree:
                cmd.append('--allow-source-tree')
            env = dict(os.environ)
            env.pop('PYTHONASYNCIODEBUG', None)
            env.pop('PYTHONDEVMODE', None)
            with open(log, 'w', encoding='utf-8') as logf:
                try:
                    rc = subprocess.run(cmd, cwd=workdir, env=env, stdout=logf,
                                        stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                        timeout=opts.module_timeout).returncode
                except subprocess.TimeoutExpired:
                    rc = 'timeout'
            mr.logs.append(log)
            started, finished, ended = None, set(), False
            for rec in _read_jsonl(out):
                if 'meta' in rec:
                    mr.meta = rec['meta']
                elif 'start' in rec:
                    started = rec['start']
                elif 'id' in rec:
                    if rec['id'] in done and not rec.get('fixture'):
                        continue
                    mr.records.append(_classify(rec, loop))
                    if not rec.get('fixture'):
                        done.add(rec['id'])
                        finished.add(rec['id'])
                elif 'end' in rec:
                    ended = True
            if ended and rc == 0:
                break
            with open(log, encoding='utf-8', errors='replace') as f:
                tail = f.read()[-4000:]
            hung = 'Timeout (' in tail or rc == 'timeout'
            if started is not None and started not in finished:
                why = (f'hung: still running after {opts.test_timeout}s, the worker was stopped'
                       if hung else f'the worker died (exit status {rc}) during this test')
                mr.records.append(_classify({
                    'id': started, 'outcome': 'error', 'kinds': [], 'time': 0,
                    'detail': why + '\n' + tail, 'crash': True}, loop))
                done.add(started)
                if attempt <= opts.max_restarts:
                    continue
                mr.problems.append(f'gave up after {attempt} worker runs')
            else:
                mr.problems.append(f'worker exit status {rc} outside any test:\n{tail}')
            break
    finally:
        mr.seconds = time.monotonic() - t0
        if opts.keep:
            mr.scratch = scratch
        else:
            shutil.rmtree(scratch, ignore_errors=True)
    target = LOOPS[loop]
    if (module not in MOCK_ONLY and mr.records
            and not any(target in r['kinds'] for r in mr.records)):
        mr.problems.append(f'no test of {module} created a {loop} loop: '
                           'the loop under test was not wired in')
    return mr


def _fmt_counts(c, seconds):
    return ' '.join(f'{c[k]:>5}' for k in COLUMNS) + f' {seconds:>6.1f}'


def print_report(runs, loops, verbose, stream=sys.stdout):
    w = stream.write
    modules = []
    for mr in runs:
        if mr.module not in modules:
            modules.append(mr.module)
    by = {(mr.module, mr.loop): mr for mr in runs}
    head = ' '.join(f'{k:>5}' for k in COLUMNS) + '   secs'
    namew = max([len(m) for m in modules] + [12])
    w(f'Python {sys.version.split()[0]} ({sys.executable})\n')
    for loop in loops:
        metas = [mr.meta for mr in runs if mr.loop == loop and mr.meta]
        if metas:
            m = metas[0]
            extra = f", evioloop from {m['evioloop']}" if m.get('evioloop') else ''
            w(f"  {loop}: loop class {m['loop_class']}{extra}\n")
    w('\n' + ' ' * namew + ' | ' + ' | '.join(
        f'{loop:<{len(head)}}' for loop in loops) + '\n')
    w(f"{'module':<{namew}} | " + ' | '.join(head for _ in loops) + '\n')
    w('-' * (namew + 1) + ('+' + '-' * (len(head) + 2)) * len(loops) + '\n')
    totals = {loop: (dict.fromkeys(COLUMNS, 0), 0.0) for loop in loops}
    for m in modules:
        cells = []
        for loop in loops:
            mr = by.get((m, loop))
            if mr is None:
                cells.append(' ' * len(head))
                continue
            c = mr.counts()
            tc, ts = totals[loop]
            for k in COLUMNS:
                tc[k] += c[k]
            totals[loop] = (tc, ts + mr.seconds)
            cells.append(_fmt_counts(c, mr.seconds) + ('!' if mr.problems else ''))
        w(f'{m:<{namew}} | ' + ' | '.join(cells) + '\n')
    w('-' * (namew + 1) + ('+' + '-' * (len(head) + 2)) * len(loops) + '\n')
    w(f"{'TOTAL':<{namew}} | " + ' | '.join(
        _fmt_counts(*totals[loop]) for loop in loops) + '\n')

    bad = False
    for loop in loops:
        lruns = [mr for mr in runs if mr.loop == loop]
        unexpected = [r for mr in lruns for r in mr.unexpected]
        xpass = [r for mr in lruns for r in mr.records if r['final'] == 'xpass']
        xfail = [r for mr in lruns for r in mr.records if r['final'] == 'xfail']
        problems = [(mr.module, p) for mr in lruns for p in mr.problems]
        if unexpected or problems:
            bad = True
        if unexpected:
            w(f'\n{loop}: {len(unexpected)} UNEXPECTED failures/errors:\n')
            for r in unexpected:
                mark = '  [crash/hang]' if r.get('crash') else ''
                w(f"  {r['final'].upper():4} {r['id']}{mark}\n")
                detail = (r.get('detail') or '').rstrip()
                if verbose:
                    w('    ' + detail.replace('\n', '\n    ') + '\n')
                elif detail:
                    lines = [ln for ln in detail.splitlines() if ln.strip()]
                    w(f'       {lines[-1].strip()[:200]}\n')
        if problems:
            w(f'\n{loop}: worker problems:\n')
            for module, p in problems:
                w(f'  {module}: ' + p.replace('\n', '\n    ') + '\n')
        if xpass:
            w(f'\n{loop}: {len(xpass)} unexpected successes (listed in expected_failures.py, '
              'but passed: remove the entry):\n')
            for r in xpass:
                w(f"  {r['id']}  ({r['expected']})\n")
        notrun = [r for r in xfail if r['outcome'] == 'notrun']
        if notrun:
            w(f'\n{loop}: {len(notrun)} tests not run (expected to hang):\n')
            for r in notrun:
                w(f"  {r['id']}\n")
        if verbose and xfail:
            w(f'\n{loop}: {len(xfail)} expected failures:\n')
            for r in xfail:
                reason = r.get('expected') or r.get('detail', '').splitlines()[0]
                got = r['outcome']
                w(f"  {r['id']}  [{got}] {reason}\n")
        other = [r for mr in lruns for r in mr.records if r['final'] == 'other']
        if other:
            mock = sum(1 for r in other if r['kinds'] == ['mock'])
            none = sum(1 for r in other if not r['kinds'])
            real = [r for r in other if set(r['kinds']) - {'mock'}]
            w(f"\n{loop}: 'other' = {len(other)} passes not counted: {mock} on mock loops "
              f"only (test_utils.TestLoop, mocked BaseEventLoop), {none} created no loop, "
              f"{len(real)} created another real loop kind"
              + (':' if real else '') + '\n')
            for r in real:
                w(f"  {r['id']}  loops: {','.join(r['kinds'])}\n")
    return bad


def _run_doc(mr):
    return {'module': mr.module, 'loop': mr.loop, 'counts': mr.counts(),
            'seconds': round(mr.seconds, 1), 'meta': mr.meta,
            'problems': mr.problems, 'records': mr.records}


def write_json(path, runs, loops, complete, base=None):
    """Every record of runs to path, atomically (a temporary file renamed).

    base: a complete earlier file of this Python (--update): its runs are
    kept but for the (module, loop) pairs in runs, which replace them.
    """
    docs = [_run_doc(mr) for mr in runs]
    if base is not None:
        new = {(d['module'], d['loop']): d for d in docs}
        order = [(r['module'], r['loop']) for r in base['runs']]
        order += [k for k in new if k not in order]
        old = {(r['module'], r['loop']): r for r in base['runs']}
        docs = [new.get(k) or old[k] for k in order]
        loops = list(base.get('loops', [])) + [lp for lp in loops
                                               if lp not in base.get('loops', [])]
    doc = {'python': sys.version.split()[0], 'loops': list(loops), 'complete': complete,
           'runs': docs}
    tmp = f'{path}.tmp{os.getpid()}'
    with open(tmp, 'w', encoding='utf-8') as f:
        json.dump(doc, f, indent=1)
    os.replace(tmp, path)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--loop', choices=tuple(LOOPS) + ('both', 'all'), default='evioloop',
                   help="the loop under test; both: evioloop and asyncio; "
                        "all: evioloop, asyncio and uvloop (default: evioloop)")
    p.add_argument('--modules', nargs='+', metavar='M',
                   help='modules to run (default: all that exist here); '
                        'the test_ prefix may be omitted')
    p.add_argument('-v', '--verbose', action='store_true',
                   help='tracebacks, expected failures, tests that ran other loops')
    p.add_argument('-j', '--jobs', type=int, default=1, help='modules run in parallel')
    p.add_argument('--test-timeout', type=float, default=40.0,
                   help='seconds one test (or one fixture) may take (default 40; '
                        'the slowest test takes about 5s here)')
    p.add_argument('--module-timeout', type=float, default=1800.0)
    p.add_argument('--max-restarts', type=int, default=5,
                   help='hung/crashed tests tolerated per module before giving up')
    p.add_argument('--json', metavar='PATH', help='write every record to PATH')
    p.add_argument('--update', action='store_true',
                   help="with --json: keep PATH's other runs, replace those run now")
    p.add_argument('--keep', action='store_true', help='keep the worker scratch dirs')
    p.add_argument('--list', action='store_true', help='list the modules and exit')
    p.add_argument('--allow-source-tree', action='store_true',
                   help='accept an evioloop imported from the repository (editable install)')
    # internal: worker mode
    p.add_argument('--worker', help=argparse.SUPPRESS)
    p.add_argument('--out', help=argparse.SUPPRESS)
    p.add_argument('--exclude', help=argparse.SUPPRESS)
    opts = p.parse_args(argv)

    if opts.worker:
        return _worker(opts)

    available = available_modules()
    if not available:
        print(f'{sys.executable} has no test.test_asyncio package', file=sys.stderr)
        return 2
    if opts.list:
        sys.path.insert(0, HERE)
        import adapters
        for m in available:
            if m in MOCK_ONLY:
                print(f'{m}: not run by default ({MOCK_ONLY[m]})')
            else:
                print(f'{m}: {adapters.describe(m)}')
        return 0
    modules = [m for m in available if m not in MOCK_ONLY]
    if opts.modules:
        modules = []
        for m in opts.modules:
            m = m if m.startswith('test_') else 'test_' + m
            if m not in MODULES and m not in MOCK_ONLY:
                p.error(f'unknown module {m}; known: {", ".join(MODULES + sorted(MOCK_ONLY))}')
            if m in available:
                modules.append(m)
            else:
                print(f'note: {m} does not exist in Python {VERSION}; skipped')
    loops = {'both': ['evioloop', 'asyncio'],
             'all': list(LOOPS)}.get(opts.loop, [opts.loop])
    sys.path.insert(0, HERE)

    jobs = [(m, loop) for m in modules for loop in loops]
    runs = []
    t0 = time.monotonic()
    # --json is rewritten after every module (complete: false until the
    # end), so a crash or a Ctrl-C keeps the modules already run
    base = None
    if opts.update:
        if not opts.json:
            p.error('--update needs --json')
        with open(opts.json, encoding='utf-8') as f:
            base = json.load(f)
        if base.get('python') != sys.version.split()[0] or base.get('complete') is False:
            p.error(f'--update: {opts.json} is not a complete file of Python '
                    f'{sys.version.split()[0]}')
    save = (lambda done, complete: write_json(opts.json, done, loops, complete, base)) \
        if opts.json else (lambda done, complete: None)
    if opts.jobs > 1:
        from concurrent.futures import ThreadPoolExecutor, as_completed
        with ThreadPoolExecutor(opts.jobs) as ex:
            futures = {ex.submit(run_module, m, loop, opts): i
                       for i, (m, loop) in enumerate(jobs)}
            finished = {}
            for fut in as_completed(futures):
                finished[futures[fut]] = fut.result()
                save([finished[i] for i in sorted(finished)], False)
            runs = [finished[i] for i in sorted(finished)]
    else:
        for m, loop in jobs:
            runs.append(run_module(m, loop, opts))
            save(runs, False)
            if opts.verbose:
                c = runs[-1].counts()
                print(f'  ran {m} on {loop}: ' + ', '.join(f'{k}={c[k]}' for k in COLUMNS)
                      + f' ({runs[-1].seconds:.1f}s)', flush=True)
    bad = print_report(runs, loops, opts.verbose)
    print(f'\nwall time {time.monotonic() - t0:.1f}s; '
          + ('UNEXPECTED FAILURES' if bad else 'OK (no unexpected failures)'))
    save(runs, True)
    return 1 if bad else 0


if __name__ == '__main__':
    _guard_sys_path()
    sys.exit(main())
