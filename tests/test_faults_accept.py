"""EMFILE on accept, recovered from: a child process lowers RLIMIT_NOFILE with
setrlimit, lets connections pile up until accept() fails with EMFILE, and then
must keep serving: the error goes to the exception handler (as the stock loop
reports it: 'socket.accept() out of system resource', the OSError), the server
keeps its listener, and once the clients' fds are closed new connections are
accepted and echoed byte for byte -- under the same low limit.

In a subprocess because a low fd limit in the test process would break
whatever else pytest opens meanwhile. test_net_robust.py has the in-process
variant (the backlog served once the limit is put back).
"""
import errno
import json
import os
import subprocess
import sys

import pytest

from fault_helpers import LOOP_KINDS, subprocess_env

CHILD = r'''
import asyncio, errno, hashlib, json, os, random, resource, socket, sys
import evioloop
from evioloop.events import Events, listen
from fault_helpers import Echo, sock_echo

kind, api = sys.argv[1], sys.argv[2]
factory = evioloop.new_event_loop if kind == 'evioloop' else asyncio.SelectorEventLoop
PILE = 40          # connections made before the server may accept any
FREE = 6           # fd numbers left free under the lowered limit


def nfds():
    return len(os.listdir('/proc/self/fd')) - 1     # minus the listing's own


async def main():
    loop = asyncio.get_running_loop()
    errors = []
    loop.set_exception_handler(lambda _l, ctx: errors.append(ctx))
    if api == 'protocol':
        server = await loop.create_server(Echo, '127.0.0.1', 0, backlog=128)
        addr = server.sockets[0].getsockname()[:2]
        serving = server.is_serving
        count = None
    else:
        server = await listen(Events(data=lambda c, d: d), 'tcp://127.0.0.1:0')
        addr = server.addrs[0][:2]
        serving = server.is_serving
        count = server.count_connections
    fds_before = nfds()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    # connect PILE clients without yielding to the loop: the kernel completes
    # them from the backlog, none is accepted yet
    clients = [socket.create_connection(addr) for _ in range(PILE)]
    for c in clients:
        c.setblocking(False)
    top = max(int(n) for n in os.listdir('/proc/self/fd'))
    resource.setrlimit(resource.RLIMIT_NOFILE, (top + 1 + FREE, hard))
    # now the loop accepts until it runs out of fds
    for _ in range(300):
        await asyncio.sleep(0.01)
        if errors:
            break
    await asyncio.sleep(0.1)
    out = {'errors': [(c.get('message'), getattr(c.get('exception'), 'errno', None))
                      for c in errors],
           'serving_after_emfile': serving()}
    n_err = len(errors)
    # free the fds: close every client (accepted or still in the backlog)
    for c in clients:
        c.close()
    # new connections, under the same low limit, are accepted and served
    # (the stock loop retries accept after 1 s: wait for that)
    hashes = []
    news = []
    for i in range(3):
        s = socket.socket()
        s.setblocking(False)
        news.append(s)
        await asyncio.wait_for(loop.sock_connect(s, addr), 10)
    payloads = [random.Random(i).randbytes(200_000) for i in range(3)]
    got = await asyncio.gather(*(sock_echo(loop, s, p, timeout=10)
                                 for s, p in zip(news, payloads)))
    out['echo_ok'] = [g == p for g, p in zip(got, payloads)]
    out['hashes_equal'] = [hashlib.sha256(g).digest() == hashlib.sha256(p).digest()
                           for g, p in zip(got, payloads)]
    for s in news:
        s.close()
    # every server-side connection goes away: back to the fds of before
    for _ in range(500):
        if nfds() == fds_before and (count is None or count() == 0):
            break
        await asyncio.sleep(0.01)
    out['fds_back'] = nfds() == fds_before
    out['errors_after_recovery'] = len(errors) - n_err
    out['still_serving'] = serving()
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    if api == 'protocol':
        server.close()
        await server.wait_closed()
    else:
        server.stop()
        await server.wait_closed()
    print(json.dumps(out))


loop = factory()
try:
    loop.run_until_complete(asyncio.wait_for(main(), 20))
finally:
    loop.close()
'''


@pytest.mark.parametrize('api', ['protocol', 'events'])
@pytest.mark.parametrize('kind', LOOP_KINDS)
def test_emfile_on_accept_then_recovery(kind, api):
    # cwd: `python -c` puts the working directory first on sys.path (in a tox
    # env, the repository, whose evioloop has no compiled modules)
    proc = subprocess.run([sys.executable, '-c', CHILD, kind, api], env=subprocess_env(),
                          capture_output=True, text=True, timeout=60,
                          cwd=os.path.dirname(os.path.abspath(__file__)))
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    # the stock loop's report, once per time accept() ran out (it stops
    # watching the listener for ACCEPT_RETRY_DELAY in between)
    assert out['errors'], out
    for message, err in out['errors']:
        assert message == 'socket.accept() out of system resource', out
        assert err == errno.EMFILE, out
    assert out['serving_after_emfile'] is True
    assert out['echo_ok'] == [True, True, True], out
    assert out['hashes_equal'] == [True, True, True], out
    assert out['fds_back'] is True, out
    assert out['still_serving'] is True, out
    # nothing failed once fds were free again: closing the PILE clients frees
    # more fds than the backlog still holds connections to accept
    assert out['errors_after_recovery'] == 0, out
