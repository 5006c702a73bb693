# Type stub for the compiled _dgram.pyx: internal to Loop (no public names).
from typing import Any

def __getattr__(name: str) -> Any: ...
