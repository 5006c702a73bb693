"""The protocol code of examples/http_server.py and examples/redis_server.py, on its own.

No loop and no sockets: the parsers and the Redis command executor are plain
functions, tested here directly (tests/test_events_examples.py runs the
servers). The Redis replies are also compared, byte for byte, with a real
redis-server's when one is installed.
"""
import os
import shutil
import socket
import subprocess
import tempfile
import time

import pytest
from examples_loader import ROOT, load_example  # noqa: F401


http = load_example('http_server')
rs = load_example('redis_server')

GET = b'GET / HTTP/1.1\r\nHost: h\r\n\r\n'
POST = b'POST /p HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello'
HEAD = b'HEAD / HTTP/1.1\r\nHost: h\r\n\r\n'
CLOSE = b'GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n'
OK_200 = (b'HTTP/1.1 200 OK\r\nContent-Length: 13\r\nContent-Type: text/plain\r\n\r\n'
          b'Hello, World!')


# ------------------------------------------------------------------------ HTTP

def test_http_parse_pipelined_requests():
    buf = GET + POST + HEAD + GET[:10]
    reqs, consumed = http.parse_requests(buf)
    assert consumed == len(GET + POST + HEAD)
    assert [(r.method, r.target, r.body) for r in reqs] == [
        (b'GET', b'/', b''), (b'POST', b'/p', b'hello'), (b'HEAD', b'/', b'')]
    assert reqs[1].headers == [(b'host', b'h'), (b'content-length', b'5')]
    assert reqs[1].header(b'content-length') == b'5' and reqs[1].header(b'x') is None
    assert all(r.keep_alive and r.version == (1, 1) for r in reqs)


def test_http_every_split_point_parses_a_prefix():
    whole = GET + POST + HEAD + CLOSE
    full, n = http.parse_requests(whole)
    assert len(full) == 4 and n == len(whole) and not full[-1].keep_alive
    for k in range(len(whole) + 1):
        reqs, consumed = http.parse_requests(whole[:k])
        assert consumed <= k and reqs == full[:len(reqs)]
        rest, _ = http.parse_requests(whole[consumed:])
        assert reqs + rest == full


def test_http_empty_lines_before_a_request_are_skipped():
    assert http.parse_requests(b'\r\n\r\n') == ([], 4)
    reqs, n = http.parse_requests(b'\r\n' + GET)
    assert len(reqs) == 1 and n == 2 + len(GET)


@pytest.mark.parametrize('version, connection, keep_alive', [
    (b'1.1', None, True), (b'1.1', b'close', False), (b'1.1', b'keep-alive, Close', False),
    (b'1.0', None, False), (b'1.0', b'keep-alive', True), (b'1.0', b'Keep-Alive', True),
    (b'1.0', b'keep-alive, close', False),
])
def test_http_keep_alive_rules(version, connection, keep_alive):
    head = b'GET / HTTP/' + version + b'\r\nHost: h\r\n'
    if connection is not None:
        head += b'Connection: ' + connection + b'\r\n'
    (req,), _ = http.parse_requests(head + b'\r\n')
    assert req.keep_alive is keep_alive


def test_http_responses():
    (get, post, head, close), _ = http.parse_requests(GET + POST + HEAD + CLOSE)
    assert http.response_for(get) == http.response_for(post) == OK_200
    assert http.response_for(head) == OK_200[:-13]
    assert http.response_for(close) == OK_200.replace(
        b'text/plain\r\n', b'text/plain\r\nConnection: close\r\n')
    (ka10,), _ = http.parse_requests(b'GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n')
    assert b'\r\nConnection: keep-alive\r\n' in http.response_for(ka10)


@pytest.mark.parametrize('buf, status', [
    (b'garbage\r\n', 400),
    (b'GET /\r\n', 400),
    (b'GET  / HTTP/1.1\r\n', 400),
    (b'G(T / HTTP/1.1\r\n', 400),
    (b'GET / HTTP/1.1 \r\n', 400),
    (b'GET / HTTX/1.1\r\n', 400),
    (b'GET / HTTP/2.0\r\n', 505),
    (b'GET / HTTP/1.1\r\n\r\n', 400),                              # no Host
    (b'GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n', 400),
    (b'GET / HTTP/1.1\r\nHost: h\r\nNo colon\r\n\r\n', 400),
    (b'GET / HTTP/1.1\r\nHost: h\r\nBad name: v\r\n\r\n', 400),
    (b'GET / HTTP/1.1\r\nHost: h\r\n folded\r\n\r\n', 400),
    (b'GET / HTTP/1.1\r\nHost: h\r\nX: a\nb\r\n\r\n', 400),
    (b'GET / HTTP/1.1\r\nHost: h\r\nX: a\x00\r\n\r\n', 400),
    (b'GET / HTTP/1.1\r\nHost: h\r\nContent-Length: -1\r\n\r\n', 400),
    (b'GET / HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n', 400),
    (b'GET / HTTP/1.1\r\nHost: h\r\nContent-Length: 9999999\r\n\r\n', 413),
    (b'GET / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n', 501),
    (b'GET /' + b'a' * 9000, 431),
    (b'GET / HTTP/1.1\r\nHost: h\r\nX: ' + b'a' * 9000, 431),
])
def test_http_bad_requests(buf, status):
    with pytest.raises(http.HTTPError) as info:
        http.parse_requests(buf)
    assert info.value.status == status
    resp = info.value.response()
    assert resp.startswith(b'HTTP/1.1 %d ' % status)
    head, _, body = resp.partition(b'\r\n\r\n')
    assert b'\r\nConnection: close' in head
    assert b'\r\nContent-Length: %d\r\n' % len(body) in head + b'\r\n'


def test_http_bad_request_after_good_ones():
    buf = GET + GET + b'garbage\r\n\r\n'
    reqs, consumed = http.parse_requests(buf)
    assert len(reqs) == 2 and consumed == 2 * len(GET)
    with pytest.raises(http.HTTPError):
        http.parse_requests(buf[consumed:])


def test_http_head_limit_is_inclusive():
    head = b'GET / HTTP/1.1\r\nHost: h\r\nX: '
    head += b'a' * (8192 - len(head) - 4) + b'\r\n\r\n'
    assert len(head) == http.MAX_HEAD
    assert len(http.parse_requests(head)[0]) == 1
    with pytest.raises(http.HTTPError) as info:
        http.parse_requests(head[:-4] + b'a\r\n\r\n')
    assert info.value.status == 431
    assert http.parse_requests(head[:-1]) == ([], 0)     # not too long yet: wait


def test_http_incomplete_body_waits():
    assert http.parse_requests(POST[:-1]) == ([], 0)
    assert http.parse_request(b'x' + POST, 1)[1] == 1 + len(POST)


# ----------------------------------------------------------------------- Redis

def resp(*args):
    return b'*%d\r\n' % len(args) + b''.join(b'$%d\r\n%s\r\n' % (len(a), a) for a in args)


@pytest.mark.parametrize('s, value', [
    (b'0', 0), (b'1', 1), (b'-1', -1), (b'9223372036854775807', 2 ** 63 - 1),
    (b'-9223372036854775808', -2 ** 63), (b'9223372036854775808', None), (b'', None),
    (b'-', None), (b'01', None), (b'-0', None), (b'+1', None), (b' 1', None), (b'1 ', None),
    (b'1x', None), (b'\xd9\xa1', None), (b'1' * 21, None),
])
def test_redis_string2ll(s, value):
    assert rs.string2ll(s) == value


@pytest.mark.parametrize('line, args', [
    (b'', []), (b'   ', []), (b'PING', [b'PING']), (b'  SET  a\tb ', [b'SET', b'a', b'b']),
    (b'ECHO "a b"', [b'ECHO', b'a b']), (b"ECHO 'a b'", [b'ECHO', b'a b']),
    (b'ECHO ""', [b'ECHO', b'']),
    (b'ECHO "\\x41\\n\\r\\t\\b\\a\\q\\""', [b'ECHO', b'A\n\r\t\b\aq"']),
    (b'ECHO "\\x4g"', [b'ECHO', b'x4g']), (b"ECHO 'it\\'s' '\\n'", [b'ECHO', b"it's", b'\\n']),
    (b'a"b c"', [b'ab c']), (b'ECHO a\x00b', [b'ECHO', b'a']), (b'a\vb', [b'a\vb']),
    (b'ECHO "a', None), (b"ECHO 'a", None), (b'ECHO "a"b', None), (b"ECHO 'a'b", None),
    (b'ECHO "a\\', None),
])
def test_redis_split_args(line, args):
    assert rs.split_args(line) == args


def test_redis_parse_resp_and_inline():
    buf = (resp(b'SET', b'k', b'a\r\nb') + b'PING\r\n' + b'\r\n' + b'*0\r\n' + b'*-1\r\n'
           + b'ECHO x\n' + resp(b'GET', b'') + b'*1\r\n$4\r\nPI')
    cmds, consumed = rs.parse_commands(buf)
    assert cmds == [[b'SET', b'k', b'a\r\nb'], [b'PING'], [b'ECHO', b'x'], [b'GET', b'']]
    assert buf[consumed:] == b'*1\r\n$4\r\nPI'
    assert rs.parse_command(buf, 0) == ([b'SET', b'k', b'a\r\nb'], len(resp(b'SET', b'k',
                                                                            b'a\r\nb')))


def test_redis_every_split_point_parses_a_prefix():
    whole = resp(b'SET', b'key', b'v' * 20) + b'INCR "n"\r\n' + resp(b'GET', b'key') + b'PING\n'
    full, n = rs.parse_commands(whole)
    assert len(full) == 4 and n == len(whole)
    for k in range(len(whole) + 1):
        cmds, consumed = rs.parse_commands(whole[:k])
        assert consumed <= k and cmds == full[:len(cmds)]
        rest, _ = rs.parse_commands(whole[consumed:])
        assert cmds + rest == full


@pytest.mark.parametrize('buf, message', [
    (b'*x\r\n', b'invalid multibulk length'),
    (b'*\r\n', b'invalid multibulk length'),
    (b'*2147483648\r\n', b'invalid multibulk length'),
    (b'*1\r\n#4\r\nPING\r\n', b"expected '$', got '#'"),
    (b'*1\r\n$-1\r\n', b'invalid bulk length'),
    (b'*1\r\n$536870913\r\n', b'invalid bulk length'),
    (b'*1\r\n$04\r\nPING\r\n', b'invalid bulk length'),
    (b'ECHO "a\r\n', b'unbalanced quotes in request'),
    (b'x' * 65537, b'too big inline request'),
    (b'*' + b'1' * 65536, b'too big mbulk count string'),
    (b'*1\r\n$' + b'1' * 65536, b'too big bulk count string'),
])
def test_redis_protocol_errors(buf, message):
    with pytest.raises(rs.ProtocolError) as info:
        rs.parse_commands(buf)
    assert info.value.reply() == b'-ERR Protocol error: ' + message + b'\r\n'


def test_redis_protocol_error_after_good_commands():
    buf = b'PING\r\nPING\r\n*1\r\n$x\r\n'
    assert rs.parse_commands(buf) == ([[b'PING'], [b'PING']], 12)
    with pytest.raises(rs.ProtocolError):
        rs.parse_commands(buf[12:])
    assert rs.parse_commands(b'x' * 65536) == ([], 0)       # at the limit: still waiting


class FakeClock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def run_cmds(store, *lines):
    return [store.execute(rs.split_args(line)) for line in lines]


def test_redis_store_strings():
    s = rs.Store()
    assert run_cmds(s, b'PING', b'PING hi', b'ECHO "a b"', b'GET k', b'SET k v', b'GET k',
                    b'set k w', b'get k', b'EXISTS k k nope', b'SET j 1', b'DEL k j nope k',
                    b'EXISTS k j', b'DBSIZE', b'SELECT 0', b'FLUSHALL', b'DBSIZE') == [
        b'+PONG\r\n', b'$2\r\nhi\r\n', b'$3\r\na b\r\n', b'$-1\r\n', b'+OK\r\n',
        b'$1\r\nv\r\n', b'+OK\r\n', b'$1\r\nw\r\n', b':2\r\n', b'+OK\r\n', b':2\r\n',
        b':0\r\n', b':0\r\n', b'+OK\r\n', b'+OK\r\n', b':0\r\n']


def test_redis_store_counters():
    s = rs.Store()
    assert run_cmds(s, b'INCR n', b'INCR n', b'DECR n', b'INCRBY n 10', b'DECRBY n 20',
                    b'GET n', b'SET n x', b'INCR n', b'SET n 01', b'INCR n', b'INCRBY n x',
                    b'SET n 9223372036854775807', b'INCR n', b'GET n',
                    b'DECRBY n -9223372036854775808') == [
        b':1\r\n', b':2\r\n', b':1\r\n', b':11\r\n', b':-9\r\n', b'$2\r\n-9\r\n', b'+OK\r\n',
        b'-ERR value is not an integer or out of range\r\n', b'+OK\r\n',
        b'-ERR value is not an integer or out of range\r\n',
        b'-ERR value is not an integer or out of range\r\n', b'+OK\r\n',
        b'-ERR increment or decrement would overflow\r\n', b'$19\r\n9223372036854775807\r\n',
        b'-ERR decrement would overflow\r\n']


def test_redis_store_set_options_and_expiry():
    clock, wall = FakeClock(), FakeClock()
    s = rs.Store(clock=clock, wallclock=wall)
    assert run_cmds(s, b'SET k v NX', b'SET k w NX', b'SET k w XX GET', b'SET nope v XX',
                    b'SET k v NX XX', b'SET k v EX', b'SET k v EX 0', b'SET k v EX x',
                    b'SET k v KEEPTTL EX 1', b'SET k v FOO', b'GET k', b'SET k v EX 10',
                    b'SET j v PX 1500', b'SET i v EXAT 1002') == [
        b'+OK\r\n', b'$-1\r\n', b'$1\r\nv\r\n', b'$-1\r\n', b'-ERR syntax error\r\n',
        b'-ERR syntax error\r\n', b"-ERR invalid expire time in 'set' command\r\n",
        b'-ERR value is not an integer or out of range\r\n', b'-ERR syntax error\r\n',
        b'-ERR syntax error\r\n', b'$1\r\nw\r\n', b'+OK\r\n', b'+OK\r\n', b'+OK\r\n']
    clock.now += 1.6
    assert run_cmds(s, b'EXISTS k j i', b'SET k w KEEPTTL', b'GET j') == [
        b':2\r\n', b'+OK\r\n', b'$-1\r\n']
    clock.now += 0.5
    assert run_cmds(s, b'EXISTS k i', b'DBSIZE') == [b':1\r\n', b':1\r\n']
    clock.now += 8
    assert run_cmds(s, b'GET k', b'DBSIZE') == [b'$-1\r\n', b':0\r\n']


def test_redis_store_errors_and_introspection():
    s = rs.Store()
    assert run_cmds(s, b'FOO', b'foo a "b c"', b'GET', b'PING a b', b'CONFIG', b'CONFIG GET',
                    b'CONFIG SET save ""', b'COMMAND HELPX', b'CONFIG GET save',
                    b'CONFIG GET APPENDONLY save', b'CONFIG GET nothing*', b'COMMAND DOCS',
                    b'COMMAND', b'COMMAND INFO get set') == [
        b"-ERR unknown command 'FOO', with args beginning with: \r\n",
        b"-ERR unknown command 'foo', with args beginning with: 'a' 'b c' \r\n",
        b"-ERR wrong number of arguments for 'get' command\r\n",
        b"-ERR wrong number of arguments for 'ping' command\r\n",
        b"-ERR wrong number of arguments for 'config' command\r\n",
        b"-ERR wrong number of arguments for 'config|get' command\r\n",
        b"-ERR unknown subcommand 'SET'. Try CONFIG HELP.\r\n",
        b"-ERR unknown subcommand 'HELPX'. Try COMMAND HELP.\r\n",
        b'*2\r\n$4\r\nsave\r\n$0\r\n\r\n',
        b'*4\r\n$10\r\nappendonly\r\n$2\r\nno\r\n$4\r\nsave\r\n$0\r\n\r\n',
        b'*0\r\n', b'*0\r\n', b'*0\r\n', b'*2\r\n*-1\r\n*-1\r\n']
    # user bytes never break the framing of an error reply
    assert s.execute([b'x\r\ny', b'a\nb']) == (
        b"-ERR unknown command 'x  y', with args beginning with: 'a b' \r\n")
    assert s.execute([b'x' * 200, b'y' * 200]) == (
        b"-ERR unknown command '%s', with args beginning with: '%s' \r\n"
        % (b'x' * 128, b'y' * 128))


# ------------------------------------------- the same bytes to a real redis-server

DIFF_CASES = [
    b'PING\r\nPING hi\r\nECHO "a\\x41\\n"\r\nSET k v\r\nGET k\r\nDEL k k\r\nEXISTS k\r\n',
    b'SET n 01\r\nINCR n\r\nSET n 9223372036854775807\r\nINCR n\r\nINCRBY m x\r\nDECR m\r\n',
    b'SET k v NX XX\r\nSET k v EX 0\r\nSET k v PX 9223372036854775807\r\nSET k v GET GET\r\n',
    b'FOO a "b c"\r\nfoo "a\r\nb"\r\nGET\r\nPING a b\r\nCONFIG GET\r\nCONFIG FOO\r\n',
    b'CONFIG GET save\r\nCONFIG GET appendonly\r\nCOMMAND FOO\r\nSELECT x\r\n',
    resp(b'SET', b'k', b'a\x00\r\nb') + resp(b'GET', b'k') + b'*0\r\n\r\n' + resp(b'PI\x00G'),
    b'PING\r\n*1\r\n$4\r\nPINGxx*1\r\n$4\r\nPING\r\n*1\rX$4\rXPING\r\n',
    b'PING\r\n*1\r\n$x\r\nPING\r\n', b'*1\r\n#4\r\n', b'*01\r\n', b'*1\r\n\r\r\n',
    b'ECHO "a"b\r\n', b'ECHO "x\r\n', b'QUIT\r\nPING\r\n',
    # the hot path of data(): PING, GET, SET, INCR, in any spelling, and what it hands on
    (resp(b'SET', b'n', b'9223372036854775806') + resp(b'INCR', b'n') * 2 + resp(b'GET', b'n')
     + resp(b'SET', b'm', b'01') + resp(b'INCR', b'm') + resp(b'incr', b'new')
     + resp(b'GET', b'new')
     + resp(b'get', b'new') + resp(b'Get', b'new') + resp(b'PING') + resp(b'ping') + b'PING\r\n'
     + b'ping\r\n' + resp(b'SET', b'big', b'v' * 5000) + resp(b'GET', b'big') + resp(b'GET')
     + resp(b'GET', b'a', b'b') + resp(b'SET', b'k', b'a\r\nb') + resp(b'GET', b'k')
     + resp(b'INCR', b'k') + resp(b'SET', b'e', b'v', b'EX', b'100') + resp(b'GET', b'e')
     + resp(b'SET', b'e', b'w') + resp(b'INCR', b'e') + resp(b'SET', b'x', b'')
     + resp(b'GET', b'x')),
    resp(b'SET', b'n', b'-5') + resp(b'INCR', b'n') + resp(b'GET', b'n') + resp(b'SET', b'n', b' 1')
    + resp(b'INCR', b'n') + resp(b'SET', b'n', b'1' * 18) + resp(b'INCR', b'n')
    + resp(b'GET', b'n'),
    resp(b'SET', b'k', b'1') + resp(b'DEL', b'k') + resp(b'INCR', b'k') + resp(b'EXISTS', b'k')
    + resp(b'ECHO', b'x') + resp(b'PING', b'x') + resp(b'SET', b'k', b'v', b'GET')
    + resp(b'GET', b'k')
    + resp(b'quit', b'x') + resp(b'PING'),
    resp(b'GET', b'k') + b'ECHO a\nPING\r\n' + resp(b'Quit') + resp(b'PING'),
]


def serve_like_the_example(data):
    """What the example's data() writes for `data` in one piece; True if it closes."""
    class Conn:
        context = None
    server, conn = rs.RedisServer(), Conn()
    server.opened(conn)
    r = server.data(conn, data)
    return (r[0], True) if isinstance(r, tuple) else (r or b'', False)


def test_redis_replies_match_redis_server():
    exe = shutil.which('redis-server')
    if exe is None:
        pytest.skip('redis-server is not installed')
    with tempfile.TemporaryDirectory(prefix='evx-', dir='/tmp') as d:
        path = os.path.join(d, 'redis.sock')
        with subprocess.Popen([exe, '--port', '0', '--unixsocket', path, '--save', '',
                               '--appendonly', 'no', '--dir', d],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) as proc:
            try:
                deadline = time.monotonic() + 20
                while not os.path.exists(path):
                    assert proc.poll() is None and time.monotonic() < deadline, 'no redis-server'
                    time.sleep(0.01)
                for data in DIFF_CASES:
                    assert real_redis(path, data) == serve_like_the_example(data), data
            finally:
                proc.terminate()
                proc.wait(20)


def real_redis(path, data):
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(20)
        s.connect(path)
        s.sendall(b'FLUSHALL\r\n')
        assert s.recv(5) == b'+OK\r\n'
        s.sendall(data + b'*1\r\n$8\r\n__SYNC__\r\n')     # ends the replies in a known way
        got = b''
        while True:
            chunk = s.recv(65536)
            if not chunk:
                return got, True
            got += chunk
            end = got.find(b"-ERR unknown command '__SYNC__'")
            if end >= 0:
                return got[:end], False
