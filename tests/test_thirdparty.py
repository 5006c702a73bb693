"""Real third-party software on evioloop (test-only dependencies).

* aiohttp: a server and a client on the same loop, over TCP and a Unix socket.
* uvicorn: an ASGI app served by `uvicorn --loop evioloop:new_event_loop` in a
  subprocess, checked with httpx (sync, and async on evioloop).

How uvicorn takes a custom loop: since uvicorn 0.36, Config.get_loop_factory()
imports a `module:callable` given to --loop and passes that callable itself to
asyncio.Runner as loop_factory, so `evioloop:new_event_loop` is exactly right.
Before 0.36 (setup_event_loop), --loop looked the value up in a fixed table
(LOOP_SETUPS[...]) and a custom value raised KeyError.
"""
import asyncio
import hashlib
import os
import re
import signal
import subprocess
import sys
import tempfile
import textwrap
import threading
import time

import pytest

import evioloop
from net_helpers import LOOP_KINDS, pattern, run

aiohttp = pytest.importorskip('aiohttp')
from aiohttp import web  # noqa: E402


# ---------------------------------------------------------------- aiohttp

def make_aiohttp_app():
    app = web.Application(client_max_size=64 << 20)

    async def hello(request):
        return web.Response(text='hello, world')

    async def loop_info(request):
        loop = asyncio.get_running_loop()
        return web.json_response({'evioloop': isinstance(loop, evioloop.Loop)})

    async def echo(request):
        body = await request.read()
        return web.Response(body=body, headers={'X-Sha256': hashlib.sha256(body).hexdigest()})

    async def big(request):
        n = int(request.query['n'])
        resp = web.StreamResponse()
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        data = pattern(n, seed=n)
        view = memoryview(data)
        for i in range(0, n, 100_000):
            await resp.write(view[i:i + 100_000])
        await resp.write_eof()
        return resp

    async def ws(request):
        sock = web.WebSocketResponse()
        await sock.prepare(request)
        async for msg in sock:
            if msg.type == aiohttp.WSMsgType.TEXT:
                await sock.send_str(msg.data[::-1])
            elif msg.type == aiohttp.WSMsgType.BINARY:
                await sock.send_bytes(hashlib.sha256(msg.data).digest())
        return sock

    app.router.add_get('/', hello)
    app.router.add_get('/loop', loop_info)
    app.router.add_post('/echo', echo)
    app.router.add_get('/big', big)
    app.router.add_get('/ws', ws)
    return app


async def exercise_aiohttp(session, base):
    async with session.get(base + '/') as r:
        assert r.status == 200
        assert await r.text() == 'hello, world'
    async with session.get(base + '/loop') as r:
        assert await r.json() == {
            'evioloop': isinstance(asyncio.get_running_loop(), evioloop.Loop)}
    # many requests at once, over a pool of keep-alive connections
    bodies = [pattern(1000 + 37 * i, seed=i) for i in range(60)]

    async def post(body):
        async with session.post(base + '/echo', data=body) as r:
            assert r.status == 200
            got = await r.read()
            assert r.headers['X-Sha256'] == hashlib.sha256(body).hexdigest()
            return got

    got = await asyncio.gather(*(post(b) for b in bodies))
    assert got == bodies
    # a large upload and a large chunked download
    up = pattern(5 << 20, seed=77)
    assert await post(up) == up
    n = (8 << 20) + 3
    async with session.get(base + '/big', params={'n': str(n)}) as r:
        data = bytearray()
        async for chunk in r.content.iter_chunked(65536):
            data += chunk
    assert bytes(data) == pattern(n, seed=n)
    # a websocket
    async with session.ws_connect(base + '/ws') as sock:
        await sock.send_str('evioloop')
        assert await sock.receive_str() == 'evioloop'[::-1]
        blob = pattern(300_000, seed=5)
        await sock.send_bytes(blob)
        assert await sock.receive_bytes() == hashlib.sha256(blob).digest()


@pytest.mark.parametrize('kind', LOOP_KINDS)
def test_aiohttp_server_and_client_tcp(kind):
    async def main():
        runner = web.AppRunner(make_aiohttp_app())
        await runner.setup()
        try:
            site = web.TCPSite(runner, '127.0.0.1', 0)
            await site.start()
            host, port = runner.addresses[0][:2]
            async with aiohttp.ClientSession() as session:
                await exercise_aiohttp(session, f'http://{host}:{port}')
        finally:
            await runner.cleanup()

    run(kind, main(), timeout=120)


@pytest.mark.parametrize('kind', LOOP_KINDS)
def test_aiohttp_server_and_client_unix(kind):
    async def main():
        runner = web.AppRunner(make_aiohttp_app())
        await runner.setup()
        with tempfile.TemporaryDirectory(prefix='evn-', dir='/tmp') as d:
            path = os.path.join(d, 'http.sock')
            try:
                site = web.UnixSite(runner, path)
                await site.start()
                connector = aiohttp.UnixConnector(path=path)
                async with aiohttp.ClientSession(connector=connector) as session:
                    await exercise_aiohttp(session, 'http://localhost')
            finally:
                await runner.cleanup()

    run(kind, main(), timeout=120)


# ---------------------------------------------------------------- uvicorn + httpx

ASGI_APP = textwrap.dedent('''
    import asyncio
    import hashlib
    import json

    import evioloop


    def _pattern(n):
        import random
        return random.Random(n).randbytes(n)


    async def app(scope, receive, send):
        if scope['type'] == 'lifespan':
            while True:
                msg = await receive()
                if msg['type'] == 'lifespan.startup':
                    await send({'type': 'lifespan.startup.complete'})
                elif msg['type'] == 'lifespan.shutdown':
                    await send({'type': 'lifespan.shutdown.complete'})
                    return
        assert scope['type'] == 'http'
        path = scope['path']
        if path == '/loop':
            loop = asyncio.get_running_loop()
            body = json.dumps({
                'evioloop': isinstance(loop, evioloop.Loop),
                'type': f'{type(loop).__module__}.{type(loop).__qualname__}',
            }).encode()
            await send({'type': 'http.response.start', 'status': 200,
                        'headers': [(b'content-type', b'application/json')]})
            await send({'type': 'http.response.body', 'body': body})
        elif path == '/echo':
            body = bytearray()
            while True:
                msg = await receive()
                body += msg.get('body', b'')
                if not msg.get('more_body'):
                    break
            await send({'type': 'http.response.start', 'status': 200,
                        'headers': [(b'x-sha256', hashlib.sha256(body).hexdigest().encode())]})
            await send({'type': 'http.response.body', 'body': bytes(body)})
        elif path == '/big':
            n = int(scope['query_string'].decode().split('=')[1])
            data = memoryview(_pattern(n))
            await send({'type': 'http.response.start', 'status': 200, 'headers': []})
            for i in range(0, n, 65536):
                await send({'type': 'http.response.body', 'body': bytes(data[i:i + 65536]),
                            'more_body': True})
            await send({'type': 'http.response.body', 'body': b''})
        else:
            await send({'type': 'http.response.start', 'status': 404, 'headers': []})
            await send({'type': 'http.response.body', 'body': b'not found'})
''')


class UvicornProcess:
    """uvicorn in a subprocess; its stderr is collected by a thread."""

    def __init__(self, app_dir, http):
        env = dict(os.environ)
        env.pop('PYTHONPATH', None)   # the installed evioloop, not a source tree
        self.proc = subprocess.Popen(
            [sys.executable, '-m', 'uvicorn', 'evn_asgi_app:app',
             '--app-dir', str(app_dir),
             '--loop', 'evioloop:new_event_loop',
             '--http', http,
             '--host', '127.0.0.1', '--port', '0',
             '--lifespan', 'on', '--no-access-log'],
            cwd=str(app_dir), env=env,
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self.lines = []
        self.port = None
        self.ready = threading.Event()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for raw in self.proc.stdout:
            line = raw.decode(errors='replace')
            self.lines.append(line)
            m = re.search(r'Uvicorn running on http://127\.0\.0\.1:(\d+)', line)
            if m:
                self.port = int(m.group(1))
                self.ready.set()
        self.ready.set()

    def output(self):
        return ''.join(self.lines)

    def wait_ready(self, timeout=60):
        self.ready.wait(timeout)
        assert self.port is not None, f'uvicorn did not start:\n{self.output()}'

    def stop(self, timeout=30):
        """SIGINT, as Ctrl+C: uvicorn shuts down gracefully. Returns the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            return self.proc.wait(timeout)
        finally:
            self.reader.join(10)
            self.proc.stdout.close()

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.reader.join(10)
        if not self.proc.stdout.closed:
            self.proc.stdout.close()


def _uvicorn_version():
    import uvicorn
    return tuple(int(x) for x in re.findall(r'\d+', uvicorn.__version__)[:2])


@pytest.mark.parametrize('http', ['h11', 'httptools'])
def test_uvicorn_with_loop_evioloop_and_httpx(http, tmp_path):
    pytest.importorskip('uvicorn')
    httpx = pytest.importorskip('httpx')
    if http == 'httptools':
        pytest.importorskip('httptools')
    if _uvicorn_version() < (0, 36):
        pytest.skip('uvicorn < 0.36 does not accept --loop module:callable')
    (tmp_path / 'evn_asgi_app.py').write_text(ASGI_APP)
    server = UvicornProcess(tmp_path, http)
    try:
        server.wait_ready()
        base = f'http://127.0.0.1:{server.port}'
        t0 = time.monotonic()
        with httpx.Client(base_url=base, timeout=30) as client:
            r = client.get('/loop')
            assert r.status_code == 200
            info = r.json()
            assert info['evioloop'] is True, info
            for i in range(30):
                body = pattern(500 + 101 * i, seed=i)
                r = client.post('/echo', content=body)
                assert r.status_code == 200
                assert r.content == body
                assert r.headers['x-sha256'] == hashlib.sha256(body).hexdigest()
            up = pattern(4 << 20, seed=9)
            r = client.post('/echo', content=up)
            assert r.content == up
            n = (6 << 20) + 1
            r = client.get('/big', params={'n': n})
            assert r.status_code == 200
            assert r.content == pattern(n, seed=n)
            assert client.get('/nope').status_code == 404

        # httpx's async client, itself on evioloop, many requests at once
        async def async_client():
            async with httpx.AsyncClient(base_url=base, timeout=30) as ac:
                bodies = [pattern(2000 + i, seed=1000 + i) for i in range(40)]
                rs = await asyncio.gather(*(ac.post('/echo', content=b) for b in bodies))
                assert [r.content for r in rs] == bodies
                r = await ac.get('/big', params={'n': 1 << 20})
                assert r.content == pattern(1 << 20, seed=1 << 20)

        run('evioloop', async_client(), timeout=60)
        elapsed = time.monotonic() - t0
        code = server.stop()
        out = server.output()
        assert code == 0, out
        assert 'Application startup complete' in out, out
        assert 'Application shutdown complete' in out, out
        assert 'Traceback' not in out, out
        print(f'\nuvicorn --http {http} on evioloop: requests took {elapsed:.2f} s')
    finally:
        server.kill()


def test_uvicorn_custom_loop_resolution_is_the_factory_itself():
    """What --loop evioloop:new_event_loop resolves to in the installed uvicorn."""
    uvicorn = pytest.importorskip('uvicorn')
    if _uvicorn_version() < (0, 36):
        pytest.skip('uvicorn < 0.36 has no Config.get_loop_factory')
    # log_config=None: uvicorn's dictConfig would close pytest's own log handlers
    config = uvicorn.Config(app='evn:app', loop='evioloop:new_event_loop', log_config=None)
    factory = config.get_loop_factory()
    assert factory is evioloop.new_event_loop
    loop = factory()
    try:
        assert isinstance(loop, evioloop.Loop)
    finally:
        loop.close()

