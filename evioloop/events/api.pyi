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
    DETACH = 1
    CLOSE = 2
    SHUTDOWN = 3

class LoadBalance(enum.IntEnum):
    RANDOM = 0
    ROUND_ROBIN = 1
    LEAST_CONNECTIONS = 2

_Seconds: TypeAlias = float | datetime.timedelta

class Options:
    tcp_keepalive: _Seconds | None
    tcp_keepalive_interval: _Seconds | None
    tcp_keepalive_count: int | None
    tcp_nodelay: bool
    reuse_input_buffer: bool
    write_buffer_high: int
    write_buffer_low: int
    max_inbound: int
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
    ) -> None: ...

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
    load_balance: LoadBalance
    serving: _ServingCallback | None
    opened: _OpenedCallback | None
    closed: _ClosedCallback | None
    detached: _DetachedCallback | None
    pre_write: _PreWriteCallback | None
    data: _DataCallback | None
    tick: _TickCallback | None
    shutdown: _ShutdownCallback | None
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
    ) -> None: ...

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
