# Type stub for the compiled Events connection (_conn.pyx, docs/events.md "Conn").
from collections.abc import Callable, Iterable
from typing import Any

from typing_extensions import Buffer

class Conn:
    """One connection of an Events server (evio's Conn).

    Made by the server, never by user code; handed to `opened`, `data`,
    `closed` and `detached`. Every member is for the loop thread except
    `wake()`, `write_threadsafe()` and `close()`, which any thread may call.
    """
    context: Any
    """Anything you like (evio's Context/SetContext); starts as None."""
    @property
    def addr_index(self) -> int:
        """Which listener accepted it: the position of its address in `serve`'s addrs."""
    @property
    def fd(self) -> int:
        """The connection's file descriptor; -1 once it is closed."""
    @property
    def local_addr(self) -> Any:
        """As the socket module gives it: (host, port[, ...]) or a Unix path."""
    @property
    def remote_addr(self) -> Any:
        """The peer's address, as the socket module gives it (from accept)."""
    @property
    def output_buffered(self) -> int:
        """Bytes written but not yet taken by the kernel (0 once closed)."""
    @property
    def inbound_buffered(self) -> int:
        """Unconsumed input the pull reader holds.

        Raises:
            RuntimeError: outside `Events.data`.
        """
    def write(self, data: Buffer) -> None:
        """Write now: one send attempt at once; only what the kernel refused is queued.

        Ignored once the connection is closed.

        Raises:
            TypeError: `data` is not a bytes-like object.
        """
    def writelines(self, list_of_data: Iterable[Buffer]) -> None:
        """`write()` each item, in order.

        Raises:
            TypeError: an item is not a bytes-like object.
        """
    def write_threadsafe(
        self,
        data: Buffer,
        callback: Callable[[Conn, BaseException | None], object] | None = None,
    ) -> None:
        """From any thread: queue `data` for the loop to write, in each thread's order.

        `callback(conn, err)` runs on the loop once the data has reached the
        kernel (`err` is None) or the connection was lost first (`err` is a
        `ConnectionError`).

        Raises:
            BufferError: the connection's output would pass 4 x `write_buffer_high`.
        """
    def wake(self) -> None:
        """From any thread: later, on the loop, call `data(conn, None)`.

        Wakes that arrive before that call runs are merged into it; a wake for
        a closed connection is dropped.
        """
    def close(self) -> None:
        """From any thread: close once the pending output is written (as `Action.CLOSE`)."""
    def pause_reading(self) -> None:
        """Stop reading this connection until `resume_reading()`."""
    def resume_reading(self) -> None:
        """Read this connection again after `pause_reading()`."""
    def is_reading(self) -> bool:
        """True while the connection is open and read.

        False after `pause_reading()`, and while its output is past the
        high-water mark.
        """
    def peek(self, n: int = -1) -> bytes:
        """Up to `n` bytes of unconsumed input (-1: all), without consuming them.

        Raises:
            RuntimeError: outside `Events.data`.
        """
    def next(self, n: int = -1) -> bytes:
        """Up to `n` bytes of unconsumed input (-1: all), consumed.

        Raises:
            RuntimeError: outside `Events.data`.
        """
    def discard(self, n: int = -1) -> int:
        """Drop up to `n` bytes of unconsumed input (-1: all); return how many.

        Raises:
            RuntimeError: outside `Events.data`.
        """
