"""The quick paths of the examples' data() against their exact parsers.

RedisServer.data splits its input at CRLFs once and takes the well-formed
commands from the tokens (running PING, GET, SET and INCR on the spot); the
rest goes to parse_command. HTTPServer.data answers a plain head (one regex)
without parse_request. Whatever the bytes and however they are cut into data()
calls, the answers, the close (and the Redis keys) must be those of the
examples as they were: the exact parser called until it stops, each result
answered in turn (the Reference servers below). tests/test_examples_parsers.py
tests the parsers themselves, and the Redis replies against a real redis-server.
"""
import random
from examples_loader import ROOT, load_example  # noqa: F401


rs = load_example('redis_server')
http = load_example('http_server')


def resp(*args):
    return b'*%d\r\n' % len(args) + b''.join(b'$%d\r\n%s\r\n' % (len(a), a) for a in args)


class RedisReference:
    """The Redis example's data() as it was: parse_command, then Store.execute, in turn."""

    def __init__(self):
        self.store, self.tail = rs.Store(), b''

    def data(self, in_):
        buf, out, pos = self.tail + in_, [], 0
        while True:
            try:
                args, pos = rs.parse_command(buf, pos)
            except rs.ProtocolError as err:
                return b''.join(out) + err.reply(), True
            if args is None:
                self.tail = buf[pos:]
                return b''.join(out), False
            if args:
                out.append(self.store.execute(args))
                if args[0].lower() == b'quit':
                    return b''.join(out), True


class Conn:
    context = None


def feed(pieces):
    """The Redis example and its reference fed the same pieces: both answers, call by call."""
    server, conn, ref = rs.RedisServer(), Conn(), RedisReference()
    server.opened(conn)
    got, want = [], []
    for piece in pieces:
        r = server.data(conn, piece)
        got.append((r[0], True) if isinstance(r, tuple) else (r, False))
        want.append(ref.data(piece))
        if want[-1][1]:
            break
    return (got, server.store.data.keys()), (want, ref.store.data.keys())


NAMES = [b'GET', b'get', b'Get', b'SET', b'set', b'INCR', b'incr', b'PING', b'ping', b'ECHO',
         b'DEL', b'EXISTS', b'INCRBY', b'FOO', b'QUIT']
ODD = [b'', b'a\r\nb', b'\r\n', b'\r', b'\n', b'x\x00y', b'$3', b'*2', b'12', b'-1', b'v' * 4096,
       b'\r\n*1\r\n$4\r\nPING', b'9223372036854775807', b'quit']
INLINE = [b'PING\r\n', b'ping\r\n', b'PING\n', b'INCR k1\r\n', b'SET k2 "a b"\r\n', b'GET k2\n',
          b'  \r\n', b'\r\n', b'ECHO a\x00b\r\n', b'PING\r\r\n', b"ECHO 'x' y\r\n", b'PING x\r\n']
QUIRKS = [b'*0\r\n', b'*-1\r\n', b'*1\r\n$4\r\nPINGxx', b'*2\r\n$3\r\nGET\r\n$2\r\nk1\r\n',
          b'*1\r\n$4\r\nPING\r\n*1\r\n$04\r\nPING\r\n']
ERRORS = [b'*x\r\n', b'*1\r\n#4\r\n', b'ECHO "a\r\n', b'x' * 65537, b'*1\r\n$-1\r\n']


def random_pipeline(rng, n=12, errors=True):
    """Commands of every shape the parser knows, some odd; maybe an error or a cut at the end."""
    parts = []
    for _ in range(n):
        k = rng.random()
        if k < 0.55:
            args = [rng.choice(NAMES)] + [rng.choice(ODD) if rng.random() < 0.2
                                          else b'k%d' % rng.randint(0, 3)
                                          for _ in range(rng.choice([0, 1, 1, 2, 2, 3]))]
            parts.append(resp(*args))
        elif k < 0.8:
            parts.append(rng.choice(INLINE))
        elif k < 0.9:
            parts.append(rng.choice(QUIRKS[:-1] if errors else QUIRKS[:-1]) if not errors
                         else rng.choice(QUIRKS))
        elif k < 0.95:
            parts.append(resp(b'SET', b'k%d' % rng.randint(0, 3), rng.choice(ODD)))
        else:
            parts.append(resp(b'SET', b'k%d' % rng.randint(0, 3), b'1', b'EX', b'100'))
    if errors and rng.random() < 0.2:
        parts.append(rng.choice(ERRORS))
    buf = b''.join(parts)
    if rng.random() < 0.3:
        buf = buf[:rng.randint(0, len(buf))]
    return buf


def test_redis_random_pipelines_in_random_pieces():
    rng = random.Random(12)
    for round_ in range(1500):
        data = b''.join(random_pipeline(rng, errors=round_ % 4 == 0) for _ in range(3))
        cuts = sorted(rng.sample(range(1, len(data)), min(len(data) - 1, rng.randint(0, 12))))
        pieces = [data[a:b] for a, b in zip([0] + cuts, cuts + [len(data)], strict=True)]
        got, want = feed(pieces)
        assert got == want, pieces


MIXED = (resp(b'SET', b'k', b'a\r\nb') + resp(b'GET', b'k') + b'PING\r\n' + resp(b'INCR', b'n')
         + resp(b'SET', b'k', b'v' * 5000) + b'ECHO x\nPING\n' + resp(b'INCR', b'n')
         + b'*1\r\n$4\r\nPINGxx' + b'\r\n' + resp(b'ECHO', b'\r\n') + resp(b'DEL', b'k', b'n')
         + resp(b'GET', b'n') + resp(b'EXISTS', b'k') + resp(b'PING'))


def test_redis_a_mixed_pipeline_cut_at_every_offset():
    whole, _ = feed([MIXED])
    assert whole[0][0][0].count(b'\r\n') >= 14
    for k in range(len(MIXED) + 1):
        got, want = feed([MIXED[:k], MIXED[k:]])
        assert got == want, k
        assert b''.join(r for r, _ in got[0]) == whole[0][0][0], k


def test_redis_a_pipeline_one_byte_at_a_time():
    got, want = feed([MIXED[k:k + 1] for k in range(len(MIXED))])
    assert got == want


def test_redis_more_tokens_than_one_split_takes():
    # past _SPLIT tokens the rest is split again, wherever the cut falls
    for extra in (b'', b'x', b'*1\r\n', resp(b'ECHO', b'a\r\nb'), b'PING\n', b'*x\r\n'):
        for pad in range(6):
            buf = b'\r\n' * pad + resp(b'GET', b'k') * 1000 + resp(b'SET', b'k', b'v') * 300 + extra
            got, want = feed([buf, resp(b'GET', b'k')])
            assert got == want, (extra, pad)


def test_redis_hot_commands_with_expiry_and_ints():
    pieces = [resp(b'SET', b'a', b'1', b'EX', b'100'), resp(b'INCR', b'a') + resp(b'GET', b'a')
              + resp(b'SET', b'b', b'x') + resp(b'GET', b'b') + resp(b'INCR', b'c') * 3,
              resp(b'SET', b'a', b'2') + resp(b'GET', b'a') + resp(b'INCR', b'a')
              + resp(b'GET', b'c')
              + resp(b'SET', b'd', b'9223372036854775806') + resp(b'INCR', b'd') * 2]
    got, want = feed(pieces)
    assert got == want
    assert got[0][2][0] == b'+OK\r\n$1\r\n2\r\n:3\r\n$1\r\n3\r\n+OK\r\n:9223372036854775807\r\n' + (
        b'-ERR increment or decrement would overflow\r\n')


# ------------------------------------------------------------------------ HTTP

class HTTPReference:
    """The HTTP example's data() as it was: parse_request, then response_for, in turn."""

    def __init__(self):
        self.tail = b''

    def data(self, in_):
        buf, out, pos = self.tail + in_, [], 0
        while True:
            try:
                req, pos = http.parse_request(buf, pos)
            except http.HTTPError as err:
                return b''.join(out) + err.response(), True
            if req is None:
                self.tail = buf[pos:]
                return b''.join(out), False
            out.append(http.response_for(req))
            if not req.keep_alive:
                return b''.join(out), True


def feed_http(pieces):
    server, conn, ref = http.HTTPServer(), Conn(), HTTPReference()
    server.opened(conn)
    got, want = [], []
    for piece in pieces:
        r = server.data(conn, piece)
        got.append((r[0], r[1] is not http.evioloop.Action.NONE) if isinstance(r, tuple)
                   else (r, False))
        want.append(ref.data(piece))
        if want[-1][1]:
            break
    return got, want


HEADERS = [b'HOST:h', b'host: \th\t', b'User-Agent: t/1', b'Accept: */*', b'Hosts: h',
           b'X: ' + bytes(range(0x21, 0x7f)) + b'\x80\xff', b'Content-Length: 5',
           b'content-length: 0', b'Connection: close', b'CONNECTION: keep-alive',
           b'Connection: Keep-Alive, x', b'X-Host: h', b'X: ' + b'a' * 3000,
           b'Transfer-Encoding: chunked', b'No colon', b' folded', b'X: a\x00', b'X: a\x7f',
           b'Host : h', b'Content-Length: x', b'x' * 100 + b': y']


GOOD = 13          # HEADERS[:GOOD] are well-formed


def random_requests(rng, n=6):
    """Mostly good requests, plain and not, some bad; maybe cut anywhere."""
    parts = []
    for _ in range(n):
        if rng.random() < 0.1:
            parts.append(b'\r\n' * rng.randint(1, 2))
        good = rng.random() < 0.75
        method = rng.choice([b'GET', b'GET', b'HEAD', b'POST']
                            + ([] if good else [b'get', b'G(T', b'']))
        target = rng.choice([b'/', b'/x?y=1', b'/\x80'] + ([] if good else [b'', b'/a b']))
        version = rng.choice([b'HTTP/1.1'] * 4 + [b'HTTP/1.0', b'HTTP/1.2']
                             + ([] if good else [b'HTTP/2.0', b'HTTX/1.1']))
        lines = [rng.choice(HEADERS[:GOOD] if good else HEADERS)
                 for _ in range(rng.choice([0, 1, 1, 2, 2, 3, 4]))]
        if good and rng.random() < 0.8:
            lines.insert(rng.randint(0, len(lines)), b'Host: h')
        head = b' '.join([method, target, version]) + b'\r\n' + b''.join(x + b'\r\n' for x in lines)
        body = b'hello' if b'Content-Length: 5' in head else b''
        parts.append(head + b'\r\n' + body)
    buf = b''.join(parts)
    if rng.random() < 0.3:
        buf = buf[:rng.randint(0, len(buf))]
    return buf


def test_http_random_requests_in_random_pieces():
    rng = random.Random(13)
    for _ in range(3000):
        data = random_requests(rng) or PLAIN
        cuts = sorted(rng.sample(range(1, len(data)), min(len(data) - 1, rng.randint(0, 5))))
        pieces = [data[a:b] for a, b in zip([0] + cuts, cuts + [len(data)], strict=True)]
        got, want = feed_http(pieces)
        assert got == want, pieces


PLAIN = b'GET / HTTP/1.1\r\nHost: h\r\nUser-Agent: t\r\n\r\n'


def test_http_plain_requests_cut_at_every_offset():
    whole = (PLAIN + b'HEAD / HTTP/1.1\r\nhost: h\r\n\r\n' + b'\r\n' + PLAIN
             + b'POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\n\r\nhi' + PLAIN
             + b'GET / HTTP/1.0\r\nHost: h\r\n\r\n' + PLAIN)
    got, want = feed_http([whole])
    assert got == want and got[0][1] and got[0][0].count(b'HTTP/1.1 200') == 6
    full = got[0][0]
    for k in range(len(whole) + 1):
        got, want = feed_http([whole[:k], whole[k:]])
        assert got == want, k
        assert b''.join(r for r, _ in got) == full, k


def test_http_plain_head_at_the_size_limit():
    head = b'GET / HTTP/1.1\r\nHost: h\r\nX: '
    head += b'a' * (http.MAX_HEAD - len(head) - 4) + b'\r\n\r\n'
    assert len(head) == http.MAX_HEAD
    for buf in (head, head[:-4] + b'a\r\n\r\n', PLAIN + head, b'\r\n' + head):
        got, want = feed_http([buf])
        assert got == want


def test_redis_a_big_bulk_in_pieces():
    value = bytes(range(256)) * 1200 + b'\r\n' * 5000            # 317 KB, CRLFs in it
    data = resp(b'SET', b'k', value) + resp(b'GET', b'k') + resp(b'SET', b'k', b'v' * 70000)
    pieces = [data[k:k + 16384] for k in range(0, len(data), 16384)]
    got, want = feed(pieces)
    assert got == want
    assert b''.join(r for r, _ in got[0]) == b'+OK\r\n$%d\r\n%s\r\n+OK\r\n' % (len(value), value)


def test_http_one_plain_request_per_call():
    head = b'HEAD / HTTP/1.1\r\nHost: h\r\n\r\n'
    pieces = [PLAIN, head, PLAIN[:10], PLAIN[10:], PLAIN, PLAIN + head, b'\r\n', PLAIN,
              b'GET / HTTP/1.1\r\nHost: h\r\nHost: h\r\n\r\n', PLAIN]
    got, want = feed_http(pieces)
    assert got == want and len(got) == 9 and got[-1][1]
    assert [r.count(b'200 OK') for r, _ in got] == [1, 1, 0, 1, 1, 2, 0, 1, 0]
