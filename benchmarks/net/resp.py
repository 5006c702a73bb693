"""The Redis example's protocol as an asyncio.Protocol, for the Redis cells (server.py redis).

It runs the very parser and command executor of examples/redis_server.py
(`parse_command`, `Store`), in the same loop as that example's Events `data` callback:
the unconsumed tail of the input is kept, every complete command of one
data_received call is executed, and the replies go out in one transport.write().  So
the Events rows and these rows differ only in how bytes get in and out: the Events
API on evioloop, or asyncio's Protocol and Transport on any loop.
"""
import asyncio

import events_servers


class RedisProtocol(asyncio.Protocol):
    def __init__(self, ex, store):
        self.parse_command = ex.parse_command
        self.ProtocolError = ex.ProtocolError
        self.execute = store.execute
        self.buf = b''

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        buf = self.buf + data if self.buf else data
        out = []
        pos = 0
        parse_command, execute = self.parse_command, self.execute
        while True:
            try:
                args, pos = parse_command(buf, pos)
            except self.ProtocolError as err:
                out.append(err.reply())
                break
            if args is None:
                self.buf = buf[pos:]
                if out:
                    self.transport.write(b''.join(out))
                return
            if args:
                out.append(execute(args))
                if args[0].lower() == b'quit':
                    break
        self.buf = b''
        self.transport.write(b''.join(out))
        self.transport.close()


def factory():
    ex = events_servers.example_module('redis_server')
    store = ex.Store()
    return lambda: RedisProtocol(ex, store)
