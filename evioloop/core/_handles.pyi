# Type stub for the compiled handles (_handles.pyx).
import asyncio
import contextvars
from collections.abc import Callable
from typing import Any

class Handle:
    """The loop's compiled callback handle (duck-compatible with asyncio.Handle)."""
    def __init__(
        self,
        callback: Callable[..., object],
        args: tuple[Any, ...],
        loop: asyncio.AbstractEventLoop,
        context: contextvars.Context | None = None,
    ) -> None:
        """A handle that calls `callback(*args)` in `context` when the loop runs it.

        `context` None: a copy of the current context. The loop makes its
        handles itself (`call_soon` and the like); this is for code that
        builds a handle as it would an `asyncio.Handle`.
        """
    def get_context(self) -> contextvars.Context:
        """The context the callback runs in."""
    def cancel(self) -> None:
        """Do not run the callback (a no-op once it ran or was cancelled)."""
    def cancelled(self) -> bool:
        """True once `cancel()` was called."""

class TimerHandle(Handle):
    """The loop's compiled timer handle (duck-compatible with asyncio.TimerHandle)."""
    def __init__(
        self,
        when: float,
        callback: Callable[..., object],
        args: tuple[Any, ...],
        loop: asyncio.AbstractEventLoop,
        context: contextvars.Context | None = None,
    ) -> None:
        """A handle for `callback(*args)` due at `when`, on the loop's clock.

        `context` None: a copy of the current context. The loop makes its
        timer handles itself (`call_later`, `call_at`).
        """
    def when(self) -> float:
        """The deadline, on the loop's clock (`loop.time()`)."""
