"""Subprocesses on evioloop (pidfd-watched children, compiled pipes) against the stock loop.

Each scenario runs on both loops and the stock loop's answer is the expected
one (`both`). After every test the process has no child left (no zombie:
waitpid(-1, WNOHANG) raises ChildProcessError) and, through check_fds, no
pidfd or pipe left open.
"""
import asyncio
import errno
import hashlib
import os
import signal
import sys
import threading
import warnings

import pytest

import evioloop
from evioloop.transports import _process
from net_helpers import pattern, run

PIPE = asyncio.subprocess.PIPE
PY = sys.executable


def both(scenario, **kw):
    got = run('evioloop', scenario(), **kw)
    expected = run('stock', scenario(), **kw)
    assert got == expected
    return expected


def zombies():
    """Pids of this process's children that have exited and not been reaped."""
    me = str(os.getpid())
    out = []
    for name in os.listdir('/proc'):
        if not name.isdigit():
            continue
        try:
            with open(f'/proc/{name}/stat') as f:
                fields = f.read().rsplit(')', 1)[1].split()
        except OSError:
            continue
        if fields[1] == me and fields[0] == 'Z':
            out.append(int(name))
    return out


@pytest.fixture(autouse=True)
def no_child_left():
    yield
    assert zombies() == []
    with pytest.raises(ChildProcessError):
        os.waitpid(-1, os.WNOHANG)


def test_exec_communicate_hash():
    src = pattern(4 * 1024 * 1024, seed=11)

    async def main():
        p = await asyncio.create_subprocess_exec('cat', stdin=PIPE, stdout=PIPE)
        out, err = await p.communicate(src)
        return hashlib.sha256(out).hexdigest(), len(out), err, p.returncode
    assert both(main) == (hashlib.sha256(src).hexdigest(), len(src), None, 0)


def test_shell_stdout_stderr_and_exit_status():
    async def main():
        p = await asyncio.create_subprocess_shell(
            'echo out; echo err >&2; exit 7', stdout=PIPE, stderr=PIPE)
        out, err = await p.communicate()
        return out, err, p.returncode, await p.wait()
    assert both(main) == (b'out\n', b'err\n', 7, 7)


def test_returncodes_and_signals():
    async def main():
        out = []
        for how in ('terminate', 'kill', 'send_signal'):
            p = await asyncio.create_subprocess_exec('sleep', '30')
            if how == 'send_signal':
                p.send_signal(signal.SIGUSR1)
            else:
                getattr(p, how)()
            out.append((how, await p.wait(), p.returncode))
        p = await asyncio.create_subprocess_exec(PY, '-c', 'import sys; sys.exit(3)')
        out.append(('exit', await p.wait()))
        # signals after the exit: no error, and the returncode stays
        for how in ('send_signal', 'terminate', 'kill'):
            try:
                if how == 'send_signal':
                    p.send_signal(signal.SIGTERM)
                else:
                    getattr(p, how)()
                out.append((how, 'ok', p.returncode))
            except ProcessLookupError:
                out.append((how, 'ProcessLookupError', p.returncode))
        return out
    got = both(main)
    assert got[:4] == [('terminate', -signal.SIGTERM, -signal.SIGTERM),
                       ('kill', -signal.SIGKILL, -signal.SIGKILL),
                       ('send_signal', -signal.SIGUSR1, -signal.SIGUSR1),
                       ('exit', 3)]


def test_wait_while_a_grandchild_holds_stdout_open():
    # the child is still running when wait() is called, exits 0.2 s later,
    # and its background job keeps the stdout pipe open 0.3 s more. Whether
    # wait() returns before the pipe's EOF is version-specific (3.12 waits for
    # the pipes): evioloop must do what this Python's stock loop does.
    async def main():
        order = []
        p = await asyncio.create_subprocess_shell(
            '(sleep 0.5; echo late) & sleep 0.2; exit 5', stdout=PIPE)

        async def waiter():
            order.append(('wait', await p.wait()))

        async def reader():
            order.append(('eof', await p.stdout.read()))
        await asyncio.gather(waiter(), reader())
        return order
    got = both(main)
    assert sorted(got) == [('eof', b'late\n'), ('wait', 5)]


def test_many_children_in_parallel():
    async def main():
        procs = [await asyncio.create_subprocess_exec(
            'sh', '-c', f'exit {i}', stdout=PIPE) for i in range(40)]
        rcs = await asyncio.gather(*(p.wait() for p in procs))
        outs = await asyncio.gather(*(p.stdout.read() for p in procs))
        return rcs, outs
    rcs, outs = both(main)
    assert rcs == list(range(40)) and outs == [b''] * 40


def test_pidfd_watch_is_dropped_once_the_child_is_reaped():
    async def main():
        loop = asyncio.get_running_loop()
        p = await asyncio.create_subprocess_exec('sleep', '30')
        watched = _process.pidfd_watches(loop)
        p.kill()
        rc = await p.wait()
        return watched, p.pid, rc, _process.pidfd_watches(loop)
    watched, pid, rc, after = run('evioloop', main())
    assert (watched, rc, after) == ([pid], -signal.SIGKILL, [])


def _in_threads(kind, n_threads=2):
    results = {}

    async def main(tag):
        procs = [await asyncio.create_subprocess_exec(
            PY, '-c', f'print({tag} * 100 + {i})', stdout=PIPE) for i in range(5)]
        outs = [await p.communicate() for p in procs]
        return [(int(o), p.returncode) for (o, _), p in zip(outs, procs, strict=True)]

    def target(tag):
        try:
            results[tag] = run(kind, main(tag))
        except BaseException as exc:    # noqa: BLE001 - reported below
            results[tag] = repr(exc)
    threads = [threading.Thread(target=target, args=(t,)) for t in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return results


def test_two_loops_in_two_threads_each_run_children():
    expected = _in_threads('stock')
    assert _in_threads('evioloop') == expected
    assert expected == {t: [(t * 100 + i, 0) for i in range(5)] for t in range(2)}


async def _fallback_scenario(seen_threads):
    loop = asyncio.get_running_loop()
    p = await asyncio.create_subprocess_exec(
        PY, '-c', 'import sys; sys.stdout.write(sys.stdin.read()); sys.exit(4)',
        stdin=PIPE, stdout=PIPE)
    seen_threads.update(t.name for t in threading.enumerate())
    watched = _process.pidfd_watches(loop) if type(loop) is evioloop.Loop else []
    out, _ = await p.communicate(b'through the fallback')
    q = await asyncio.create_subprocess_exec('sleep', '30')
    q.terminate()
    return out, p.returncode, await q.wait(), watched


@pytest.mark.parametrize('how', ['ENOSYS', 'EPERM', 'missing'])
def test_fallback_without_pidfd(monkeypatch, how):
    # where pidfd_open is missing or refused, a waitpid thread per child
    # takes its place. The stock loop runs unpatched (its own watcher on
    # 3.12+ would break without pidfd_open): its answer is the expected one.
    expected = run('stock', _fallback_scenario(set()))
    if how == 'missing':
        monkeypatch.delattr(os, 'pidfd_open', raising=False)
    else:
        def refuse(pid, flags=0):
            raise OSError(getattr(errno, how), os.strerror(getattr(errno, how)))
        monkeypatch.setattr(os, 'pidfd_open', refuse)
    seen_threads = set()
    assert run('evioloop', _fallback_scenario(seen_threads)) == expected
    assert expected == (b'through the fallback', 4, -signal.SIGTERM, [])
    assert any(name.startswith('evioloop-waitpid-') for name in seen_threads)


def test_no_child_watcher_is_used(monkeypatch):
    # evioloop never asks asyncio for a child watcher (3.12+ warns there, and
    # 3.14 has none): with get_child_watcher broken it still runs children
    def broken():
        raise AssertionError('get_child_watcher() called')
    monkeypatch.setattr(asyncio.events, 'get_child_watcher', broken, raising=False)

    async def main():
        with warnings.catch_warnings():
            warnings.simplefilter('error', DeprecationWarning)
            p = await asyncio.create_subprocess_exec('sh', '-c', 'exit 9')
            return await p.wait()
    assert run('evioloop', main()) == 9


def test_subprocess_on_a_closed_loop():
    def attempt(factory):
        loop = factory()
        loop.close()
        coro = loop.subprocess_exec(asyncio.SubprocessProtocol, 'true')
        try:
            loop.run_until_complete(coro)
        except RuntimeError as exc:
            return type(exc).__name__, str(exc)
        finally:
            coro.close()
        return None
    got = attempt(evioloop.new_event_loop)
    assert got == attempt(asyncio.SelectorEventLoop) == ('RuntimeError', 'Event loop is closed')


def test_loop_closed_with_a_child_running_leaves_no_zombie():
    # the pidfd goes with the loop; the child is still reaped when it ends
    # (a zombie keeps its /proc entry until it is reaped)
    loop = evioloop.new_event_loop()
    try:
        proc = loop.run_until_complete(asyncio.create_subprocess_exec(
            PY, '-c', 'import time; time.sleep(0.2)'))
    finally:
        loop.close()
    pid = proc.pid
    waited = threading.Event()
    for _ in range(200):
        if not os.path.exists(f'/proc/{pid}'):
            break
        waited.wait(0.025)
    reaped = not os.path.exists(f'/proc/{pid}')
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', ResourceWarning)
        proc._transport.close()
    assert reaped


@pytest.mark.skipif(not hasattr(__import__('fcntl'), 'F_GETPIPE_SZ'),
                    reason='the pipe size is a Linux setting')
def test_a_childs_pipes_are_grown_and_a_callers_pipe_is_not():
    # evioloop grows the pipes it makes for a child to 256 KiB (one read or
    # write then moves 4x the Linux default); a pipe a caller hands to
    # connect_read_pipe is theirs and keeps its size, as on the stock loop
    import fcntl

    async def main():
        loop = asyncio.get_running_loop()
        p = await asyncio.create_subprocess_exec(
            'cat', stdin=PIPE, stdout=PIPE)
        sizes = [fcntl.fcntl(s.get_extra_info('pipe').fileno(), fcntl.F_GETPIPE_SZ)
                 for s in (p.stdin.transport, p.stdout._transport)]
        out, _ = await p.communicate(b'x' * 300_000)
        r, w = os.pipe()
        before = fcntl.fcntl(r, fcntl.F_GETPIPE_SZ)
        transport, _ = await loop.connect_read_pipe(asyncio.Protocol, os.fdopen(r, 'rb', 0))
        after = fcntl.fcntl(r, fcntl.F_GETPIPE_SZ)
        transport.close()
        os.close(w)
        await asyncio.sleep(0)
        return sizes, len(out), before == after
    stock_sizes, n, kept = run('stock', main())
    assert (n, kept) == (300_000, True)
    assert stock_sizes[0] == stock_sizes[1] < 256 * 1024     # the kernel's default
    sizes, n, kept = run('evioloop', main())
    assert (n, kept) == (300_000, True)
    # 256 KiB, unless the user's pipe quota (fs.pipe-user-pages-soft) refused it
    assert sizes in ([256 * 1024] * 2, stock_sizes), sizes
