"""A program that uses evioloop's public API, for `mypy --strict`.

tests/test_typing.py type-checks it against the installed evioloop (its stubs
and py.typed); it is never run, so it need not make sense as a program.
"""
from __future__ import annotations

import asyncio
import datetime
import socket
import sys

import evioloop
from evioloop import Action, Conn, Events, InputStream, LoadBalance, Options, Server, UdpConn


class Echo(Events):
    num_loops = 1
    load_balance = LoadBalance.ROUND_ROBIN

    def serving(self, server: Server) -> Action | None:
        print(server.addrs, server.count_connections())
        return None

    def opened(self, conn: Conn) -> tuple[bytes | None, Options | None, Action | None]:
        conn.context = InputStream()
        print(conn.addr_index, conn.local_addr, conn.remote_addr, conn.fd)
        return b'hello\r\n', Options(tcp_keepalive=datetime.timedelta(seconds=30),
                                     reuse_input_buffer=False), Action.NONE

    def data(self, conn: Conn, in_: bytes | None) -> tuple[bytes, Action] | bytes | None:
        if in_ is None:
            return None
        stream = conn.context
        assert isinstance(stream, InputStream)
        buf: bytes = stream.begin(in_)
        stream.end(b'')
        head = conn.peek(1) + conn.next(1)
        n: int = conn.discard() + conn.inbound_buffered
        conn.write(head)
        conn.writelines([b'a', bytearray(b'b'), memoryview(b'c')])
        conn.write_threadsafe(b'x', callback=lambda c, err: print(c.fd, err))
        conn.wake()
        if conn.output_buffered > n and conn.is_reading():
            conn.pause_reading()
            conn.resume_reading()
        if buf == b'quit':
            conn.close()
            return buf, Action.CLOSE
        return buf

    def closed(self, conn: Conn, err: BaseException | None) -> Action | None:
        return Action.SHUTDOWN if err else None

    def detached(self, conn: Conn, sock: socket.socket) -> None:
        sock.close()

    def tick(self) -> tuple[float, Action]:
        return 0.5, Action.NONE

    def shutdown(self, server: Server) -> None:
        print('bye', server.udp_dropped)


def udp_data(conn: UdpConn, in_: bytes) -> bytes:
    conn.sendto(in_, conn.remote_addr)
    print(conn.addr_index, conn.local_addr, conn.fd)
    return in_


async def main() -> int:
    server = await evioloop.listen(Echo(), 'tcp://127.0.0.1:0', 'udp://127.0.0.1:0')
    async with server:
        n: int = server.count_connections()
    server.stop()
    await server.wait_closed()
    kw = Events(data=lambda conn, in_: in_, tick=lambda: datetime.timedelta(seconds=1))
    other = await evioloop.listen(Events(data=udp_data), 'udp://127.0.0.1:0', portable=True)
    other.stop()
    print(kw, other.is_serving(), other.native)
    t = asyncio.create_task(evioloop.serve_async(kw, 'tcp://127.0.0.1:0'))
    t.cancel()
    return n


def run_all() -> None:
    r: int = evioloop.run(main())
    loop: evioloop.Loop = evioloop.new_event_loop()
    loop.close()
    if sys.version_info >= (3, 12):
        r += asyncio.run(main(), loop_factory=evioloop.new_event_loop)
    if sys.version_info >= (3, 11):
        with asyncio.Runner(loop_factory=evioloop.new_event_loop) as runner:
            r += runner.run(main())
    print(r, evioloop.BACKEND, evioloop.__version__, evioloop.Handle, evioloop.TimerHandle)
    evioloop.serve(Events(data=lambda conn, in_: (in_, Action.CLOSE)), 'tcp://127.0.0.1:0')
