"""evioloop ships type information (py.typed and .pyi stubs for its compiled
and Python modules): `mypy --strict` accepts a program that uses the public
API (tests/typing_sample.py) and reports a program that misuses it.

mypy runs in a fresh directory, so it sees the evioloop that the running
Python imports (under tox, the installed wheel), not the source tree.
"""
import os
import subprocess
import sys
from pathlib import Path

import pytest

import evioloop

try:
    import mypy  # noqa: F401
except ImportError:
    pytest.skip('mypy is not installed (it is in the test extra)', allow_module_level=True)

SAMPLE = Path(__file__).with_name('typing_sample.py')

BAD = '''\
import evioloop
from evioloop import Action, Conn, Events


class Bad(Events):
    def data(self, conn: Conn, in_: bytes) -> str:   # not a data() result
        return 'no'


def f(conn: Conn) -> None:
    conn.write('text')                      # str where bytes are needed
    evioloop.Action.CLOSE + 'x'             # an IntEnum is no str
    loop: int = evioloop.new_event_loop()   # new_event_loop() is typed
'''


def _mypy(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    env = dict(os.environ)
    env.pop('MYPYPATH', None)
    proc = subprocess.run(
        [sys.executable, '-m', 'mypy', '--strict', '--no-error-summary', '--hide-error-context',
         '--cache-dir', str(tmp_path.parent / 'mypy-cache'), name],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=85)
    return proc.returncode, proc.stdout + proc.stderr


def test_installed_package_is_typed():
    root = Path(evioloop.__file__).parent
    assert (root / 'py.typed').is_file()
    for stub in ('__init__.pyi', 'core/_core.pyi', 'loop.pyi', 'events/_conn.pyi',
                 'events/_udp.pyi', 'events/api.pyi', 'events/server.pyi'):
        assert (root / stub).is_file(), stub


def test_mypy_strict_accepts_the_public_api(tmp_path):
    code, out = _mypy(tmp_path, 'sample.py', SAMPLE.read_text())
    assert code == 0 and 'error' not in out, (
        f'mypy --strict against {evioloop.__file__}:\n{out}')


def test_mypy_strict_reports_misuse(tmp_path):
    code, out = _mypy(tmp_path, 'bad.py', BAD)
    assert code == 1, out
    errors = [line for line in out.splitlines() if ': error: ' in line]
    expected = {
        6: 'Signature of "data" incompatible with supertype "Events"',
        11: 'Argument 1 to "write" of "Conn" has incompatible type "str"',
        12: 'Unsupported operand types for + ("Action" and "str")',
        13: 'Incompatible types in assignment (expression has type "Loop"',
    }
    for line, message in expected.items():
        assert any(e.startswith(f'bad.py:{line}: error: {message}') for e in errors), (
            f'line {line}: expected {message!r} in:\n{out}')
    assert len(errors) == len(expected), out
    assert 'missing library stubs' not in out and 'Cannot find' not in out, out
