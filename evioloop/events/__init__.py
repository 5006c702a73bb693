"""Layer 5: evio's Events API on evioloop's dispatch (docs/events.md).

    evioloop.serve(evioloop.Events(data=lambda conn, in_: in_), 'tcp://:5000')
"""
from ._conn import Conn
from ._udp import UdpConn
from .addrs import parse_addr
from .api import Action, Events, InputStream, LoadBalance, Options
from .server import Server, listen, serve, serve_async

__all__ = ['Action', 'Conn', 'Events', 'InputStream', 'LoadBalance', 'Options', 'Server',
           'UdpConn', 'listen', 'parse_addr', 'serve', 'serve_async']
