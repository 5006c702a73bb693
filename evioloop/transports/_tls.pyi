# Type stub for the compiled _tls.pyx: internal to Loop (no public names).
from typing import Any

def __getattr__(name: str) -> Any: ...
