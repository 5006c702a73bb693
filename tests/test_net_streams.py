"""asyncio streams (open_connection, start_server and the Unix variants) on
evioloop's transports, unchanged; on evioloop and the stock loop."""
import asyncio
import hashlib
import os
import random
import tempfile

import pytest

from net_helpers import LOOP_KINDS, pattern, run


@pytest.fixture(params=LOOP_KINDS)
def kind(request):
    return request.param


@pytest.fixture(params=['tcp', 'unix', 'abstract'])
def where(request):
    return request.param


async def line_server(reader, writer):
    """Answers each line with its upper case; 'BIG n' with n bytes then a hash."""
    try:
        while True:
            line = await reader.readline()
            if not line:
                break
            if line.startswith(b'BIG '):
                n = int(line.split()[1])
                data = pattern(n, seed=n)
                writer.write(data)
                await writer.drain()
                writer.write(hashlib.sha256(data).hexdigest().encode() + b'\n')
            elif line.startswith(b'SINK '):
                n = int(line.split()[1])
                data = await reader.readexactly(n)
                writer.write(hashlib.sha256(data).hexdigest().encode() + b'\n')
            else:
                writer.write(line.upper())
            await writer.drain()
        writer.write(b'bye\n')
        await writer.drain()
    finally:
        writer.close()
        await writer.wait_closed()


class Endpoint:
    def __init__(self, where):
        self.where = where
        self.tmp = None

    async def serve(self, handler, **kwargs):
        if self.where == 'tcp':
            self.server = await asyncio.start_server(handler, '127.0.0.1', 0, **kwargs)
            self.addr = self.server.sockets[0].getsockname()
        else:
            if self.where == 'unix':
                self.tmp = tempfile.mkdtemp(prefix='evn-', dir='/tmp')
                self.addr = os.path.join(self.tmp, 's')
            else:
                self.addr = f'\0evioloop-streams-{os.getpid()}-{random.random()}'
            self.server = await asyncio.start_unix_server(handler, self.addr, **kwargs)
        return self.server

    async def connect(self, **kwargs):
        if self.where == 'tcp':
            return await asyncio.open_connection(*self.addr, **kwargs)
        return await asyncio.open_unix_connection(self.addr, **kwargs)

    async def close(self):
        self.server.close()
        await asyncio.wait_for(self.server.wait_closed(), 10)
        if self.tmp:
            for name in os.listdir(self.tmp):
                os.unlink(os.path.join(self.tmp, name))
            os.rmdir(self.tmp)


def test_streams_request_response(kind, where):
    async def main():
        ep = Endpoint(where)
        await ep.serve(line_server)
        try:
            reader, writer = await ep.connect()
            try:
                for i in range(50):
                    writer.write(b'line %d\n' % i)
                    await writer.drain()
                    assert await reader.readline() == b'LINE %d\n' % i
                writer.write(b'a\nb\nc\n')
                assert await reader.readexactly(6) == b'A\nB\nC\n'
                writer.write(b'x--y\n')
                assert await reader.readuntil(b'--') == b'X--'
                assert await reader.readline() == b'Y\n'
                writer.write_eof()
                assert await reader.read() == b'bye\n'
                assert reader.at_eof()
                assert writer.can_write_eof()
            finally:
                writer.close()
                await writer.wait_closed()
        finally:
            await ep.close()

    run(kind, main())


def test_streams_big_transfers_with_drain(kind, where):
    down = 8 << 20
    up = 6 << 20

    async def main():
        ep = Endpoint(where)
        await ep.serve(line_server)
        try:
            reader, writer = await ep.connect()
            try:
                # server -> client, read in odd-sized pieces
                writer.write(b'BIG %d\n' % down)
                await writer.drain()
                got = bytearray()
                rng = random.Random(1)
                while len(got) < down:
                    got += await reader.read(min(rng.randint(1, 300_000), down - len(got)))
                digest = (await reader.readline()).strip().decode()
                assert hashlib.sha256(got).hexdigest() == digest
                assert bytes(got) == pattern(down, seed=down)
                # client -> server, written with drain in random pieces
                data = pattern(up, seed=3)
                writer.write(b'SINK %d\n' % up)
                i = 0
                while i < up:
                    n = rng.randint(1, 500_000)
                    writer.write(data[i:i + n])
                    i += n
                    await writer.drain()
                digest = (await reader.readline()).strip().decode()
                assert digest == hashlib.sha256(data).hexdigest()
                writer.write_eof()
                assert await reader.read() == b'bye\n'
            finally:
                writer.close()
                await writer.wait_closed()
        finally:
            await ep.close()

    run(kind, main())


def test_streams_many_clients_at_once(kind, where):
    async def main():
        ep = Endpoint(where)
        await ep.serve(line_server)

        async def client(i):
            reader, writer = await ep.connect()
            try:
                for j in range(20):
                    writer.write(b'c%d m%d\n' % (i, j))
                    assert await reader.readline() == b'C%d M%d\n' % (i, j)
                writer.write_eof()
                assert await reader.read() == b'bye\n'
            finally:
                writer.close()
                await writer.wait_closed()

        try:
            await asyncio.gather(*(client(i) for i in range(50)))
        finally:
            await ep.close()

    run(kind, main())


def test_streams_limit(kind, where):
    async def main():
        ep = Endpoint(where)

        async def handler(reader, writer):
            try:
                with pytest.raises(ValueError):
                    await reader.readline()     # longer than the limit
                writer.write(b'ok\n')
                await writer.drain()
            finally:
                writer.close()
                await writer.wait_closed()

        await ep.serve(handler, limit=1024)
        try:
            reader, writer = await ep.connect()
            try:
                writer.write(b'x' * 5000 + b'\n')
                assert await asyncio.wait_for(reader.readline(), 10) == b'ok\n'
            finally:
                writer.close()
                await writer.wait_closed()
        finally:
            await ep.close()

    run(kind, main())


def test_streams_extra_info_and_peer_close(kind, where):
    async def main():
        ep = Endpoint(where)
        closed = asyncio.get_running_loop().create_future()

        async def handler(reader, writer):
            writer.write(b'hello\n')
            writer.close()
            await writer.wait_closed()
            closed.set_result(True)

        await ep.serve(handler)
        try:
            reader, writer = await ep.connect()
            try:
                assert writer.get_extra_info('peername') is not None
                assert writer.get_extra_info('socket') is not None
                assert await reader.readline() == b'hello\n'
                assert await reader.read() == b''
                assert reader.at_eof()
                await asyncio.wait_for(closed, 10)
            finally:
                writer.close()
                await writer.wait_closed()
        finally:
            await ep.close()

    run(kind, main())
