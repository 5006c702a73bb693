# Type stub for api.py: the names of the Events API (docs/events.md).
import datetime
import enum
from collections.abc import Callable
from typing import Any, Final, TypeAlias, overload

from typing_extensions import Buffer

from ._conn import Conn
from .server import Server

__all__ = ['Action', 'LoadBalance', 'Options', 'Events', 'InputStream']

class Action(enum.IntEnum):
    NONE = 0
    """Carry on."""
    DETACH = 1
    """Once the pending output is written, hand the socket to `detached` (TCP, Unix)."""
    CLOSE = 2
    """Close the connection once the pending output is written; read nothing more."""
    SHUTDOWN = 3
    """Stop the whole server: every connection is closed and gets `closed`."""

class LoadBalance(enum.IntEnum):
    RANDOM = 0
    """A random loop for each connection (the default)."""
    ROUND_ROBIN = 1
    """The loops in turn."""
    LEAST_CONNECTIONS = 2
    """The loop with the fewest connections."""

_Seconds: TypeAlias = float | datetime.timedelta

class Options:
    tcp_keepalive: _Seconds | None
    """Seconds of idle before the first keepalive probe; turns keepalive on (TCP only)."""
    tcp_keepalive_interval: _Seconds | None
    """Seconds between keepalive probes (the kernel's default when None)."""
    tcp_keepalive_count: int | None
    """Probes before the connection is dropped (the kernel's default when None)."""
    tcp_nodelay: bool
    """TCP_NODELAY (default True)."""
    reuse_input_buffer: bool
    """`in_` is a read-only memoryview over the loop's buffer, valid during `data` only."""
    write_buffer_high: int
    """Output past this many bytes stops reading the connection (default 1 MiB) ..."""
    write_buffer_low: int
    """... until it drains to this many (default `write_buffer_high // 4`)."""
    max_inbound: int
    """Unconsumed input the pull reader may keep (default 16 MiB); past it the
    connection is closed with `closed(conn, BufferError)`."""
    def __init__(
        self,
        *,
        tcp_keepalive: _Seconds | None = None,
        tcp_keepalive_interval: _Seconds | None = None,
        tcp_keepalive_count: int | None = None,
        tcp_nodelay: bool = True,
        reuse_input_buffer: bool = False,
        write_buffer_high: int = ...,
        write_buffer_low: int | None = None,
        max_inbound: int = ...,
    ) -> None:
        """Check and keep the options (every one keyword-only).

        Raises:
            TypeError: a keepalive time is neither seconds (int or float) nor a
                `timedelta`.
            ValueError: a keepalive time under 1 second, a `tcp_keepalive_count`
                that is not a positive int, `write_buffer_high` <
                `write_buffer_low`, a negative `write_buffer_low`, or a
                `max_inbound` under 1.
        """

DEFAULT_OPTIONS: Final[Options]

# What the callbacks may return: evio's full tuples, or the short forms
# (docs/events.md, "Short returns"). `out` is any bytes-like object.
_OpenedResult: TypeAlias = (
    tuple[Buffer | None, Options | None, Action | None] | Buffer | Options | Action | None
)
_DataResult: TypeAlias = tuple[Buffer | None, Action | None] | Buffer | Action | None
_TickResult: TypeAlias = tuple[_Seconds | None, Action | None] | _Seconds | Action | None

# The callbacks' types. `data`'s conn is a Conn (TCP, Unix) or a UdpConn (UDP),
# and its `in_` is bytes, a memoryview (Options.reuse_input_buffer) or None
# (after conn.wake()); both are Any here so that a subclass may annotate them
# as narrowly as its listeners allow.
_ServingCallback: TypeAlias = Callable[[Server], Action | None]
_OpenedCallback: TypeAlias = Callable[[Conn], _OpenedResult]
_ClosedCallback: TypeAlias = Callable[[Conn, BaseException | None], Action | None]
_DetachedCallback: TypeAlias = Callable[[Conn, Any], Action | None]
_PreWriteCallback: TypeAlias = Callable[[], object]
_DataCallback: TypeAlias = Callable[[Any, Any], _DataResult]
_TickCallback: TypeAlias = Callable[[], _TickResult]
_ShutdownCallback: TypeAlias = Callable[[Server], object]

class Events:
    num_loops: int
    """evio's NumLoops: 0 or 1 is one loop, -1 one per CPU (default 1).

    A value that means more than one loop makes `serve`/`listen` raise
    `NotImplementedError` before anything is served.
    """
    load_balance: LoadBalance
    """evio's LoadBalance (default `RANDOM`): checked, and kept for several loops."""
    serving: _ServingCallback | None
    """`serving(server)`: once, the listeners open, before the first accept.

    Returns an action: `SHUTDOWN` stops at once.
    """
    opened: _OpenedCallback | None
    """`opened(conn)`: a connection was accepted, before anything is read.

    Returns `(out, options, action)` or a short form.
    """
    closed: _ClosedCallback | None
    """`closed(conn, err)`: the connection is gone, exactly once per opened connection.

    `err` is None after a clean EOF, a `CLOSE` or a shutdown, else the
    exception. Returns an action: only `SHUTDOWN` is honoured.
    """
    detached: _DetachedCallback | None
    """`detached(conn, sock)`: after a `DETACH`, `sock` is a blocking socket that is yours.

    Returns an action: only `SHUTDOWN` is honoured.
    """
    pre_write: _PreWriteCallback | None
    """`pre_write()`: before each attempt to write a connection's pending output."""
    data: _DataCallback | None
    """`data(conn, in_)`: input arrived (`in_`), or `conn.wake()` was called (`in_` is None).

    Returns `(out, action)` or a short form.
    """
    tick: _TickCallback | None
    """`tick()`: once at start, then after each returned delay.

    Returns `(delay, action)` or a short form: a delay in seconds or a
    `timedelta` (none means the next loop iteration); `SHUTDOWN` stops.
    """
    shutdown: _ShutdownCallback | None
    """`shutdown(server)`: once, after every connection got `closed` and the listeners closed."""
    def __init__(
        self,
        *,
        serving: _ServingCallback | None = ...,
        opened: _OpenedCallback | None = ...,
        closed: _ClosedCallback | None = ...,
        detached: _DetachedCallback | None = ...,
        pre_write: _PreWriteCallback | None = ...,
        data: _DataCallback | None = ...,
        tick: _TickCallback | None = ...,
        shutdown: _ShutdownCallback | None = ...,
        num_loops: int = ...,
        load_balance: LoadBalance = ...,
    ) -> None:
        """Set the given callbacks (and `num_loops`, `load_balance`) on this object.

        Raises:
            TypeError: an unknown keyword, or a callback that is not callable.
        """

class InputStream:
    def __init__(self) -> None: ...
    @overload
    def begin(self, packet: bytes) -> bytes: ...
    @overload
    def begin(self, packet: Buffer) -> Buffer: ...
    @overload
    def begin(self, packet: None) -> bytes | None: ...
    def end(self, rest: Buffer | None) -> None: ...
    def __len__(self) -> int: ...
