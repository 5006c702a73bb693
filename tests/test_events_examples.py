"""The examples of examples/ served for real: echo, HTTP/1.1 and Redis.

Each server runs in the test's own loop with `evioloop.listen()`, in every
mode: native on evioloop, portable on evioloop (`tcp-net://`), portable on
the stock loop and on uvloop. The clients are asyncio streams on the same
loop and the assertions are on the exact bytes that come back. Each example
is also run as its one command (`python examples/NAME.py --addr ...`) in a
subprocess, and the Redis one is driven by redis-cli and redis-benchmark
when redis-tools is installed. The parsers are tested on their own in
tests/test_examples_parsers.py.
"""
import asyncio
import functools
import os
import random
import re
import select
import shutil
import subprocess
import sys

import pytest

import evioloop
from examples_loader import ROOT, load_example  # noqa: F401


echo, http, rs = (load_example(n) for n in ('echo', 'http_server', 'redis_server'))

MODES = ['native', 'net', 'stock', 'uvloop']
TIMEOUT = 10           # any one wait for the server


def loop_factory(mode):
    if mode in ('native', 'net'):
        return evioloop.new_event_loop
    if mode == 'stock':
        return asyncio.SelectorEventLoop
    try:
        import uvloop
    except ImportError:
        pytest.skip('uvloop is not installed')
    return uvloop.new_event_loop


def _warm_up_uvloop():
    # uvloop's first loop opens a pipe pair (libuv's signal pipe) that stays
    # open for the life of the process: open it before any test's fd check
    try:
        import uvloop
    except ImportError:
        return
    uvloop.new_event_loop().close()


_warm_up_uvloop()


@pytest.fixture(params=MODES)
def mode(request):
    return request.param


def serve(mode, events, client, timeout=60):
    """Serve `events` on a free port in `mode`, run `await client(port)`, stop.

    Fails on anything that reached the loop's exception handler.
    """
    addr = ('tcp-net' if mode == 'net' else 'tcp') + '://127.0.0.1:0'
    errors = []

    async def main():
        asyncio.get_running_loop().set_exception_handler(lambda lp, ctx: errors.append(ctx))
        server = await asyncio.wait_for(evioloop.listen(events, addr), TIMEOUT)
        async with server:
            return await asyncio.wait_for(client(server.addrs[0][1]), timeout)

    loop = loop_factory(mode)()
    assert isinstance(loop, evioloop.Loop) == (mode in ('native', 'net'))
    try:
        result = loop.run_until_complete(main())
        loop.run_until_complete(loop.shutdown_default_executor())
    finally:
        loop.close()
    assert not errors, '; '.join(f"{c.get('message')!r} {c.get('exception')!r}"
                                 for c in errors)
    return result


class Client:
    """An asyncio stream connection with bounded reads."""

    @classmethod
    async def open(cls, port):
        self = cls()
        self.reader, self.writer = await asyncio.wait_for(
            asyncio.open_connection('127.0.0.1', port), TIMEOUT)
        return self

    async def send(self, data):
        self.writer.write(data)
        await self.writer.drain()

    async def send_in_pieces(self, data, rng, most=7):
        """`data` in random small writes, the loop let run between them."""
        i = 0
        while i < len(data):
            k = rng.randint(1, most)
            await self.send(data[i:i + k])
            i += k
            await asyncio.sleep(0 if rng.random() < 0.7 else 0.001)

    async def recv(self, n):
        return await asyncio.wait_for(self.reader.readexactly(n), TIMEOUT)

    async def recv_to_eof(self):
        return await asyncio.wait_for(self.reader.read(), TIMEOUT)

    async def exchange(self, data, expected):
        await self.send(data)
        assert await self.recv(len(expected)) == expected

    async def close(self):
        self.writer.close()
        try:
            await asyncio.wait_for(self.writer.wait_closed(), TIMEOUT)
        except ConnectionError:
            pass


# ------------------------------------------------------------------------ echo

def test_echo(mode):
    async def client(port):
        c = await Client.open(port)
        await c.exchange(b'hello', b'hello')
        big = random.Random(1).randbytes(1 << 20)
        await c.exchange(big, big)
        c.writer.write_eof()
        assert await c.recv_to_eof() == b''
        await c.close()

    serve(mode, echo.EchoServer(), client)


# ------------------------------------------------------------------------ HTTP

OK_HEAD = b'HTTP/1.1 200 OK\r\nContent-Length: 13\r\nContent-Type: text/plain\r\n'
OK = OK_HEAD + b'\r\nHello, World!'
OK_CLOSE = OK_HEAD + b'Connection: close\r\n\r\nHello, World!'
OK_NO_BODY = OK_HEAD + b'\r\n'          # the answer to HEAD


def http_error(status, reason, detail):
    body = b'%d %s: %s\n' % (status, reason, detail)
    return (b'HTTP/1.1 %d %s\r\nContent-Length: %d\r\nContent-Type: text/plain\r\n'
            b'Connection: close\r\n\r\n%s' % (status, reason, len(body), body))


def request(method=b'GET', body=None, extra=b''):
    head = b'%s /x?y=1 HTTP/1.1\r\nHost: test\r\nUser-Agent: t\r\n' % method + extra
    if body is not None:
        head += b'Content-Length: %d\r\n' % len(body)
    return head + b'\r\n' + (body or b'')


def fifty_requests(seed):
    """50 GET, HEAD and POST requests and the answers they get, in order."""
    rng = random.Random(seed)
    reqs, answers = [], []
    for _ in range(50):
        kind = rng.choice(['GET', 'HEAD', 'POST'])
        if kind == 'POST':
            reqs.append(request(b'POST', rng.randbytes(rng.randint(0, 3000))))
        else:
            reqs.append(request(kind.encode()))
        answers.append(OK_NO_BODY if kind == 'HEAD' else OK)
    return b''.join(reqs), b''.join(answers)


def test_http_keep_alive(mode):
    async def client(port):
        c = await Client.open(port)
        for _ in range(3):
            await c.exchange(request(), OK)
        await c.exchange(request(b'HEAD'), OK_NO_BODY)
        await c.exchange(request(b'POST', b'{"a": 1}'), OK)
        await c.close()

    serve(mode, http.HTTPServer(), client)


@pytest.mark.parametrize('split', ['one send', 'random splits'])
def test_http_50_pipelined_requests_answered_in_order(mode, split):
    data, answers = fifty_requests(seed=len(split))

    async def client(port):
        c = await Client.open(port)
        if split == 'one send':
            await c.send(data)
        else:
            rng = random.Random(7)
            pieces = sorted(rng.sample(range(1, len(data)), 60))
            for a, b in zip([0] + pieces, pieces + [len(data)], strict=True):
                await c.send(data[a:b])
                await asyncio.sleep(0 if rng.random() < 0.5 else 0.001)
        assert await c.recv(len(answers)) == answers
        await c.exchange(request(extra=b'Connection: close\r\n'), OK_CLOSE)
        assert await c.recv_to_eof() == b''
        await c.close()

    serve(mode, http.HTTPServer(), client)


def test_http_connection_close(mode):
    async def client(port):
        c = await Client.open(port)
        # the third request comes after the close: it is not answered
        await c.send(request() + request(extra=b'Connection: close\r\n') + request())
        assert await c.recv_to_eof() == OK + OK_CLOSE
        await c.close()
        c = await Client.open(port)           # HTTP/1.0 closes unless asked not to
        await c.exchange(b'GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n',
                         OK_HEAD + b'Connection: keep-alive\r\n\r\nHello, World!')
        await c.send(b'GET / HTTP/1.0\r\n\r\n')
        assert await c.recv_to_eof() == OK_CLOSE
        await c.close()

    serve(mode, http.HTTPServer(), client)


@pytest.mark.parametrize('data, answer', [
    (b'garbage\r\n', http_error(400, b'Bad Request', b'malformed request line')),
    (request() + b'GET / HTTP/1.1\r\nHost: x\r\nno colon\r\n\r\n' + request(),
     OK + http_error(400, b'Bad Request', b'malformed header line')),
    (b'GET / HTTP/1.1\r\nHost: x\r\nX: ' + b'a' * 9000,
     http_error(431, b'Request Header Fields Too Large', b'request head too large')),
    (request(extra=b'Transfer-Encoding: chunked\r\n'),
     http_error(501, b'Not Implemented', b'Transfer-Encoding is not supported')),
], ids=['garbage', 'bad header after a good request', 'head too large', 'chunked'])
def test_http_bad_request_is_answered_and_closed(mode, data, answer):
    async def client(port):
        c = await Client.open(port)
        await c.send(data)
        assert await c.recv_to_eof() == answer
        await c.close()

    serve(mode, http.HTTPServer(), client)


def test_http_body_in_pieces(mode):
    body = random.Random(3).randbytes(5000)

    async def client(port):
        c = await Client.open(port)
        await c.send_in_pieces(request(b'POST', body) + request(), random.Random(4), most=900)
        assert await c.recv(2 * len(OK)) == OK + OK
        await c.close()

    serve(mode, http.HTTPServer(), client)


# ----------------------------------------------------------------------- Redis

def resp(*args):
    return b'*%d\r\n' % len(args) + b''.join(b'$%d\r\n%s\r\n' % (len(a), a) for a in args)


COMMANDS = [            # (command, its reply), run in this order on one connection
    (resp(b'PING'), b'+PONG\r\n'),
    (resp(b'PING', b'hi there'), b'$8\r\nhi there\r\n'),
    (resp(b'ECHO', b'a\r\nb\x00'), b'$5\r\na\r\nb\x00\r\n'),
    (resp(b'GET', b'k'), b'$-1\r\n'),
    (resp(b'SET', b'k', b'v' * 1000), b'+OK\r\n'),
    (resp(b'GET', b'k'), b'$1000\r\n' + b'v' * 1000 + b'\r\n'),
    (resp(b'SET', b'k2', b''), b'+OK\r\n'),
    (resp(b'GET', b'k2'), b'$0\r\n\r\n'),
    (resp(b'EXISTS', b'k', b'k2', b'nope', b'k'), b':3\r\n'),
    (resp(b'DEL', b'k', b'nope', b'k2', b'k'), b':2\r\n'),
    (resp(b'EXISTS', b'k'), b':0\r\n'),
    (resp(b'INCR', b'n'), b':1\r\n'),
    (resp(b'INCR', b'n'), b':2\r\n'),
    (resp(b'GET', b'n'), b'$1\r\n2\r\n'),
    (resp(b'SET', b'n', b'1.5'), b'+OK\r\n'),
    (resp(b'INCR', b'n'), b'-ERR value is not an integer or out of range\r\n'),
    (resp(b'set', b'k', b'v', b'NX'), b'+OK\r\n'),
    (resp(b'SET', b'k', b'w', b'NX'), b'$-1\r\n'),
    (resp(b'SET', b'k', b'w', b'EX', b'100', b'GET'), b'$1\r\nv\r\n'),
    (resp(b'GET', b'k'), b'$1\r\nw\r\n'),
    (resp(b'SET', b'k', b'v', b'BOGUS'), b'-ERR syntax error\r\n'),
    (resp(b'GET'), b"-ERR wrong number of arguments for 'get' command\r\n"),
    (resp(b'NOPE', b'a', b'b'), b"-ERR unknown command 'NOPE', with args beginning with: "
                                b"'a' 'b' \r\n"),
    (resp(b'CONFIG', b'GET', b'save'), b'*2\r\n$4\r\nsave\r\n$0\r\n\r\n'),
    (resp(b'CONFIG', b'GET', b'appendonly'), b'*2\r\n$10\r\nappendonly\r\n$2\r\nno\r\n'),
    (resp(b'COMMAND', b'DOCS'), b'*0\r\n'),
    (resp(b'SELECT', b'0'), b'+OK\r\n'),
    (resp(b'DBSIZE'), b':2\r\n'),
]


def test_redis_every_command(mode):
    async def client(port):
        c = await Client.open(port)
        for cmd, reply in COMMANDS:
            await c.exchange(cmd, reply)
        await c.send(resp(b'QUIT'))
        assert await c.recv_to_eof() == b'+OK\r\n'
        await c.close()

    serve(mode, rs.RedisServer(), client)


def hundred_commands():
    cmds, replies = [], []
    for i in range(25):
        key = b'key:%d' % i
        cmds += [resp(b'SET', key, b'v%d' % i), resp(b'INCR', b'counter'),
                 resp(b'GET', key), resp(b'EXISTS', key, b'nope')]
        replies += [b'+OK\r\n', b':%d\r\n' % (i + 1), b'$%d\r\nv%d\r\n' % (len(b'%d' % i) + 1, i),
                    b':1\r\n']
    return b''.join(cmds), b''.join(replies)


def test_redis_100_pipelined_commands_in_one_write(mode):
    cmds, replies = hundred_commands()

    async def client(port):
        c = await Client.open(port)
        await c.exchange(cmds, replies)
        await c.close()

    serve(mode, rs.RedisServer(), client)


def test_redis_in_tiny_writes(mode):
    cmds, replies = hundred_commands()
    cmds += b'ECHO "in line"\r\n'
    replies += b'$7\r\nin line\r\n'

    async def client(port):
        c = await Client.open(port)
        await c.send_in_pieces(cmds, random.Random(5), most=3)
        assert await c.recv(len(replies)) == replies
        await c.close()

    serve(mode, rs.RedisServer(), client)


def test_redis_inline_commands(mode):
    async def client(port):
        c = await Client.open(port)
        await c.exchange(b'PING\r\n', b'+PONG\r\n')
        await c.exchange(b'SET greeting "hello world"\r\nGET greeting\n\r\n'
                         b"  echo 'it\\'s'  \r\n",
                         b'+OK\r\n$11\r\nhello world\r\n$4\r\nit\'s\r\n')
        await c.exchange(b'PING\r\n' + resp(b'PING') + b'PING x\r\n',
                         b'+PONG\r\n+PONG\r\n$1\r\nx\r\n')
        await c.close()

    serve(mode, rs.RedisServer(), client)


@pytest.mark.parametrize('data, answer', [
    (b'PING\r\n*1\r\n$x\r\nPING\r\n', b'+PONG\r\n-ERR Protocol error: invalid bulk length\r\n'),
    (b'*1\r\n#4\r\nPING\r\n', b"-ERR Protocol error: expected '$', got '#'\r\n"),
    (b'*x\r\n', b'-ERR Protocol error: invalid multibulk length\r\n'),
    (b'ECHO "unbalanced\r\n', b'-ERR Protocol error: unbalanced quotes in request\r\n'),
    (b'x' * 70000, b'-ERR Protocol error: too big inline request\r\n'),
    (b'QUIT\r\nPING\r\n', b'+OK\r\n'),
])
def test_redis_protocol_error_is_answered_and_closed(mode, data, answer):
    async def client(port):
        c = await Client.open(port)
        await c.send(data)
        assert await c.recv_to_eof() == answer
        await c.close()

    serve(mode, rs.RedisServer(), client)


def redis_tool(name):
    exe = shutil.which(name)
    if exe is None:
        pytest.skip('redis-tools is not installed')
    return exe


def test_redis_cli_reads_back_what_it_wrote(mode):
    cli = redis_tool('redis-cli')

    async def client(port):
        def run(*args):
            p = subprocess.run([cli, '-h', '127.0.0.1', '-p', str(port), *args],
                               capture_output=True, timeout=30, stdin=subprocess.DEVNULL)
            assert p.returncode == 0, p
            return p.stdout
        loop = asyncio.get_running_loop()
        for args, out in [(('SET', 'k', 'v v'), b'OK\n'), (('GET', 'k'), b'v v\n'),
                          (('INCR', 'n'), b'1\n'), (('DEL', 'k', 'n'), b'2\n'),
                          (('GET', 'k'), b'\n'), (('PING',), b'PONG\n')]:
            assert await loop.run_in_executor(None, functools.partial(run, *args)) == out

    serve(mode, rs.RedisServer(), client, timeout=120)


# ------------------------------------------------------- the one-command examples

def start_example(name):
    """`python examples/NAME.py --addr tcp://127.0.0.1:0`; the process and its port."""
    env = dict(os.environ)
    # the evioloop this test imported, whether installed or built in place
    env['PYTHONPATH'] = os.pathsep.join(
        [os.path.dirname(os.path.dirname(evioloop.__file__))]
        + ([env['PYTHONPATH']] if env.get('PYTHONPATH') else []))
    proc = subprocess.Popen([sys.executable, os.path.join(ROOT, 'examples', name + '.py'),
                             '--addr', 'tcp://127.0.0.1:0'],
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env)
    try:
        ready, _, _ = select.select([proc.stdout], [], [], 30)
        line = proc.stdout.readline().decode() if ready else ''
        m = re.fullmatch(r'\w+: serving on 127\.0\.0\.1:(\d+)\n', line)
        assert m, f'{name}.py said {line!r}, exit code {proc.poll()}'
    except BaseException:
        stop_example(proc)
        raise
    return proc, int(m.group(1))


def stop_example(proc):
    proc.terminate()
    try:
        _, err = proc.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
    assert b'Traceback' not in err, err.decode(errors='replace')


def talk(port, data, expected):
    """Send on a blocking socket; read exactly len(expected) bytes (bounded)."""
    import socket
    with socket.create_connection(('127.0.0.1', port), timeout=TIMEOUT) as s:
        s.sendall(data)
        got = b''
        while len(got) < len(expected):
            chunk = s.recv(65536)
            if not chunk:
                break
            got += chunk
        return got


@pytest.mark.parametrize('name, data, expected', [
    ('echo', b'hello, echo', b'hello, echo'),
    ('http_server', request() * 3, OK * 3),
    ('redis_server', resp(b'SET', b'a', b'1') + b'INCR a\r\nGET a\r\n',
     b'+OK\r\n:2\r\n$1\r\n2\r\n'),
], ids=['echo', 'http', 'redis'])
def test_example_as_one_command(name, data, expected):
    proc, port = start_example(name)
    try:
        assert talk(port, data, expected) == expected
    finally:
        stop_example(proc)


def test_redis_benchmark_reports_no_errors():
    bench = redis_tool('redis-benchmark')
    proc, port = start_example('redis_server')
    try:
        p = subprocess.run([bench, '-h', '127.0.0.1', '-p', str(port), '-t', 'ping,set,get,incr',
                            '-n', '200000', '-P', '16', '-q'],
                           capture_output=True, timeout=300, stdin=subprocess.DEVNULL)
    finally:
        stop_example(proc)
    out = (p.stdout + p.stderr).decode(errors='replace')
    assert p.returncode == 0, out
    assert 'error' not in out.lower() and 'warning' not in out.lower(), out
    # -q: one "NAME: N requests per second" line per test (after \r progress lines)
    finals = dict(re.findall(r'(?:^|[\r\n])([A-Z_]+): ([\d.]+) requests per second', out))
    assert sorted(finals) == ['GET', 'INCR', 'PING_INLINE', 'PING_MBULK', 'SET'], out
    assert all(float(v) > 0 for v in finals.values()), finals
