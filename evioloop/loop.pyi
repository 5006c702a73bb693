# Type stub for loop.py: Loop is the compiled core joined with the stock Unix
# selector loop's API (its MRO at runtime is CoreLoop, _UnixSelectorEventLoop).
import asyncio

from .core._core import CoreLoop

__all__ = ['Loop']

class Loop(CoreLoop, asyncio.SelectorEventLoop):
    """The evioloop event loop: a complete `asyncio.AbstractEventLoop`.

    The run loop, ready queue, timers, fd watching and socket I/O are
    compiled (`CoreLoop`); every other method is the stock Unix selector
    loop's, of the running Python.
    """
    def __init__(self) -> None:
        """A new loop, not running and not set as the current loop.

        Prefer `evioloop.new_event_loop()`, or `evioloop.run()`.

        Raises:
            OSError: the kernel refused the poller or wakeup file descriptors
                (out of file descriptors, for one).
        """
