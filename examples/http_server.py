"""An HTTP/1.1 keep-alive server on evioloop's Events API.

    python examples/http_server.py --port 8080
    python examples/http_server.py --addr tcp-net://127.0.0.1:8080   # portable mode

Every request gets the same small response ("Hello, World!"). Pipelined
requests are answered in order; `Connection: close` (or HTTP/1.0 without
`Connection: keep-alive`) closes the connection after the response; a request
body is read by its Content-Length; a malformed request head gets 400 (an
oversized one 431) and the connection is closed.

The parser (`parse_request`, `parse_requests`) is plain Python with no I/O, so
that it can be tested and fuzzed on its own. `HTTPServer.data` answers the
plainest requests (a well-formed HTTP/1.1 head with one Host and no body or
Connection header) after one regex match, without it, as parse_request would.
"""
import argparse
import re
import sys

import evioloop

MAX_HEAD = 8192            # request line + headers + the blank line
MAX_BODY = 1 << 20         # Content-Length above this gets 413

BODY = b'Hello, World!'
_HEAD = (b'HTTP/1.1 200 OK\r\nContent-Length: %d\r\nContent-Type: text/plain\r\n'
         % len(BODY))
RESPONSE = _HEAD + b'\r\n' + BODY                         # HTTP/1.1 keep-alive
RESPONSE_CLOSE = _HEAD + b'Connection: close\r\n\r\n' + BODY
RESPONSE_KEEP_ALIVE_10 = _HEAD + b'Connection: keep-alive\r\n\r\n' + BODY   # HTTP/1.0
_HEAD_RESPONSE = RESPONSE[:-len(BODY)]

_TOKEN = re.compile(rb"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_TARGET = re.compile(rb'[\x21-\x7e\x80-\xff]+')
_VERSION = re.compile(rb'HTTP/([0-9])\.([0-9])')
_FIELD_VALUE = re.compile(rb'[\x21-\x7e\x80-\xff \t]*')   # VCHAR, obs-text, SP, HTAB
_DIGITS = re.compile(rb'[0-9]{1,18}')
# HTTPServer.data's quick look: a well-formed HTTP/1.1 head with one Host and no
# Content-Length, Transfer-Encoding or Connection header
_FIELD = rb"[!#$%&'*+.^_`|~0-9A-Za-z-]+:[\x21-\x7e\x80-\xff \t]*\r\n"
_OTHER = rb'(?:(?!(?i:host|content-length|transfer-encoding|connection):)' + _FIELD + rb')*'
_PLAIN_HEAD = re.compile(rb"[!#$%&'*+.^_`|~0-9A-Za-z-]+ [\x21-\x7e\x80-\xff]+ HTTP/1\.1\r\n"
                         + _OTHER + rb'(?i:host):[\x21-\x7e\x80-\xff \t]*\r\n' + _OTHER + rb'\r\n')

REASONS = {400: 'Bad Request', 413: 'Content Too Large', 431: 'Request Header Fields Too Large',
           501: 'Not Implemented', 505: 'HTTP Version Not Supported'}


class HTTPError(Exception):
    """A request that cannot be served: answer `status` and close."""

    def __init__(self, status, detail):
        super().__init__(status, detail)
        self.status = status
        self.detail = detail

    def response(self):
        body = f'{self.status} {REASONS[self.status]}: {self.detail}\n'.encode()
        return (b'HTTP/1.1 %d %s\r\nContent-Length: %d\r\nContent-Type: text/plain\r\n'
                b'Connection: close\r\n\r\n%s'
                % (self.status, REASONS[self.status].encode(), len(body), body))


class Request:
    """One parsed request. `headers` keeps (lowercased name, value) in order."""

    __slots__ = ('method', 'target', 'version', 'headers', 'body', 'keep_alive')

    def __init__(self, method, target, version, headers, body, keep_alive):
        self.method = method            # bytes, b'GET'
        self.target = target            # bytes, b'/index.html'
        self.version = version          # (major, minor)
        self.headers = headers          # [(b'host', b'example.com'), ...]
        self.body = body                # bytes
        self.keep_alive = keep_alive    # False: close after the response

    def header(self, name, default=None):
        for k, v in self.headers:
            if k == name:
                return v
        return default

    def __repr__(self):
        return (f'Request({self.method!r}, {self.target!r}, {self.version!r}, '
                f'{len(self.headers)} headers, {len(self.body)} body bytes, '
                f'keep_alive={self.keep_alive})')

    def __eq__(self, other):
        return isinstance(other, Request) and all(
            getattr(self, k) == getattr(other, k) for k in self.__slots__)


def _request_line(line):
    parts = line.split(b' ')
    if len(parts) != 3:
        raise HTTPError(400, 'malformed request line')
    method, target, version = parts
    if not _TOKEN.fullmatch(method):
        raise HTTPError(400, 'malformed method')
    if not _TARGET.fullmatch(target):
        raise HTTPError(400, 'malformed request target')
    m = _VERSION.fullmatch(version)
    if not m:
        raise HTTPError(400, 'malformed HTTP version')
    if m.group(1) != b'1':
        raise HTTPError(505, 'only HTTP/1.x is served')
    return method, target, (1, int(m.group(2)))


def parse_request(buf, pos=0, *, max_head=MAX_HEAD, max_body=MAX_BODY):
    """Parse one request of `buf` starting at `pos`.

    Returns `(request, end)` where `end` is where the next request starts, or
    `(None, pos2)` when `buf` does not hold the whole request yet (`pos2` may be
    past empty lines that came before the request line; keep `buf[pos2:]` and
    call again when more has come). Raises `HTTPError` when the request is
    malformed or too large: answer `err.response()` and close.
    """
    if isinstance(buf, memoryview):     # reuse_input_buffer=True: it has no find()
        buf = bytes(buf)
    n = len(buf)
    while buf.startswith(b'\r\n', pos):      # RFC 9112 2.2: ignore empty lines first
        pos += 2
    line_end = buf.find(b'\r\n', pos, pos + max_head)
    if line_end < 0:
        if n - pos >= max_head:
            raise HTTPError(431, 'request head too large')
        return None, pos
    # the request line can be judged before the headers have come
    method, target, version = _request_line(buf[pos:line_end])
    head_end = buf.find(b'\r\n\r\n', line_end, pos + max_head)
    if head_end < 0:
        if n - pos >= max_head:
            raise HTTPError(431, 'request head too large')
        return None, pos
    headers = []
    lengths = set()
    connection = []
    hosts = 0
    if head_end > line_end:
        for line in buf[line_end + 2:head_end].split(b'\r\n'):
            name, colon, value = line.partition(b':')
            if not colon or not _TOKEN.fullmatch(name) or not _FIELD_VALUE.fullmatch(value):
                raise HTTPError(400, 'malformed header line')
            name = name.lower()
            value = value.strip(b' \t')
            headers.append((name, value))
            if name == b'content-length':
                lengths.add(value)
            elif name == b'transfer-encoding':
                raise HTTPError(501, 'Transfer-Encoding is not supported')
            elif name == b'connection':
                connection.extend(t.strip().lower() for t in value.split(b','))
            elif name == b'host':
                hosts += 1
    if version == (1, 1) and hosts != 1:
        raise HTTPError(400, 'HTTP/1.1 needs exactly one Host header')
    if hosts > 1:
        raise HTTPError(400, 'more than one Host header')
    length = 0
    if lengths:
        if len(lengths) > 1:
            raise HTTPError(400, 'conflicting Content-Length headers')
        value = lengths.pop()
        if not _DIGITS.fullmatch(value):
            raise HTTPError(400, 'malformed Content-Length')
        length = int(value)
        if length > max_body:
            raise HTTPError(413, f'the body may be {max_body} bytes at most')
    body_start = head_end + 4
    end = body_start + length
    if end > n:
        return None, pos
    if version == (1, 0):
        keep_alive = b'keep-alive' in connection and b'close' not in connection
    else:
        keep_alive = b'close' not in connection
    return Request(method, target, version, headers, bytes(buf[body_start:end]),
                   keep_alive), end


def parse_requests(buf, **limits):
    """All the complete requests at the start of `buf`: `(requests, consumed)`.

    Stops before a malformed request if good ones come before it (they are to
    be answered first, the next call raises); raises `HTTPError` if the
    malformed one is the first. `buf[consumed:]` is the unparsed tail.
    """
    requests = []
    pos = 0
    while True:
        try:
            req, pos = parse_request(buf, pos, **limits)
        except HTTPError:
            if requests:
                return requests, pos
            raise
        if req is None:
            return requests, pos
        requests.append(req)
        if not req.keep_alive:      # nothing after it is read
            return requests, pos


def response_for(req):
    """The bytes that answer `req`."""
    if req.keep_alive:
        out = RESPONSE if req.version == (1, 1) else RESPONSE_KEEP_ALIVE_10
    else:
        out = RESPONSE_CLOSE
    if req.method == b'HEAD':
        out = out[:len(out) - len(BODY)]
    return out


class HTTPServer(evioloop.Events):
    """Each connection keeps an InputStream (evio's way) in its context."""

    def __init__(self, *, quiet=True, **kw):
        super().__init__(**kw)
        self.quiet = quiet

    def serving(self, server):
        if not self.quiet:
            print('http: serving on', ' '.join(format_addr(a) for a in server.addrs),
                  flush=True)

    def opened(self, conn):
        conn.context = evioloop.InputStream()

    def data(self, conn, in_):
        if in_ is None:         # a wake: nothing of ours
            return None
        stream = conn.context
        buf = stream.begin(in_)
        if type(buf) is not bytes:
            buf = bytes(buf)
        # The plain request, answered without parse_request: a whole, well-formed
        # HTTP/1.1 head with one Host and no Content-Length, Transfer-Encoding or
        # Connection header (so no body, and keep-alive), as parse_request would.
        m = _PLAIN_HEAD.match(buf)
        if m is not None and m.end() == len(buf) <= MAX_HEAD and buf is in_:
            # all of the input, nothing kept from before (nor to keep)
            return _HEAD_RESPONSE if buf[0] == 0x48 and buf.startswith(b'HEAD ') else RESPONSE
        out = []
        pos = 0
        n = len(buf)
        while pos < n:
            if pos:
                m = _PLAIN_HEAD.match(buf, pos)
            if m is not None and m.end() - pos <= MAX_HEAD:
                out.append(_HEAD_RESPONSE if buf[pos] == 0x48 and buf.startswith(b'HEAD ', pos)
                           else RESPONSE)
                pos = m.end()
                continue
            try:
                req, pos = parse_request(buf, pos)
            except HTTPError as err:
                out.append(err.response())
                return self._close(stream, out)
            if req is None:
                break
            out.append(response_for(req))
            if not req.keep_alive:
                return self._close(stream, out)
        stream.end(buf[pos:])
        return b''.join(out)

    @staticmethod
    def _close(stream, out):
        stream.end(b'')
        return b''.join(out), evioloop.Action.CLOSE


def format_addr(addr):
    """host:port for a (host, port, ...) tuple; anything else as str()."""
    if isinstance(addr, tuple) and len(addr) >= 2:
        host = addr[0]
        return f'[{host}]:{addr[1]}' if ':' in host else f'{host}:{addr[1]}'
    return str(addr)


def main(argv=None):
    p = argparse.ArgumentParser(description='HTTP/1.1 hello-world server on evioloop')
    g = p.add_mutually_exclusive_group()
    g.add_argument('--addr', help='an evio address, e.g. tcp://:8080, tcp-net://127.0.0.1:8080 '
                   '(portable mode) or unix:///tmp/http.sock (default tcp://127.0.0.1:8080)')
    g.add_argument('--port', type=int, default=8080, help='TCP port on 127.0.0.1 (default 8080)')
    args = p.parse_args(argv)
    try:
        evioloop.serve(HTTPServer(quiet=False), args.addr or f'tcp://127.0.0.1:{args.port}')
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == '__main__':
    sys.exit(main())
