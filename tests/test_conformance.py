"""CPython's own test.test_asyncio suites, run against the installed evioloop.

One pytest test per test_asyncio module; each runs tests/conformance/run.py in a
subprocess (unittest's runner inside, a fresh interpreter per module), and fails
when the module has a failure or error not listed in
tests/conformance/expected_failures.py. Set EVIOLOOP_CONFORMANCE=0 to skip them.
"""
import importlib.util
import json
import os
import subprocess
import sys

import pytest

RUN = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'conformance', 'run.py')


def _modules():
    spec = importlib.util.spec_from_file_location('_evioloop_conformance_run', RUN)
    run = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(run)
    return [m for m in run.available_modules() if m not in run.MOCK_ONLY]


MODULES = _modules()
SKIP = os.environ.get('EVIOLOOP_CONFORMANCE', '1') == '0'


@pytest.mark.skipif(SKIP, reason='EVIOLOOP_CONFORMANCE=0')
@pytest.mark.skipif(not MODULES, reason=f'{sys.executable} has no test.test_asyncio')
@pytest.mark.parametrize('module', MODULES or ['none'])
def test_conformance(module, tmp_path):
    report = tmp_path / 'report.json'
    proc = subprocess.run(
        [sys.executable, RUN, '--loop', 'evioloop', '--modules', module,
         '--json', str(report)],
        cwd=str(tmp_path), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True, timeout=1200)
    counts = None
    if report.exists():
        with open(report, encoding='utf-8') as f:
            runs = json.load(f)['runs']
        counts = runs[0]['counts'] if runs else None
    if proc.returncode != 0:
        pytest.fail(f'{module} on evioloop: unexpected failures (exit status '
                    f'{proc.returncode}); counts {counts}\n{proc.stdout}', pytrace=False)
    if not counts or counts['pass'] == 0:
        pytest.fail(f'{module}: no test ran on evioloop; counts {counts}\n{proc.stdout}',
                    pytrace=False)
