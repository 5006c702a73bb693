"""TLS over the stream transport: bytes, callbacks and errors as on the stock loop.

evioloop runs asyncio's own TLS protocol (sslproto.SSLProtocol; from 3.11
with the data path compiled, evioloop/transports/_tls.pyx, see test_net_tls_layer.py)
over its compiled stream transport, so what these tests guard is the
transport's side of that contract: a BufferedProtocol fed in pieces, writes of encrypted records,
half-close and close as SSLProtocol drives them. Every scenario runs on both
loops; where the result is an event order or an error, the stock loop's answer
is the expected one.
"""
import asyncio
import hashlib
import os
import ssl

import pytest
from test.test_asyncio import utils as test_utils

from net_helpers import LOOP_KINDS, run

# CPython's test certificates: keycert3.pem is "localhost", signed by pycacert.pem;
# ssl_cert.pem is self-signed (a client that trusts only the CA must reject it)
SIGNED = test_utils.SIGNED_CERTFILE
CA = test_utils.SIGNING_CA

_stock_results = {}


@pytest.fixture(params=LOOP_KINDS)
def kind(request):
    return request.param


def server_context(certfile=SIGNED, keyfile=None):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(certfile, keyfile)
    return ctx


def client_context():
    # verification on, as create_default_context makes it: CA and hostname
    return ssl.create_default_context(cafile=CA)


def stock_answer(name, make_coro):
    """The stock loop's result of a scenario (computed once per session)."""
    if name not in _stock_results:
        _stock_results[name] = run('stock', make_coro())
    return _stock_results[name]


async def echo_server(ctx):
    async def handle(reader, writer):
        try:
            while data := await reader.read(64 * 1024):
                writer.write(data)
                await writer.drain()
        finally:
            writer.close()
    return await asyncio.start_server(handle, '127.0.0.1', 0, ssl=ctx)


@pytest.mark.parametrize('size', [1, 1000, 16 * 1024 + 1, 100 * 1024, 1024 * 1024])
def test_tls_echo_bytes_arrive_intact(kind, size):
    # Sizes below, at and well above one TLS record (16 KiB) and above the
    # transport's read size: the echo must return exactly the bytes sent.
    payload = os.urandom(size)

    async def main():
        server = await echo_server(server_context())
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection(
            '127.0.0.1', port, ssl=client_context(), server_hostname='localhost')
        got = hashlib.sha256()
        # three messages on one connection, each written in uneven pieces
        for _ in range(3):
            for i in range(0, size, 7000):
                writer.write(payload[i:i + 7000])
            await writer.drain()
            got.update(await reader.readexactly(size))
        writer.close()
        await writer.wait_closed()
        server.close()
        await server.wait_closed()
        return got.hexdigest()

    assert run(kind, main()) == hashlib.sha256(payload * 3).hexdigest()


class BufferedEcho(asyncio.BufferedProtocol):
    """A BufferedProtocol app over TLS with a small buffer; logs its callbacks."""

    def __init__(self, log, bufsize=1000):
        self.log = log
        self.buffer = bytearray(bufsize)
        self.received = hashlib.sha256()
        self.nbytes = 0
        self.too_big = []

    def connection_made(self, transport):
        self.transport = transport
        self.log.append('connection_made')

    def get_buffer(self, sizehint):
        # a memoryview: SSLProtocol fills the rest of the buffer through
        # buf[offset:], which on a bytearray would be a copy
        return memoryview(self.buffer)

    def buffer_updated(self, nbytes):
        if not 0 < nbytes <= len(self.buffer):
            self.too_big.append(nbytes)
        self.received.update(self.buffer[:nbytes])
        self.nbytes += nbytes
        self.transport.write(bytes(self.buffer[:nbytes]))

    def eof_received(self):
        self.log.append('eof_received')
        return False    # the transport closes: TLS cannot half-close

    def connection_lost(self, exc):
        self.log.append(('connection_lost', type(exc).__name__ if exc else None))


def buffered_scenario():
    payload = os.urandom(300 * 1024)

    async def main():
        loop = asyncio.get_running_loop()
        log = []
        protos = []

        def factory():
            protos.append(BufferedEcho(log))
            return protos[-1]

        server = await loop.create_server(factory, '127.0.0.1', 0, ssl=server_context())
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection(
            '127.0.0.1', port, ssl=client_context(), server_hostname='localhost')
        writer.write(payload)
        echoed = await reader.readexactly(len(payload))
        writer.close()
        await writer.wait_closed()
        # 3.10's SSLProtocol reports the peer's close_notify without
        # eof_received: wait for connection_lost, whatever came before it
        while not log or type(log[-1]) is not tuple:
            await asyncio.sleep(0.01)
        server.close()
        await server.wait_closed()
        p = protos[0]
        return (log, p.too_big, p.nbytes, p.received.hexdigest(),
                hashlib.sha256(echoed).hexdigest(), hashlib.sha256(payload).hexdigest())

    return main()


def test_tls_buffered_protocol_app(kind):
    # 300 KiB through a 1000-byte buffer: SSLProtocol hands the app decrypted
    # bytes in pieces that fit, and the client's close reaches it (as EOF,
    # then connection_lost) in the stock loop's order.
    log, too_big, nbytes, received, echoed, sent = run(kind, buffered_scenario())
    assert too_big == []
    assert nbytes == 300 * 1024
    assert received == echoed == sent
    assert log == stock_answer('buffered', buffered_scenario)[0]


def failing_handshake(server_ctx, hostname):
    async def main():
        server = await echo_server(server_ctx)
        port = server.sockets[0].getsockname()[1]
        try:
            await asyncio.open_connection('127.0.0.1', port, ssl=client_context(),
                                          server_hostname=hostname)
        except Exception as exc:  # noqa: BLE001 -- the type is the result
            result = (type(exc).__name__, getattr(exc, 'verify_code', None),
                      getattr(exc, 'verify_message', None))
        else:
            result = ('connected',)
        server.close()
        await server.wait_closed()
        return result

    return main


@pytest.mark.filterwarnings('ignore::ResourceWarning')
def test_tls_untrusted_certificate_fails_as_on_stock(kind):
    # the self-signed ssl_cert.pem is not signed by the CA the client trusts
    make = failing_handshake(server_context(test_utils.ONLYCERT, test_utils.ONLYKEY),
                             'localhost')
    got = run(kind, make(), allow_loop_errors=True)
    assert got[0] == 'SSLCertVerificationError'
    assert got == stock_answer('untrusted', make)


@pytest.mark.filterwarnings('ignore::ResourceWarning')
def test_tls_server_hostname_mismatch_fails_as_on_stock(kind):
    # the certificate is valid for "localhost" only
    make = failing_handshake(server_context(), 'example.org')
    got = run(kind, make(), allow_loop_errors=True)
    assert got[0] == 'SSLCertVerificationError'
    assert 'example.org' in got[2]
    assert got == stock_answer('hostname', make)


def close_order_scenario():
    async def main():
        loop = asyncio.get_running_loop()
        log = []

        class Server(asyncio.Protocol):
            def connection_made(self, transport):
                self.transport = transport
                log.append('server connection_made')

            def data_received(self, data):
                log.append(('server data', data))
                self.transport.write(b'bye')
                self.transport.close()

            def eof_received(self):
                log.append('server eof_received')

            def connection_lost(self, exc):
                log.append(('server connection_lost', exc))

        class Client(asyncio.Protocol):
            def __init__(self):
                self.lost = loop.create_future()

            def connection_made(self, transport):
                log.append('client connection_made')

            def data_received(self, data):
                log.append(('client data', data))

            def eof_received(self):
                log.append('client eof_received')

            def connection_lost(self, exc):
                log.append(('client connection_lost', exc))
                self.lost.set_result(None)

        server = await loop.create_server(Server, '127.0.0.1', 0, ssl=server_context())
        port = server.sockets[0].getsockname()[1]
        transport, client = await loop.create_connection(
            Client, '127.0.0.1', port, ssl=client_context(), server_hostname='localhost')
        transport.write(b'hello')
        await asyncio.wait_for(client.lost, 10)
        while not any(e[0] == 'server connection_lost' for e in log if type(e) is tuple):
            await asyncio.sleep(0.01)
        server.close()
        await server.wait_closed()
        # each side's own order (the two sides interleave differently from run to run)
        return ([e for e in log if 'server' in (e if type(e) is str else e[0])],
                [e for e in log if 'client' in (e if type(e) is str else e[0])])

    return main()


def test_tls_close_after_write_order_as_on_stock(kind):
    # The server writes and closes at once: the reply must still arrive, then
    # the TLS close_notify as the client's EOF, then connection_lost, on both
    # sides in the stock loop's order.
    got = run(kind, close_order_scenario())
    assert ('client data', b'bye') in got[1]
    assert got == stock_answer('close', close_order_scenario)
