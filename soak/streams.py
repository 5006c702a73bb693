"""Stream workloads: TCP, Unix, TLS and Events echo, and connection churn.

Servers (all on the soak's one loop):
* TCP: an `asyncio.Protocol` echo with flow control (pause reading while the
  transport's buffer is above its high-water mark);
* Unix and TLS: `asyncio.start_server` stream handlers;
* Events: `evioloop.events.listen()` with an echoing `data` (native on evioloop).

Clients keep a running sha256 of what they sent and of what came back, compare
every reply with what was sent, and open a new connection after a random
number of messages, so connections come and go all the time.
"""
import asyncio
import hashlib
import os
import shutil
import socket
import ssl
import struct
import subprocess
import tempfile

import evioloop.events

from common import STEP_TIMEOUT, close_writer

_HIGH = 1 << 20      # the TCP echo protocol stops reading above this much output


class EchoProtocol(asyncio.Protocol):
    """Echo with flow control; reports a connection lost with an error."""

    def __init__(self, soak, name):
        self.soak = soak
        self.name = name
        self.transport = None
        self.peer = None

    def connection_made(self, transport):
        self.transport = transport
        self.peer = transport.get_extra_info('peername')

    def data_received(self, data):
        self.transport.write(data)

    def pause_writing(self):
        self.transport.pause_reading()

    def resume_writing(self):
        self.transport.resume_reading()

    def eof_received(self):
        return False         # half-close: the transport closes once the echo is flushed

    def connection_lost(self, exc):
        if exc is not None:
            self.soak.server_exc(self.name, exc, self.peer)


def stream_handler(soak, name):
    async def handle(reader, writer):
        peer = writer.get_extra_info('peername')
        try:
            while True:
                data = await reader.read(256 * 1024)
                if not data:
                    break
                writer.write(data)
                await writer.drain()
        except Exception as exc:
            soak.server_exc(name, exc, peer)
        finally:
            writer.close()
            try:
                await writer.wait_closed()
            except Exception as exc:
                soak.server_exc(name, exc, peer)
    return handle


class EventsEcho(evioloop.events.Events):
    """The Events API echo: what comes in goes back out (examples/echo.py)."""

    def __init__(self, soak):
        super().__init__()
        self.soak = soak
        self.opened_n = 0
        self.closed_n = 0

    def opened(self, conn):
        self.opened_n += 1

    def data(self, conn, in_):
        return in_

    def closed(self, conn, err):
        self.closed_n += 1
        if err is not None:
            self.soak.server_exc('events', err, conn.remote_addr)


# -- TLS material --------------------------------------------------------------
def tls_contexts():
    """(server_ctx, client_ctx, how) or (None, None, why not)."""
    tmp = tempfile.mkdtemp(prefix='soak-tls-')
    try:
        openssl = shutil.which('openssl')
        if openssl:
            cert, key = os.path.join(tmp, 'cert.pem'), os.path.join(tmp, 'key.pem')
            r = subprocess.run(
                [openssl, 'req', '-x509', '-newkey', 'ec', '-pkeyopt',
                 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', key, '-out', cert,
                 '-days', '2', '-subj', '/CN=localhost',
                 '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1'],
                capture_output=True, timeout=60)
            if r.returncode == 0:
                server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
                server.load_cert_chain(cert, key)
                client = ssl.create_default_context(cafile=cert)
                return server, client, 'self-signed certificate made with openssl'
        stdlib_test = os.path.join(os.path.dirname(os.__file__), 'test')
        for rel in ('certdata/keycert.pem', 'keycert.pem'):
            path = os.path.join(stdlib_test, rel)
            if os.path.exists(path):
                server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
                server.load_cert_chain(path)
                # CPython's test cert is signed by its test CA; not verifying here
                # changes nothing about the bytes the soak checks.
                client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
                client.check_hostname = False
                client.verify_mode = ssl.CERT_NONE
                return server, client, f'CPython test certificate {path}'
        return None, None, 'TLS skipped: no openssl CLI and no CPython test certificate'
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# -- servers ---------------------------------------------------------------------
class StreamServers:
    """Start and stop every stream server; `connectors` maps workload -> connect()."""

    def __init__(self, soak):
        self.soak = soak
        self.servers = []
        self.events_server = None
        self.events = None
        self.tmpdir = None
        self.connectors = {}
        self.tls_note = None
        self.tcp_addr = None
        self.events_addr = None

    async def start(self):
        loop, soak = self.soak.loop, self.soak
        tcp = await loop.create_server(lambda: EchoProtocol(soak, 'tcp'), '127.0.0.1', 0)
        self.servers.append(tcp)
        self.tcp_addr = tcp.sockets[0].getsockname()[:2]
        host, port = self.tcp_addr
        self.connectors['tcp'] = lambda: asyncio.open_connection(host, port)

        self.tmpdir = tempfile.mkdtemp(prefix='soak-unix-')
        path = os.path.join(self.tmpdir, 'echo.sock')
        unix = await asyncio.start_unix_server(stream_handler(soak, 'unix'), path)
        self.servers.append(unix)
        self.connectors['unix'] = lambda: asyncio.open_unix_connection(path)

        server_ctx, client_ctx, self.tls_note = tls_contexts()
        if server_ctx is not None:
            tls = await asyncio.start_server(stream_handler(soak, 'tls'), '127.0.0.1', 0,
                                             ssl=server_ctx)
            self.servers.append(tls)
            tport = tls.sockets[0].getsockname()[1]
            self.connectors['tls'] = lambda: asyncio.open_connection(
                '127.0.0.1', tport, ssl=client_ctx, server_hostname='localhost')
        else:
            soak.notes.append(self.tls_note)

        self.events = EventsEcho(soak)
        self.events_server = await evioloop.events.listen(self.events, 'tcp://127.0.0.1:0')
        ehost, eport = self.events_server.addrs[0][:2]
        self.events_addr = (ehost, eport)
        self.connectors['events'] = lambda: asyncio.open_connection(ehost, eport)
        soak.notes.append(f'events server native={self.events_server.native}')

    async def stop(self):
        for s in self.servers:
            s.close()
        for s in self.servers:
            try:
                await asyncio.wait_for(s.wait_closed(), STEP_TIMEOUT)
            except Exception as exc:
                self.soak.error('shutdown', f'{s!r}.wait_closed(): {exc!r}')
        if self.events_server is not None:
            self.events_server.stop()
            try:
                await asyncio.wait_for(self.events_server.wait_closed(), STEP_TIMEOUT)
            except Exception as exc:
                self.soak.error('shutdown', f'events server wait_closed(): {exc!r}')
            ev = self.events
            if ev.opened_n != ev.closed_n:
                self.soak.error('events', f'{ev.opened_n} opened but {ev.closed_n} closed')
        if self.tmpdir:
            shutil.rmtree(self.tmpdir, ignore_errors=True)


# -- clients ---------------------------------------------------------------------
async def echo_worker(soak, name, connect, wid):
    """Connections of 1..100 rounds; a round sends 1..8 messages, reads them back."""
    st = soak.stat(name)
    rng = soak.rng(name, wid)
    while not soak.stopping:
        try:
            reader, writer = await asyncio.wait_for(connect(), STEP_TIMEOUT)
        except Exception as exc:
            soak.error(name, f'connect: {exc!r}')
            await asyncio.sleep(0.5)
            continue
        st.conns += 1
        sent, back = hashlib.sha256(), hashlib.sha256()
        nsent = nback = 0
        try:
            for _ in range(rng.randint(1, 100)):
                if soak.stopping:
                    break
                k = 1 if rng.random() < 0.7 else rng.randint(2, 8)
                msgs = [soak.payload(rng) for _ in range(k)]
                for m in msgs:
                    writer.write(m)
                    sent.update(m)
                    nsent += len(m)
                expect = b''.join(msgs)
                # read while the transport still writes: no deadlock on big messages
                data = await asyncio.wait_for(reader.readexactly(len(expect)), STEP_TIMEOUT)
                back.update(data)
                nback += len(data)
                if data != expect:
                    st.corrupt += 1
                    pairs = enumerate(zip(data, expect, strict=True))
                    at = next(i for i, (a, b) in pairs if a != b)
                    soak.error(name, f'echo differs at byte {at} of {len(expect)}')
                await asyncio.wait_for(writer.drain(), STEP_TIMEOUT)
                st.ops += k
                st.bytes += len(expect)
        except asyncio.IncompleteReadError as exc:
            st.lost += nsent - nback - len(exc.partial)
            soak.error(name, f'connection ended early: {len(exc.partial)} of '
                             f'{exc.expected} bytes')
        except Exception as exc:
            soak.error(name, f'client: {exc!r}')
        if sent.digest() != back.digest() and nsent == nback:
            soak.error(name, f'sha256 of {nsent} bytes sent != sha256 of what came back')
        try:
            await close_writer(writer)
        except Exception as exc:
            soak.error(name, f'client close: {exc!r}')


async def churn_worker(soak, targets, wid):
    """Open and drop connections: clean close, RST (SO_LINGER 0) or half-close."""
    st = soak.stat('churn')
    rng = soak.rng('churn', wid)
    names = sorted(targets)
    while not soak.stopping:
        target = rng.choice(names)
        host, port = targets[target]
        mode = rng.choice(('clean', 'rst', 'half'))
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(host, port), STEP_TIMEOUT)
        except Exception as exc:
            soak.error('churn', f'connect {target}: {exc!r}')
            await asyncio.sleep(0.5)
            continue
        st.conns += 1
        st.bump(mode)
        me = writer.get_extra_info('sockname')
        msg = soak.payload(rng, 64 * 1024)
        try:
            if mode == 'rst':
                wrote = rng.random() < 0.7
                if wrote:
                    writer.write(msg)
                if wrote and rng.random() < 0.5:     # reset with part of the echo unread
                    await asyncio.wait_for(reader.read(rng.randint(1, len(msg))),
                                           STEP_TIMEOUT)
                sock = writer.get_extra_info('socket')
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack('ii', 1, 0))
                soak.mark_reset(me)
                writer.transport.abort()
                await asyncio.sleep(0)
            elif mode == 'clean':
                writer.write(msg)
                # read the whole echo first: unread input at close() makes the
                # kernel send an RST, which is not a clean close
                data = await asyncio.wait_for(reader.readexactly(len(msg)), STEP_TIMEOUT)
                _check(soak, st, target, mode, data, msg)
                await close_writer(writer)
            else:
                writer.write(msg)
                writer.write_eof()
                data = await asyncio.wait_for(reader.read(), STEP_TIMEOUT)
                _check(soak, st, target, mode, data, msg)
                await close_writer(writer)
            st.ops += 1
        except asyncio.IncompleteReadError as exc:
            st.lost += len(msg) - len(exc.partial)
            soak.error('churn', f'{mode} on {target}: ended after {len(exc.partial)} of '
                                f'{len(msg)} bytes')
        except Exception as exc:
            soak.error('churn', f'{mode} on {target}: {exc!r}')
        finally:
            if not writer.transport.is_closing():
                writer.transport.abort()
        if rng.random() < 0.2:
            await asyncio.sleep(rng.uniform(0, 0.02))


def _check(soak, st, target, mode, data, msg):
    if data == msg:
        st.bytes += len(msg)
        return
    if len(data) < len(msg) and msg.startswith(data):
        st.lost += len(msg) - len(data)
        soak.error('churn', f'{mode} on {target}: {len(data)} of {len(msg)} bytes came back')
    else:
        st.corrupt += 1
        soak.error('churn', f'{mode} on {target}: {len(data)} bytes came back, differing')


def stream_tasks(soak, servers, counts):
    """The client tasks of the stream workloads, `counts[name]` workers each."""
    tasks = []
    for name, connect in sorted(servers.connectors.items()):
        for wid in range(counts.get(name, 0)):
            tasks.append(asyncio.ensure_future(echo_worker(soak, name, connect, wid)))
    targets = {'tcp': servers.tcp_addr, 'events': servers.events_addr}
    for wid in range(counts.get('churn', 0)):
        tasks.append(asyncio.ensure_future(churn_worker(soak, targets, wid)))
    return tasks
