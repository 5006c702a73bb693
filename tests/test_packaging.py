"""What the distributions hold, and that the sdist builds a working install.

The sdist builds from scratch (Cython sources, headers, build files, license;
no generated C). From that sdist, in a fresh venv and with pip's build
isolation (setuptools and Cython come from the package registry, as for a
user), pip builds a wheel that holds what runs and what type checkers read
(the compiled modules, .py, .pyi, py.typed, the license), no generated C and
no tests; installed, it imports from outside the source tree, its modules are
the compiled ones, and an echo over TCP on `evioloop.run` gets every byte back.

That costs a minute or two of CPU, so those tests exist only when
EVIOLOOP_PACKAGE_TESTS=1, which only `tox -e package` sets (tox.ini); there
they run with --noconftest (nothing is installed in that env: the build under
test is in its own venv). The regular test envs do not collect them (they are
not defined there, not skipped) and keep the one cheap check on the wheel tox
installed them from.
"""
import importlib.machinery
import json
import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE_TESTS = os.environ.get('EVIOLOOP_PACKAGE_TESTS') == '1'

SUFFIX = importlib.machinery.EXTENSION_SUFFIXES[0]     # e.g. .cpython-312-x86_64-linux-gnu.so
IGNORE = shutil.ignore_patterns('.git', '.tox', '.venv*', 'build', 'dist', '*.egg-info',
                                '__pycache__', '*.py[cod]', '*.so', '.pytest_cache',
                                '.mypy_cache', 'site')

# Run by the clean venv's Python, from a directory outside the source tree:
# where evioloop and its compiled modules came from, and a 64 KiB echo over
# TCP on evioloop.run (an asyncio server and client on 127.0.0.1), by hash.
IN_VENV = r'''
import asyncio, hashlib, importlib, importlib.machinery, json, os, sys
import evioloop
names = sys.argv[1].split(',')
mods = {n: importlib.import_module(n) for n in names}
payload = os.urandom(1 << 16)

async def echo(reader, writer):
    while data := await reader.read(65536):
        writer.write(data)
        await writer.drain()
    writer.close()
    await writer.wait_closed()

async def main():
    server = await asyncio.start_server(echo, '127.0.0.1', 0)
    port = server.sockets[0].getsockname()[1]
    reader, writer = await asyncio.open_connection('127.0.0.1', port)
    writer.write(payload)
    await writer.drain()
    writer.write_eof()
    got = await reader.read()
    writer.close()
    await writer.wait_closed()
    server.close()
    await server.wait_closed()
    return type(asyncio.get_running_loop()).__module__, hashlib.sha256(got).hexdigest()

loop_module, got = evioloop.run(main())
print(json.dumps({
    'evioloop': evioloop.__file__,
    'files': {n: m.__file__ for n, m in mods.items()},
    'extension': {n: isinstance(getattr(m, '__loader__', None),
                                importlib.machinery.ExtensionFileLoader)
                  for n, m in mods.items()},
    'loop_module': loop_module,
    'sent': hashlib.sha256(payload).hexdigest(), 'got': got,
}))
'''


def _sources(pattern):
    """The package's files matching pattern, relative to the root, in the source tree."""
    return sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / 'evioloop').rglob(pattern))


def _run(cmd, cwd, env=None, timeout=900):
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, f'{cmd} failed:\n{out[-4000:]}'
    return out


if not PACKAGE_TESTS:
    # (the package env installs nothing: there is no evioloop to look at)
    def test_installed_package_has_no_generated_c():
        # under tox this is the wheel tox built straight from the source tree,
        # where the build left its .c files next to the .pyx
        import evioloop
        pkg = Path(evioloop.__file__).resolve().parent
        if pkg == ROOT / 'evioloop':
            pytest.skip('evioloop is imported from the source tree, not installed')
        assert not list(pkg.rglob('*.c')), sorted(pkg.rglob('*.c'))
        assert (pkg / 'py.typed').is_file()
else:
    @pytest.fixture(scope='module')
    def dists(tmp_path_factory):
        """The sdist and the wheel pip built from it in a fresh venv, installed there.

        A dict: sdist (member names), wheel (member names), metadata (the
        wheel's METADATA), out (the build's output), venv_python, tmp.
        """
        if not (ROOT / 'setup.py').is_file():
            pytest.fail(f'no source tree at {ROOT}', pytrace=False)
        tmp = tmp_path_factory.mktemp('dists')
        src = tmp / 'src'
        # a copy, so that the build leaves nothing behind in the source tree
        shutil.copytree(ROOT, src, ignore=IGNORE)
        for c in (src / 'evioloop').rglob('*.c'):       # an in-place build's, if any
            c.unlink()
        sdist_dir, wheel_dir = tmp / 'sdist', tmp / 'wheel'
        env = dict(os.environ, PIP_DISABLE_PIP_VERSION_CHECK='1')
        for name in ('PYTHONPATH', 'PIP_NO_INDEX', 'PIP_NO_BUILD_ISOLATION'):
            env.pop(name, None)
        out = _run([sys.executable, '-m', 'build', '--sdist', '--outdir', str(sdist_dir),
                    str(src)], cwd=tmp, env=env)
        (sdist,) = sdist_dir.glob('evioloop-*.tar.gz')
        with tarfile.open(sdist) as tf:
            sdist_names = [n.split('/', 1)[1] for n in tf.getnames() if '/' in n]

        venv = tmp / 'venv'
        _run([sys.executable, '-m', 'venv', str(venv)], cwd=tmp, env=env)
        python = str(venv / 'bin' / 'python')
        # both cores for the compiler (setup.py's build_ext reads this config)
        cfg = tmp / 'parallel.cfg'
        cfg.write_text(f'[build_ext]\nparallel = {os.cpu_count() or 1}\n')
        benv = dict(env, DIST_EXTRA_CONFIG=str(cfg))
        # pip's build isolation: setuptools and Cython from the registry,
        # nothing from this environment
        out += _run([python, '-m', 'pip', 'wheel', '-v', '--no-deps', '--no-cache-dir',
                     '-w', str(wheel_dir), str(sdist)], cwd=tmp, env=benv)
        (wheel,) = wheel_dir.glob('evioloop-*.whl')
        _run([python, '-m', 'pip', 'install', '--no-index', '--no-deps', str(wheel)],
             cwd=tmp, env=env)
        with zipfile.ZipFile(wheel) as zf:
            wheel_names = zf.namelist()
            metadata = zf.read(next(n for n in wheel_names
                                    if n.endswith('.dist-info/METADATA'))).decode()
        return {'sdist': sdist_names, 'wheel': wheel_names, 'metadata': metadata,
                'out': out, 'venv_python': python, 'tmp': tmp}

    def test_sdist_builds_from_scratch(dists):
        sdist = dists['sdist']
        needed = (_sources('*.pyx') + _sources('*.pxd') + _sources('*.h')
                  + _sources('*.pyi') + _sources('*.py')
                  + ['evioloop/py.typed', 'setup.py', 'pyproject.toml', 'README.md',
                     'LICENSE', 'MANIFEST.in', 'tests/conftest.py'])
        assert len(_sources('*.pyx')) >= 7
        missing = sorted(set(needed) - set(sdist))
        assert not missing, f'not in the sdist: {missing}'
        assert not [n for n in sdist if n.endswith(('.c', '.so', '.pyc'))], sdist

    def test_wheel_holds_what_runs(dists):
        wheel = dists['wheel']
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
        metadata, out = dists['metadata'], dists['out']
        assert 'License-Expression: MIT' in metadata, metadata
        assert 'License-File: LICENSE' in metadata, metadata
        assert 'Copyright (c) 2026 the evioloop authors' in (ROOT / 'LICENSE').read_text()
        # setuptools says nothing about the license (or anything else deprecated)
        warnings = [line for line in out.splitlines()
                    if 'SetuptoolsDeprecationWarning' in line or 'license' in line.lower()
                    and 'warn' in line.lower()]
        assert not warnings, '\n'.join(warnings)

    def test_installed_wheel_runs_compiled(dists):
        # every .pyx of the source tree, as the module name it compiles to
        names = sorted(p[:-len('.pyx')].replace('/', '.') for p in _sources('*.pyx'))
        assert 'evioloop.core._core' in names, names
        away = dists['tmp'] / 'elsewhere'       # not the source tree, not its copy
        away.mkdir()
        env = {k: v for k, v in os.environ.items() if k != 'PYTHONPATH'}
        out = _run([dists['venv_python'], '-I', '-c', IN_VENV, ','.join(names)],
                   cwd=away, env=env, timeout=120)
        got = json.loads(out.strip().splitlines()[-1])
        venv = Path(dists['venv_python']).parent.parent
        assert Path(got['evioloop']).resolve().is_relative_to(venv.resolve()), got
        for name in names:
            assert got['extension'][name], (name, got['files'][name])
            assert got['files'][name].endswith(SUFFIX), (name, got['files'][name])
            assert Path(got['files'][name]).resolve().is_relative_to(venv.resolve()), got
        assert got['loop_module'] == 'evioloop.loop', got
        assert got['got'] == got['sent'], 'the echo lost or changed bytes'
