# Type stub for the compiled _portable.pyx: internal to the Events API (no public names).
from typing import Any

def __getattr__(name: str) -> Any: ...
