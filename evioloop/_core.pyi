# Type stub for the compiled core (_core.pyx): the names the public API exposes.
import asyncio
import contextvars
from collections.abc import Callable
from typing import Any

class CoreLoop:
    """The compiled half of `evioloop.Loop`: run loop, ready queue, timers, fd table."""
