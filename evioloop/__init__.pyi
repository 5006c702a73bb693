# Type stub for the package face (__init__.py).
import asyncio
from collections.abc import Coroutine
from typing import Any, Final, TypeVar

from .core._handles import Handle as Handle, TimerHandle as TimerHandle
from .events import (
    Action as Action,
    Conn as Conn,
    Events as Events,
    InputStream as InputStream,
    LoadBalance as LoadBalance,
    Options as Options,
    Server as Server,
    UdpConn as UdpConn,
    listen as listen,
    serve as serve,
    serve_async as serve_async,
)
from .loop import Loop as Loop

__all__ = ['Loop', 'new_event_loop', 'run', 'install', 'EventLoopPolicy', 'BACKEND',
           'Handle', 'TimerHandle',
           'serve', 'serve_async', 'listen', 'Events', 'Action', 'Options', 'LoadBalance',
           'InputStream', 'Conn', 'UdpConn', 'Server']

__version__: Final[str]
BACKEND: Final[str]
"""The poller in use: "epoll" or "kqueue"."""

_T = TypeVar('_T')

def new_event_loop() -> Loop: ...
def run(main: Coroutine[Any, Any, _T], *, debug: bool | None = None) -> _T: ...
def install() -> None: ...

class EventLoopPolicy(asyncio.DefaultEventLoopPolicy):
    def __init__(self) -> None: ...
