"""A tiny HTTP/1.1 server on asyncio streams, and its keep-alive and one-shot clients.

Routes: `POST /echo` answers with the request body; `GET /gen?n=N&s=S` answers
with N bytes generated from seed S (the client generates them too). Every
response has Content-Length and `X-Sha256` (of the body). Keep-alive clients
send many requests on one connection; short-lived ones send
`Connection: close` and check the server then closes the connection.
(The module is not called http.py: it would shadow the stdlib package.)
"""
import asyncio
import hashlib
import random

from common import STEP_TIMEOUT, close_writer

_MAX_HEAD = 16 * 1024
_MAX_BODY = 256 * 1024
_MAX_GEN = 64 * 1024


def _gen(n, seed):
    return random.Random(seed).randbytes(n)


class HttpError(Exception):
    pass


async def _read_head(reader):
    """(start line, {lower-case name: value}) or None on a clean EOF before a request."""
    try:
        head = await reader.readuntil(b'\r\n\r\n')
    except asyncio.IncompleteReadError as exc:
        if not exc.partial:
            return None
        raise HttpError(f'EOF inside a header block ({len(exc.partial)} bytes)') from None
    except asyncio.LimitOverrunError:
        raise HttpError('header block too long') from None
    lines = head[:-4].decode('latin-1').split('\r\n')
    headers = {}
    for line in lines[1:]:
        name, sep, value = line.partition(':')
        if not sep:
            raise HttpError(f'bad header line {line!r}')
        headers[name.strip().lower()] = value.strip()
    return lines[0], headers


async def _read_body(reader, headers):
    n = int(headers.get('content-length', '0'))
    if n < 0 or n > _MAX_BODY:
        raise HttpError(f'Content-Length {n}')
    return await reader.readexactly(n) if n else b''


def _response(status, body, close):
    head = (f'HTTP/1.1 {status}\r\nContent-Length: {len(body)}\r\n'
            f'X-Sha256: {hashlib.sha256(body).hexdigest()}\r\n'
            f"Connection: {'close' if close else 'keep-alive'}\r\n\r\n")
    return head.encode('latin-1') + body


def http_handler(soak):
    async def handle(reader, writer):
        peer = writer.get_extra_info('peername')
        st = soak.stat('http')
        try:
            while True:
                req = await _read_head(reader)
                if req is None:
                    break
                line, headers = req
                body = await _read_body(reader, headers)
                method, target, version = line.split(' ')
                close = headers.get('connection', '').lower() == 'close'
                if method == 'POST' and target == '/echo':
                    resp = _response('200 OK', body, close)
                elif method == 'GET' and target.startswith('/gen?'):
                    q = dict(kv.split('=') for kv in target[5:].split('&'))
                    n = int(q['n'])
                    resp = _response('200 OK', _gen(min(n, _MAX_GEN), int(q['s'])), close)
                else:
                    resp = _response('404 Not Found', b'no such route', True)
                    close = True
                    soak.error('http', f'server: unexpected request {line!r}')
                writer.write(resp)
                await writer.drain()
                st.bump('served')
                if close:
                    break
        except Exception as exc:
            soak.server_exc('http', exc, peer)
        finally:
            writer.close()
            try:
                await writer.wait_closed()
            except Exception as exc:
                soak.server_exc('http', exc, peer)
    return handle


async def _request(reader, writer, rng, soak, close):
    """One request and its checked response; returns the body size checked."""
    if rng.random() < 0.5:
        body = soak.payload(rng, _MAX_BODY)
        want = body
        head = f'POST /echo HTTP/1.1\r\nHost: soak\r\nContent-Length: {len(body)}\r\n'
    else:
        n, seed = rng.randint(0, _MAX_GEN), rng.getrandbits(32)
        body, want = b'', _gen(n, seed)
        head = f'GET /gen?n={n}&s={seed} HTTP/1.1\r\nHost: soak\r\n'
    if close:
        head += 'Connection: close\r\n'
    writer.write(head.encode('latin-1') + b'\r\n' + body)
    resp = await asyncio.wait_for(_read_head(reader), STEP_TIMEOUT)
    if resp is None:
        raise HttpError('server closed the connection instead of answering')
    status, headers = resp
    got = await asyncio.wait_for(_read_body(reader, headers), STEP_TIMEOUT)
    await asyncio.wait_for(writer.drain(), STEP_TIMEOUT)
    if not status.startswith('HTTP/1.1 200'):
        raise HttpError(f'status {status!r}')
    if got != want or headers.get('x-sha256') != hashlib.sha256(want).hexdigest():
        raise ValueError(f'body of {len(got)} bytes differs from the {len(want)} expected')
    return len(want)


async def http_worker(soak, addr, wid, keepalive):
    name = 'http'
    st = soak.stat(name)
    rng = soak.rng('http-keepalive' if keepalive else 'http-short', wid)
    while not soak.stopping:
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(*addr), STEP_TIMEOUT)
        except Exception as exc:
            soak.error(name, f'connect: {exc!r}')
            await asyncio.sleep(0.5)
            continue
        st.conns += 1
        st.bump('keepalive_conns' if keepalive else 'short_conns')
        try:
            n = rng.randint(10, 300) if keepalive else 1
            for _ in range(n):
                if soak.stopping and keepalive:
                    break
                size = await _request(reader, writer, rng, soak, close=not keepalive)
                st.ops += 1
                st.bytes += size
            if not keepalive:
                rest = await asyncio.wait_for(reader.read(), STEP_TIMEOUT)
                if rest:
                    soak.error(name, f'{len(rest)} bytes after a Connection: close response')
        except ValueError as exc:
            st.corrupt += 1
            soak.error(name, f'client: {exc}')
        except Exception as exc:
            soak.error(name, f'client: {exc!r}')
        try:
            await close_writer(writer)
        except Exception as exc:
            soak.error(name, f'client close: {exc!r}')


async def start_http(soak):
    server = await asyncio.start_server(http_handler(soak), '127.0.0.1', 0)
    return server, server.sockets[0].getsockname()[:2]
