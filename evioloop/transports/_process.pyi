# Type stub for the compiled _process.pyx: internal to Loop (no public names).
from typing import Any

def __getattr__(name: str) -> Any: ...
