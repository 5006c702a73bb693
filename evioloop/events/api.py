"""Layer 5: the names of evio's Events API (docs/events.md is the contract).

`Events` is what the user writes; `Action`, `Options` and `LoadBalance` are
what the callbacks return or set; `InputStream` is evio's helper for input
that arrives in pieces. Nothing here touches a socket.
"""
import datetime
import enum

__all__ = ['Action', 'LoadBalance', 'Options', 'Events', 'InputStream']


class Action(enum.IntEnum):
    """What a callback asks the loop to do next (evio's Action)."""
    NONE = 0        # carry on
    DETACH = 1      # hand the socket to detached() once the output is written
    CLOSE = 2       # close once the output is written
    SHUTDOWN = 3    # stop the whole server


class LoadBalance(enum.IntEnum):
    """How connections would be spread over several loops (one loop for now)."""
    RANDOM = 0
    ROUND_ROBIN = 1
    LEAST_CONNECTIONS = 2


class Options:
    """Per-connection options, returned by `Events.opened`."""

    __slots__ = ('tcp_keepalive', 'tcp_keepalive_interval', 'tcp_keepalive_count',
                 'tcp_nodelay', 'reuse_input_buffer', 'write_buffer_high',
                 'write_buffer_low', 'max_inbound')

    def __init__(self, *, tcp_keepalive=None, tcp_keepalive_interval=None,
                 tcp_keepalive_count=None, tcp_nodelay=True, reuse_input_buffer=False,
                 write_buffer_high=1024 * 1024, write_buffer_low=None,
                 max_inbound=16 * 1024 * 1024):
        for name, value in (('tcp_keepalive', tcp_keepalive),
                            ('tcp_keepalive_interval', tcp_keepalive_interval)):
            if value is not None:
                value = _seconds(value, name)
                if value < 1:
                    raise ValueError(f'{name} must be at least 1 second, got {value!r}')
        if tcp_keepalive_count is not None and (
                not isinstance(tcp_keepalive_count, int) or tcp_keepalive_count < 1):
            raise ValueError(f'tcp_keepalive_count must be a positive int, '
                             f'got {tcp_keepalive_count!r}')
        if write_buffer_low is None:
            write_buffer_low = write_buffer_high // 4
        if not write_buffer_high >= write_buffer_low >= 0:
            raise ValueError(f'write_buffer_high ({write_buffer_high!r}) must be >= '
                             f'write_buffer_low ({write_buffer_low!r}) must be >= 0')
        if max_inbound < 1:
            raise ValueError(f'max_inbound must be positive, got {max_inbound!r}')
        self.tcp_keepalive = tcp_keepalive
        self.tcp_keepalive_interval = tcp_keepalive_interval
        self.tcp_keepalive_count = tcp_keepalive_count
        self.tcp_nodelay = bool(tcp_nodelay)
        self.reuse_input_buffer = bool(reuse_input_buffer)
        self.write_buffer_high = write_buffer_high
        self.write_buffer_low = write_buffer_low
        self.max_inbound = max_inbound

    def __repr__(self):
        fields = ', '.join(f'{k}={getattr(self, k)!r}' for k in self.__slots__)
        return f'Options({fields})'


DEFAULT_OPTIONS = Options()


def _seconds(value, what):
    if isinstance(value, datetime.timedelta):
        return value.total_seconds()
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return value
    raise TypeError(f'{what} must be seconds (int or float) or a timedelta, '
                    f'not {type(value).__name__}')


_CALLBACKS = ('serving', 'opened', 'closed', 'detached', 'pre_write', 'data', 'tick',
              'shutdown')


class Events:
    """evio's Events: the callbacks of a server, every one optional.

    Subclass it and define the methods you need, or pass functions as
    keywords, like evio's struct literal::

        Events(data=lambda conn, in_: in_)

    Callbacks (all run on the server's loop; see docs/events.md):
    serving(server) -> action; opened(conn) -> (out, options, action);
    closed(conn, err) -> action; detached(conn, sock) -> action;
    pre_write(); data(conn, in_) -> (out, action); tick() -> (delay, action);
    shutdown(server).
    """

    num_loops = 1                       # evio's NumLoops: 0/1 one loop, -1 one per CPU
    load_balance = LoadBalance.RANDOM   # evio's LoadBalance (used once there are loops)

    serving = opened = closed = detached = pre_write = data = tick = shutdown = None

    def __init__(self, **callbacks):
        for name, value in callbacks.items():
            if name in ('num_loops', 'load_balance'):
                setattr(self, name, value)
            elif name in _CALLBACKS:
                if value is not None and not callable(value):
                    raise TypeError(f'Events({name}=...) must be callable, '
                                    f'not {type(value).__name__}')
                setattr(self, name, value)
            else:
                raise TypeError(f'Events() got an unexpected keyword argument {name!r}')

    def __repr__(self):
        defined = [n for n in _CALLBACKS if getattr(self, n) is not None]
        return f'<{type(self).__name__} {" ".join(defined) or "(no callbacks)"}>'


class InputStream:
    """evio's InputStream: accumulate input that arrives in pieces.

    Keep one per connection (in `conn.context`)::

        data = stream.begin(in_)    # earlier leftovers + in_ (in_ itself if none)
        ... consume a prefix of data ...
        stream.end(data[consumed:]) # keep the unconsumed tail for next time
    """

    __slots__ = ('_buf',)

    def __init__(self):
        """An empty stream: nothing kept."""
        self._buf = b''

    def begin(self, packet):
        """The bytes kept so far followed by `packet`; `packet` itself if none.

        Raises:
            TypeError: bytes are kept and `bytes(packet)` fails (a str, say).
        """
        if not self._buf:
            return packet
        if packet:
            self._buf += bytes(packet)
        return self._buf

    def end(self, rest):
        """Keep `rest` (copied: `begin`'s packet may be the loop's buffer).

        Raises:
            TypeError: `bytes(rest)` fails (a str, say).
        """
        self._buf = bytes(rest) if rest else b''

    def __len__(self):
        """How many bytes are kept: the length of what the last `end()` got."""
        return len(self._buf)
