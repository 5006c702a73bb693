# Type stub for loop.py: Loop is the compiled core joined with the stock Unix
# selector loop's API (its MRO at runtime is CoreLoop, _UnixSelectorEventLoop).
import asyncio

from ._core import CoreLoop

__all__ = ['Loop']

class Loop(CoreLoop, asyncio.SelectorEventLoop):
    def __init__(self) -> None: ...
