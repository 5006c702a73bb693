"""Property tests of the examples' protocol code (examples/redis_server.py, http_server.py).

The servers' `data()` is called directly with a stand-in conn (no sockets):

1. a valid pipeline of Redis commands (RESP multibulk and inline) or of HTTP
   requests, cut into arbitrary pieces, gets exactly the answers of the same
   bytes fed in one piece, and of a model written here (for Redis a dict of
   bytes: SET/GET/DEL/EXISTS/INCR/PING/ECHO; for HTTP one response per
   request, in order, with the keep-alive rules of HTTP/1.0 and 1.1);
2. arbitrary bytes never make `data()` raise: it answers, or answers with its
   error reply (a RESP error, an HTTP 4xx/5xx) and asks to close;
3. the fast path (`data()`: one CRLF split / one regex) agrees with the slow
   path (the exact parser, `parse_command` + `Store.execute`, or
   `parse_request` + `response_for`), answer for answer and on the close.
"""
import re

from examples_loader import load_example
from fuzz_helpers import fuzz, split_at
from hypothesis import given
from hypothesis import strategies as st

import evioloop

rs = load_example('redis_server')
http = load_example('http_server')


class Conn:
    context = None


def drive(server, pieces):
    """Feed `pieces` to server.data; (all output, closed?) -- nothing after a close."""
    conn = Conn()
    server.opened(conn)
    out = bytearray()
    for piece in pieces:
        r = server.data(conn, piece)
        if isinstance(r, tuple):
            data, action = r
            out += data or b''
            assert action == evioloop.Action.CLOSE, r
            return bytes(out), True
        out += r or b''
    return bytes(out), False


# -- Redis --------------------------------------------------------------------------

def resp(*args):
    return b'*%d\r\n' % len(args) + b''.join(b'$%d\r\n%s\r\n' % (len(a), a) for a in args)


LLONG_MAX = 2 ** 63 - 1
_REDIS_INT = re.compile(rb'0|-?[1-9][0-9]{0,18}')


class RedisModel:
    """A dict of bytes and the replies Redis gives."""

    def __init__(self):
        self.d = {}

    def run(self, args):
        name, rest = args[0].upper(), args[1:]
        if name == b'PING':
            return b'+PONG\r\n'
        if name == b'ECHO':
            return self.bulk(rest[0])
        if name == b'SET':
            self.d[rest[0]] = rest[1]
            return b'+OK\r\n'
        if name == b'GET':
            return self.bulk(self.d.get(rest[0]))
        if name == b'DEL':
            n = 0
            for k in rest:
                n += self.d.pop(k, None) is not None
            return b':%d\r\n' % n
        if name == b'EXISTS':
            return b':%d\r\n' % sum(k in self.d for k in rest)
        if name == b'INCR':
            old = self.d.get(rest[0], b'0')
            if not _REDIS_INT.fullmatch(old) or int(old) >= LLONG_MAX:
                return b'-ERR value is not an integer or out of range\r\n'
            self.d[rest[0]] = b'%d' % (int(old) + 1)
            return b':%d\r\n' % (int(old) + 1)
        raise AssertionError(name)

    @staticmethod
    def bulk(v):
        return b'$-1\r\n' if v is None else b'$%d\r\n%s\r\n' % (len(v), v)


keys = st.one_of(st.sampled_from([b'a', b'b', b'k1', b'n']), st.binary(min_size=1, max_size=6))
values = st.one_of(st.integers(-10 ** 6, 10 ** 6).map(lambda i: b'%d' % i),
                   st.sampled_from([b'', b'007', b'+1', b'-0', b' 1', b'1.5', b'x',
                                    b'9223372036854775806']),
                   st.binary(max_size=20))
commands = st.one_of(
    st.tuples(st.sampled_from([b'SET', b'set', b'Set']), keys, values),
    st.tuples(st.sampled_from([b'GET', b'get']), keys),
    st.tuples(st.sampled_from([b'INCR', b'incr']), keys),
    st.lists(keys, min_size=1, max_size=3).map(lambda ks: (b'DEL',) + tuple(ks)),
    st.lists(keys, min_size=1, max_size=3).map(lambda ks: (b'EXISTS',) + tuple(ks)),
    st.just((b'PING',)), st.just((b'ping',)),
    st.tuples(st.just(b'ECHO'), values))
_INLINE_SAFE = re.compile(rb'[A-Za-z0-9]+')


@st.composite
def redis_pipelines(draw):
    """(the bytes, the list of commands): each command as RESP or, when it can, inline."""
    cmds = draw(st.lists(commands, min_size=1, max_size=25))
    parts = []
    for c in cmds:
        if all(_INLINE_SAFE.fullmatch(a) for a in c) and draw(st.booleans()):
            parts.append(b' '.join(c) + draw(st.sampled_from([b'\r\n', b'\n'])))
        else:
            parts.append(resp(*c))
    return b''.join(parts), cmds


def redis_reference(pieces):
    """The slow path: parse_command, then Store.execute, in turn."""
    store, tail, out = rs.Store(), b'', bytearray()
    for piece in pieces:
        buf, pos = tail + piece, 0
        while True:
            try:
                args, pos = rs.parse_command(buf, pos)
            except rs.ProtocolError as err:
                return bytes(out + err.reply()), True
            if args is None:
                tail = buf[pos:]
                break
            if args:
                out += store.execute(args)
                if args[0].lower() == b'quit':
                    return bytes(out), True
    return bytes(out), False


@fuzz(80)
@given(redis_pipelines(), st.lists(st.integers(0, 10 ** 6), max_size=30))
def test_redis_pipeline_any_cut_same_answers(pipeline, cuts):
    data, cmds = pipeline
    model = RedisModel()
    want = b''.join(model.run(list(c)) for c in cmds)
    whole = drive(rs.RedisServer(), [data])
    server = rs.RedisServer()
    cut = drive(server, split_at(data, cuts))
    assert whole == (want, False)
    assert cut == (want, False)
    assert redis_reference(split_at(data, cuts)) == (want, False)
    # the keys left are the model's (INCR keeps ints in the store: compare as bytes)
    got = {k: v if isinstance(v, bytes) else b'%d' % v for k, v in server.store.data.items()}
    assert got == model.d


_RESPISH = st.sampled_from([b'*', b'$', b'\r\n', b'\n', b'\r', b'1', b'2', b'3', b'-1', b'0',
                            b'*1\r\n', b'*2\r\n', b'*3\r\n', b'$3\r\n', b'$4\r\n', b'GET',
                            b'SET', b'PING', b'INCR', b'"', b"'", b'\\x4', b' ', b'\x00',
                            b'QUIT', b'*1025\r\n', b'$4096\r\n'])
noisy_redis = st.one_of(
    st.binary(max_size=200),
    st.lists(st.one_of(_RESPISH, st.binary(max_size=4)), max_size=40).map(b''.join),
    redis_pipelines().flatmap(lambda p: st.tuples(st.just(p[0]), st.integers(0, len(p[0])),
                                                  st.binary(max_size=3))).map(
        lambda t: t[0][:t[1]] + t[2] + t[0][t[1] + 1:]))    # one byte replaced


@fuzz(100)
@given(noisy_redis, st.lists(st.integers(0, 10 ** 6), max_size=10))
def test_redis_arbitrary_bytes_never_raise(data, cuts):
    pieces = split_at(data, cuts)
    got = drive(rs.RedisServer(), pieces)       # any exception fails the test
    assert got == redis_reference(pieces)
    assert got == drive(rs.RedisServer(), [data])
    out, closed = got
    if closed and not out.endswith(b'+OK\r\n'):     # (QUIT answers +OK)
        # a close on bad input comes with a protocol error reply, last
        assert out.endswith(b'\r\n') and out[:-2].rsplit(b'\r\n', 1)[-1].startswith(
            b'-ERR Protocol error'), out


# -- HTTP ---------------------------------------------------------------------------

_OK = b'HTTP/1.1 200 OK\r\nContent-Length: 13\r\nContent-Type: text/plain\r\n'


def http_model(method, version, connection):
    """The response to one request, and whether the connection stays open."""
    conn = [t.strip().lower() for t in connection.split(b',')] if connection else []
    keep = (b'close' not in conn) if version == b'1.1' else (
        b'keep-alive' in conn and b'close' not in conn)
    head = _OK
    if not keep:
        head += b'Connection: close\r\n'
    elif version == b'1.0':
        head += b'Connection: keep-alive\r\n'
    body = b'' if method == b'HEAD' else b'Hello, World!'
    return head + b'\r\n' + body, keep


tokens = st.text(st.sampled_from("!#$%&'*+.^_`|~09AZaz-"), min_size=1, max_size=8).map(
    str.encode)
field_values = st.binary(max_size=12).map(
    lambda b: bytes(c for c in b if c >= 0x21 and c != 0x7f)).map(lambda b: b.strip())
extra_headers = st.lists(st.tuples(tokens, field_values), max_size=3).map(
    lambda hs: [(n, v) for n, v in hs if n.lower() not in (
        b'host', b'content-length', b'transfer-encoding', b'connection')])


@st.composite
def http_requests(draw):
    method = draw(st.sampled_from([b'GET', b'HEAD', b'POST', b'PUT', b'OPTIONS']))
    version = draw(st.sampled_from([b'1.1', b'1.1', b'1.0']))
    target = draw(st.sampled_from([b'/', b'/a?b=c', b'*', b'/%20x']))
    connection = draw(st.sampled_from([None, b'close', b'keep-alive', b'Keep-Alive',
                                       b'keep-alive, close', b'upgrade']))
    body = draw(st.one_of(st.none(), st.binary(max_size=30)))
    lines = [b'%s %s HTTP/%s' % (method, target, version)]
    headers = draw(extra_headers)
    if version == b'1.1' or draw(st.booleans()):
        headers.insert(draw(st.integers(0, len(headers))),
                       (draw(st.sampled_from([b'Host', b'host', b'HOST'])), b'h'))
    if connection is not None:
        headers.append((b'Connection', connection))
    if body is not None:
        headers.append((b'Content-Length', b'%d' % len(body)))
    lines += [n + b': ' + v for n, v in headers]
    raw = b'\r\n'.join(lines) + b'\r\n\r\n' + (body or b'')
    return raw, http_model(method, version, connection)


@fuzz(50)
@given(st.lists(http_requests(), min_size=1, max_size=12),
       st.lists(st.integers(0, 10 ** 6), max_size=30))
def test_http_pipeline_any_cut_same_answers(reqs, cuts):
    data = b''.join(raw for raw, _ in reqs)
    want = bytearray()
    closed = False
    for _raw, (response, keep) in reqs:
        want += response
        if not keep:                # nothing after it is answered
            closed = True
            break
    want = (bytes(want), closed)
    assert drive(http.HTTPServer(), [data]) == want
    assert drive(http.HTTPServer(), split_at(data, cuts)) == want
    assert http_reference(split_at(data, cuts)) == want


def http_reference(pieces):
    """The slow path: parse_request until it stops, response_for each request."""
    tail, out = b'', bytearray()
    for piece in pieces:
        buf, pos = tail + piece, 0
        while True:
            try:
                req, pos = http.parse_request(buf, pos)
            except http.HTTPError as err:
                return bytes(out + err.response()), True
            if req is None:
                tail = buf[pos:]
                break
            out += http.response_for(req)
            if not req.keep_alive:
                return bytes(out), True
    return bytes(out), False


_HTTPISH = st.sampled_from([b'GET ', b'HEAD ', b'/ ', b'HTTP/1.1', b'HTTP/1.0', b'HTTP/2.0',
                            b'\r\n', b'\n', b'\r', b'Host: h', b'Content-Length: ', b'5',
                            b'Connection: close', b'Transfer-Encoding: chunked', b':', b' ',
                            b'\t', b'\x00', b'\x80', b'-1'])
noisy_http = st.one_of(
    st.binary(max_size=200),
    st.lists(st.one_of(_HTTPISH, st.binary(max_size=3)), max_size=40).map(b''.join),
    st.lists(http_requests(), min_size=1, max_size=4).flatmap(
        lambda rs_: st.tuples(st.just(b''.join(r for r, _ in rs_)), st.integers(0, 400),
                              st.binary(max_size=3))).map(
        lambda t: t[0][:t[1]] + t[2] + t[0][t[1] + 1:]))


@fuzz(100)
@given(noisy_http, st.lists(st.integers(0, 10 ** 6), max_size=10))
def test_http_arbitrary_bytes_never_raise(data, cuts):
    pieces = split_at(data, cuts)
    got = drive(http.HTTPServer(), pieces)      # any exception fails the test
    assert got == http_reference(pieces)
    assert got == drive(http.HTTPServer(), [data])
    out, closed = got
    if closed:
        # the last response is a 200 with Connection: close, or an error reply
        # (an error body may say "HTTP/1.1" too: find a status line)
        m = list(re.finditer(rb'HTTP/1\.1 ([0-9]{3}) ', out))[-1]
        last, status = out[m.start():], int(m.group(1))
        assert status == 200 or (400 <= status < 600 and b'Connection: close' in last), out
