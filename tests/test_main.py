"""`python -m evioloop` reports what is installed, and `--selftest` echoes
over TCP through an asyncio Protocol and the Events API, exiting 0 only when
every byte came back (evioloop/__main__.py)."""
import importlib.machinery
import platform
import subprocess
import sys
from pathlib import Path

import evioloop
from evioloop.core import _core


def _run(*args, code=None):
    cmd = [sys.executable, '-m', 'evioloop', *args] if code is None else [
        sys.executable, '-c', code]
    # next to the evioloop this test imports, so that `-m evioloop` finds the same one
    return subprocess.run(cmd, capture_output=True, text=True, timeout=80,
                          cwd=Path(evioloop.__file__).parents[1])


def _fields(stdout):
    return dict(line.split(': ', 1) for line in stdout.splitlines()[1:] if ': ' in line)


def test_info():
    proc = _run()
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == f'evioloop {evioloop.__version__}'
    fields = _fields(proc.stdout)
    assert fields['backend'] == evioloop.BACKEND
    assert evioloop.BACKEND in ('epoll', 'kqueue')
    assert fields['core'] == f'{_core.__file__} (compiled extension module)'
    assert _core.__file__.endswith(tuple(importlib.machinery.EXTENSION_SUFFIXES))
    assert fields['python'] == (f'{platform.python_version()} '
                                f'({platform.python_implementation()}) {sys.executable}')
    assert 'selftest' not in proc.stdout
    assert proc.stderr == ''


def test_selftest_passes():
    proc = _run('--selftest')
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout.splitlines()
    assert out[0] == f'evioloop {evioloop.__version__}'
    for name in ('asyncio Protocol echo', 'Events API echo'):
        line = next(x for x in out if x.startswith(f'selftest: {name}: '))
        assert line.startswith(f'selftest: {name}: ok, 1000 round trips, '), line
        assert line.endswith(' s'), line
    assert out[-1].startswith('selftest: ok in ') and out[-1].endswith(' s'), out[-1]


def test_selftest_fails_when_a_byte_is_wrong():
    # the Protocol echo flips one bit of what it echoes: the check must see it,
    # and the Events echo still runs and passes
    code = ('import sys, evioloop.__main__ as m\n'
            'def bad(self, d):\n'
            '    self.transport.write(bytes([d[0] ^ 1]) + d[1:])\n'
            'm._EchoProtocol.data_received = bad\n'
            'sys.exit(m.main(["--selftest"]))\n')
    proc = _run(code=code)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    out = proc.stdout.splitlines()
    assert any(x.startswith('selftest: asyncio Protocol echo: FAILED after ')
               and 'AssertionError: round trip 0: sent 1 bytes, the echo differs at byte 0' in x
               for x in out), proc.stdout
    assert any(x.startswith('selftest: Events API echo: ok, 1000 round trips') for x in out)
    assert out[-1].startswith('selftest: FAILED (1 of 2) in '), proc.stdout


def test_bad_argument_exits_2():
    proc = _run('--no-such-option')
    assert proc.returncode == 2
    assert 'usage: python -m evioloop' in proc.stderr
