"""Layer 5, portable mode: an Events server on any asyncio loop.

evio's stdlib mode, done with asyncio's own pieces: each listener becomes an
asyncio server (or datagram endpoint) of the host loop, and each connection
an `asyncio.Protocol` that forwards to a compiled `PortableConn`: native
mode's `Conn` with only its I/O steps done through the transport, so both
modes keep one set of rules (docs/events.md says where they
differ).
"""
import asyncio
import errno

from . import _portable, _udp

__all__ = ['start']


class StreamAdapter(asyncio.Protocol):
    """The host transport's protocol: every event goes to the Conn."""

    __slots__ = ('_srv', '_index', '_conn')

    def __init__(self, srv, index):
        self._srv = srv
        self._index = index
        self._conn = None

    def connection_made(self, transport):
        self._conn = _portable.open_portable(self._srv, transport, self._index)

    def data_received(self, data):
        self._conn._feed(data)

    def eof_received(self):
        return self._conn._eof()

    def connection_lost(self, exc):
        self._conn._lost(exc)

    def pause_writing(self):
        self._conn._water(True)

    def resume_writing(self):
        self._conn._water(False)


class DatagramAdapter(asyncio.DatagramProtocol):

    __slots__ = ('_srv', '_index', '_transport')

    def __init__(self, srv, index):
        self._srv = srv
        self._index = index
        self._transport = None

    def connection_made(self, transport):
        self._transport = transport

    def datagram_received(self, data, addr):
        _udp.portable_datagram(self._srv, self._transport, self._index, data, addr)

    def error_received(self, exc):
        if getattr(exc, 'errno', None) == errno.ENOBUFS:
            # a send the kernel refused: the host transport dropped the datagram
            _udp.portable_send_refused(self._srv, exc)
            return
        # an ICMP error on the socket: not fatal, as in native mode
        self._srv.loop.call_exception_handler({
            'message': 'Events server: UDP receive error',
            'exception': exc,
        })


async def start(loop, srv, listen_addr, index):
    """Serve one bound listener on the host loop; returns what closes it."""
    if listen_addr.is_udp:
        transport, _ = await loop.create_datagram_endpoint(
            lambda: DatagramAdapter(srv, index), sock=listen_addr.sock)
        return transport
    return await loop.create_server(lambda: StreamAdapter(srv, index),
                                    sock=listen_addr.sock, backlog=1024)
