"""The contextvars a protocol's callbacks see, on evioloop and the stock loop.

asyncio runs every callback in a copy of the context that scheduled it, so a
variable set by the task that calls create_connection / create_server /
connect_accepted_socket / create_datagram_endpoint / connect_*_pipe /
subprocess_exec is what the protocol (and a server's protocol factory) sees.
Each test records, per callback, what it saw, and the stock loop's record is
the expected one.
"""
import asyncio
import contextvars
import os
import socket
import sys

import pytest

from net_helpers import LOOP_KINDS, run, until

VAR = contextvars.ContextVar('VAR', default='unset')


@pytest.fixture(params=LOOP_KINDS)
def kind(request):
    return request.param


class Seen(asyncio.Protocol):
    """Records VAR in every callback, and sets it in data_received to see
    whether a later callback shares that context."""

    def __init__(self, log, who):
        self.log = log
        self.who = who
        self.log.append((who, 'init', VAR.get()))

    def connection_made(self, transport):
        self.transport = transport
        self.log.append((self.who, 'connection_made', VAR.get()))

    def data_received(self, data):
        self.log.append((self.who, 'data_received', VAR.get()))
        VAR.set(f'set in {self.who} data_received')
        if self.who == 'server':
            self.transport.write(data)

    def eof_received(self):
        self.log.append((self.who, 'eof_received', VAR.get()))

    def connection_lost(self, exc):
        self.log.append((self.who, 'connection_lost', VAR.get()))


def _ssl_contexts():
    import test.support  # noqa: F401  (CPython's own test certificates)
    from test.test_asyncio import utils as test_utils
    server = test_utils.simple_server_sslcontext()
    client = test_utils.simple_client_sslcontext()
    return server, client


async def _stream_exchange(family, tls):
    loop = asyncio.get_running_loop()
    log = []
    server_ssl = client_ssl = None
    if tls:
        server_ssl, client_ssl = _ssl_contexts()
    VAR.set('create_server')
    if family == 'unix':
        path = f'/tmp/evioloop-ctx-{os.getpid()}-{id(log)}.sock'
        server = await loop.create_unix_server(lambda: Seen(log, 'server'), path,
                                               ssl=server_ssl)
    else:
        server = await loop.create_server(lambda: Seen(log, 'server'), '127.0.0.1', 0,
                                          ssl=server_ssl)
    VAR.set('create_connection')
    try:
        if family == 'unix':
            tr, pr = await loop.create_unix_connection(
                lambda: Seen(log, 'client'), path, ssl=client_ssl,
                server_hostname='' if tls else None)
        else:
            port = server.sockets[0].getsockname()[1]
            tr, pr = await loop.create_connection(
                lambda: Seen(log, 'client'), '127.0.0.1', port, ssl=client_ssl,
                server_hostname='' if tls else None)
        VAR.set('after')
        tr.write(b'ping')
        await until(lambda: ('client', 'data_received', 'create_connection') in log
                    or any(e[:2] == ('client', 'data_received') for e in log),
                    what='the echo')
        tr.write(b'again')
        await until(lambda: sum(e[:2] == ('client', 'data_received') for e in log) >= 2
                    or len(log) > 40, what='the second echo')
        tr.close()
        await until(lambda: sum(e[1] == 'connection_lost' for e in log) == 2,
                    what='both sides lost')
    finally:
        server.close()
        await server.wait_closed()
        if family == 'unix' and os.path.exists(path):
            os.unlink(path)     # 3.13+ servers remove their socket file themselves
    return sorted(set(log))


@pytest.mark.parametrize('family', ['tcp', 'unix'])
def test_stream_protocols(kind, family):
    assert run(kind, _stream_exchange(family, False)) == run('stock', _stream_exchange(
        family, False))


@pytest.mark.parametrize('family', ['tcp', 'unix'])
def test_tls_protocols(kind, family):
    assert run(kind, _stream_exchange(family, True)) == run('stock', _stream_exchange(
        family, True))


def test_seen_values_are_the_callers():
    # the expected record, spelled out once, so that a change of the stock
    # loop's behaviour (or of the test) shows here too
    log = run('evioloop', _stream_exchange('tcp', False))
    assert ('server', 'init', 'create_server') in log
    assert ('server', 'connection_made', 'create_server') in log
    assert ('server', 'data_received', 'create_server') in log
    assert ('server', 'data_received', 'set in server data_received') in log
    assert ('client', 'connection_made', 'create_connection') in log
    assert ('client', 'data_received', 'create_connection') in log


async def _accepted_socket():
    loop = asyncio.get_running_loop()
    log = []
    a, b = socket.socketpair()
    try:
        VAR.set('connect_accepted_socket')
        tr, pr = await loop.connect_accepted_socket(lambda: Seen(log, 'server'), a)
        VAR.set('after')
        b.sendall(b'x')
        await until(lambda: any(e[1] == 'data_received' for e in log), what='data')
        tr.close()
        await until(lambda: any(e[1] == 'connection_lost' for e in log), what='lost')
    finally:
        b.close()
    return sorted(set(log))


def test_connect_accepted_socket(kind):
    assert run(kind, _accepted_socket()) == run('stock', _accepted_socket())


class SeenDatagram(asyncio.DatagramProtocol):
    def __init__(self, log):
        self.log = log

    def connection_made(self, transport):
        self.log.append(('connection_made', VAR.get()))

    def datagram_received(self, data, addr):
        self.log.append(('datagram_received', VAR.get()))

    def connection_lost(self, exc):
        self.log.append(('connection_lost', VAR.get()))


async def _datagram():
    loop = asyncio.get_running_loop()
    log = []
    VAR.set('create_datagram_endpoint')
    tr, _ = await loop.create_datagram_endpoint(lambda: SeenDatagram(log),
                                                local_addr=('127.0.0.1', 0))
    VAR.set('after')
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.sendto(b'd', tr.get_extra_info('sockname'))
        await until(lambda: any(e[0] == 'datagram_received' for e in log), what='datagram')
    finally:
        s.close()
        tr.close()
    await until(lambda: any(e[0] == 'connection_lost' for e in log), what='lost')
    return log


def test_datagram(kind):
    assert run(kind, _datagram()) == run('stock', _datagram())


class SeenPipe(asyncio.Protocol):
    def __init__(self, log):
        self.log = log

    def connection_made(self, transport):
        self.log.append(('connection_made', VAR.get()))

    def data_received(self, data):
        self.log.append(('data_received', VAR.get()))

    def eof_received(self):
        self.log.append(('eof_received', VAR.get()))

    def connection_lost(self, exc):
        self.log.append(('connection_lost', VAR.get()))


async def _read_pipe():
    loop = asyncio.get_running_loop()
    log = []
    r, w = os.pipe()
    VAR.set('connect_read_pipe')
    tr, _ = await loop.connect_read_pipe(lambda: SeenPipe(log), os.fdopen(r, 'rb', 0))
    VAR.set('after')
    os.write(w, b'p')
    await until(lambda: any(e[0] == 'data_received' for e in log), what='pipe data')
    os.close(w)
    await until(lambda: any(e[0] == 'connection_lost' for e in log), what='lost')
    tr.close()
    return log


def test_read_pipe(kind):
    assert run(kind, _read_pipe()) == run('stock', _read_pipe())


class SeenSubprocess(asyncio.SubprocessProtocol):
    def __init__(self, log, done):
        self.log = log
        self.done = done

    def connection_made(self, transport):
        self.log.append(('connection_made', VAR.get()))

    def pipe_data_received(self, fd, data):
        self.log.append(('pipe_data_received', VAR.get()))

    def process_exited(self):
        self.log.append(('process_exited', VAR.get()))
        self.done.set_result(None)


async def _subprocess():
    loop = asyncio.get_running_loop()
    log = []
    done = loop.create_future()
    VAR.set('subprocess_exec')
    tr, _ = await loop.subprocess_exec(lambda: SeenSubprocess(log, done), sys.executable,
                                       '-c', 'print("hi")', stdin=None)
    VAR.set('after')
    await done
    tr.close()
    return sorted(set(log))


def test_subprocess(kind):
    assert run(kind, _subprocess()) == run('stock', _subprocess())
