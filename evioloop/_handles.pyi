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
    ) -> None: ...
    def get_context(self) -> contextvars.Context: ...
    def cancel(self) -> None: ...
    def cancelled(self) -> bool: ...

class TimerHandle(Handle):
    def __init__(
        self,
        when: float,
        callback: Callable[..., object],
        args: tuple[Any, ...],
        loop: asyncio.AbstractEventLoop,
        context: contextvars.Context | None = None,
    ) -> None: ...
    def when(self) -> float: ...
