"""What the distributions hold: the sdist builds from scratch (Cython sources,
headers, build files, license; no generated C), and the wheel, built from that
sdist, holds what runs and what type checkers read (the compiled modules,
.py, .pyi, py.typed, the license), no generated C and no tests.

One sdist and one wheel, of a copy of the source tree (so the build leaves
nothing behind in it), without build isolation: with this Python's Cython
and setuptools (the test extra has them), offline. The wheel is only looked
at, never installed, so it is compiled without optimisation to keep the test
short.
"""
import importlib.machinery
import importlib.util
import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

for _module in ('setuptools', 'Cython', 'pip'):
    # looked up, not imported: importing setuptools here would replace an
    # already imported distutils (a warning on 3.10)
    if importlib.util.find_spec(_module) is None:
        pytest.skip(f'{_module} is not installed: cannot build evioloop here '
                    f'(the test extra has it)', allow_module_level=True)

if not (ROOT / 'setup.py').is_file():
    pytest.skip(f'no source tree at {ROOT}', allow_module_level=True)

SUFFIX = importlib.machinery.EXTENSION_SUFFIXES[0]     # e.g. .cpython-312-x86_64-linux-gnu.so
IGNORE = shutil.ignore_patterns('.git', '.tox', '.venv*', 'build', 'dist', '*.egg-info',
                                '__pycache__', '*.py[cod]', '*.so', '.pytest_cache',
                                '.mypy_cache')


def _sources(pattern):
    """The package's files matching pattern, relative to the root, in the source tree."""
    return sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / 'evioloop').rglob(pattern))


def _run(cmd, cwd, env=None, timeout=80):
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, f'{cmd} failed:\n{out[-4000:]}'
    return out


@pytest.fixture(scope='module')
def dists(tmp_path_factory):
    """(sdist members, wheel members, wheel METADATA, build output)."""
    tmp = tmp_path_factory.mktemp('dists')
    src = tmp / 'src'
    shutil.copytree(ROOT, src, ignore=IGNORE)
    for c in (src / 'evioloop').rglob('*.c'):       # an in-place build's, if any
        c.unlink()
    sdist_dir, wheel_dir = tmp / 'sdist', tmp / 'wheel'
    out = _run([sys.executable, '-c',
                'import sys; from setuptools import build_meta; '
                'print("SDIST", build_meta.build_sdist(sys.argv[1]))', str(sdist_dir)],
               cwd=src)
    (sdist,) = sdist_dir.glob('evioloop-*.tar.gz')
    with tarfile.open(sdist) as tf:
        sdist_names = [n.split('/', 1)[1] for n in tf.getnames() if '/' in n]

    cfg = tmp / 'fast.cfg'
    cfg.write_text(f'[build_ext]\nparallel = {os.cpu_count() or 1}\n')
    env = dict(os.environ, CFLAGS='-O0', DIST_EXTRA_CONFIG=str(cfg),
               PIP_NO_INDEX='1', PIP_DISABLE_PIP_VERSION_CHECK='1')
    out += _run([sys.executable, '-m', 'pip', 'wheel', '-v', '--no-build-isolation',
                 '--no-deps', '--no-cache-dir', '-w', str(wheel_dir), str(sdist)],
                cwd=tmp, env=env)
    (wheel,) = wheel_dir.glob('evioloop-*.whl')
    with zipfile.ZipFile(wheel) as zf:
        wheel_names = zf.namelist()
        metadata = zf.read(next(n for n in wheel_names
                                if n.endswith('.dist-info/METADATA'))).decode()
    return sdist_names, wheel_names, metadata, out


def test_sdist_builds_from_scratch(dists):
    sdist, _, _, _ = dists
    needed = (_sources('*.pyx') + _sources('*.pxd') + _sources('*.h') + _sources('*.pyi')
              + ['evioloop/py.typed', 'setup.py', 'pyproject.toml', 'README.md', 'LICENSE',
                 'MANIFEST.in', 'tests/conftest.py'])
    assert len(_sources('*.pyx')) >= 7
    missing = sorted(set(needed) - set(sdist))
    assert not missing, f'not in the sdist: {missing}'
    assert not [n for n in sdist if n.endswith(('.c', '.so', '.pyc'))], sdist


def test_wheel_holds_what_runs(dists):
    _, wheel, _, _ = dists
    assert not [n for n in wheel if n.endswith('.c')], wheel
    assert not [n for n in wheel if n.startswith('tests/') or '/tests/' in n], wheel
    assert not [n for n in wheel
                if not n.startswith(('evioloop/', 'evioloop-'))], wheel
    compiled = [p[:-len('.pyx')] + SUFFIX for p in _sources('*.pyx')]
    missing = sorted(set(compiled + ['evioloop/py.typed', 'evioloop/__main__.py']
                         + _sources('*.pyi') + _sources('*.py')) - set(wheel))
    assert not missing, f'not in the wheel: {missing}'
    assert any(n.endswith('.dist-info/licenses/LICENSE') for n in wheel), wheel


def test_license_metadata(dists):
    _, _, metadata, out = dists
    assert 'License-Expression: MIT' in metadata, metadata
    assert 'License-File: LICENSE' in metadata, metadata
    assert 'Copyright (c) 2026 the evioloop authors' in (ROOT / 'LICENSE').read_text()
    # setuptools says nothing about the license (or anything else deprecated)
    warnings = [line for line in out.splitlines()
                if 'SetuptoolsDeprecationWarning' in line or 'license' in line.lower()
                and 'warn' in line.lower()]
    assert not warnings, '\n'.join(warnings)


def test_installed_package_has_no_generated_c():
    # under tox this is the wheel tox built straight from the source tree,
    # where the build left its .c files next to the .pyx
    import evioloop
    pkg = Path(evioloop.__file__).resolve().parent
    if pkg == ROOT / 'evioloop':
        pytest.skip('evioloop is imported from the source tree, not installed')
    assert not list(pkg.rglob('*.c')), sorted(pkg.rglob('*.c'))
    assert (pkg / 'py.typed').is_file()
