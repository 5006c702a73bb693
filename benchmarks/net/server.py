"""One benchmark server in its own process: python server.py LOOP KIND [PORT].

LOOP is evioloop, uvloop, asyncio (the stock loop) or rloop; KIND is

    proto     echo with asyncio.Protocol (data_received -> transport.write)
    streams   echo with asyncio streams (start_server; reader.read + writer.write + drain)
    buffered  echo with asyncio.BufferedProtocol (get_buffer / buffer_updated)
    http      minimal keep-alive HTTP/1.1 server: httptools' parser, a fixed response
    http2w    the same, each response written as head and body in two transport.write()s
    redis     a minimal Redis server (RESP: PING, SET, GET, INCR, ...), resp.py's Protocol
    events-*  the Events API servers of events_servers.py (echo, and the HTTP and Redis
              examples of examples/): evioloop.serve() on evioloop, serve_async() on
              any other loop (portable mode)

The same code runs on every loop. The server listens on 127.0.0.1 (PORT 0 = any free
port) and prints "ready PORT". Control on stdin, read by a thread that sleeps in read()
between commands: "cpu" prints "cpu SECONDS" (user + sys of the whole process, from
resource.getrusage(RUSAGE_SELF)); "quit" or EOF ends the process.
"""
import asyncio
import os
import resource
import sys
import threading

HTTP_HEAD = (b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
             b"Content-Length: 13\r\n\r\n")
HTTP_BODY = b"Hello, World!"
HTTP_RESPONSE = HTTP_HEAD + HTTP_BODY
READ_SIZE = 256 * 1024
BACKLOG = 1024


class EchoProtocol(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.transport.write(data)


class EchoBufferedProtocol(asyncio.BufferedProtocol):
    def connection_made(self, transport):
        self.transport = transport
        self.buffer = bytearray(READ_SIZE)

    def get_buffer(self, sizehint):
        return self.buffer

    def buffer_updated(self, nbytes):
        # A copy: a transport may keep what write() could not send yet, and the
        # next read reuses self.buffer.
        self.transport.write(self.buffer[:nbytes])


async def echo_streams(reader, writer):
    try:
        while True:
            data = await reader.read(READ_SIZE)
            if not data:
                break
            writer.write(data)
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()


class HttpProtocol(asyncio.Protocol):
    def __init__(self):
        import httptools
        self.parser = httptools.HttpRequestParser(self)
        self.error = httptools.HttpParserError

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        try:
            self.parser.feed_data(data)
        except self.error:
            self.transport.close()

    def on_message_complete(self):
        self.transport.write(HTTP_RESPONSE)
        if not self.parser.should_keep_alive():
            self.transport.close()


class HttpTwoWritesProtocol(HttpProtocol):
    """The same server, writing each response as head + body, as frameworks do."""

    def on_message_complete(self):
        self.transport.write(HTTP_HEAD)
        self.transport.write(HTTP_BODY)
        if not self.parser.should_keep_alive():
            self.transport.close()


def new_loop(name):
    if name == 'evioloop':
        import evioloop
        return evioloop.new_event_loop()
    if name == 'uvloop':
        import uvloop
        return uvloop.new_event_loop()
    if name == 'rloop':
        import rloop
        return rloop.new_event_loop()
    if name == 'asyncio':
        return asyncio.SelectorEventLoop()
    raise SystemExit(f'unknown loop {name!r}')


def control():
    for line in sys.stdin:
        if line.strip() != 'cpu':
            break
        ru = resource.getrusage(resource.RUSAGE_SELF)
        sys.stdout.write(f'cpu {ru.ru_utime + ru.ru_stime:.6f}\n')
        sys.stdout.flush()
    sys.stdout.flush()
    os._exit(0)


def announce(port):
    sys.stdout.write(f'ready {port}\n')
    sys.stdout.flush()
    threading.Thread(target=control, daemon=True).start()


def main(argv):
    loop_name, kind = argv[0], argv[1]
    port = int(argv[2]) if len(argv) > 2 else 0
    if kind.startswith('events-'):
        import events_servers
        events_servers.main(loop_name, kind, port, new_loop, announce)
        return
    loop = new_loop(loop_name)
    asyncio.set_event_loop(loop)
    if kind == 'streams':
        coro = asyncio.start_server(echo_streams, '127.0.0.1', port, backlog=BACKLOG)
    else:
        if kind == 'redis':
            import resp
            factory = resp.factory()
        else:
            factory = {'proto': EchoProtocol, 'buffered': EchoBufferedProtocol,
                       'http': HttpProtocol, 'http2w': HttpTwoWritesProtocol}[kind]
        coro = loop.create_server(factory, '127.0.0.1', port, backlog=BACKLOG)
    server = loop.run_until_complete(coro)
    announce(server.sockets[0].getsockname()[1])
    loop.run_forever()


if __name__ == '__main__':
    main(sys.argv[1:])
