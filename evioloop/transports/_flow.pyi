# Type stub for the compiled _flow.pyx: internal to the transports (no public names).
from typing import Any

def __getattr__(name: str) -> Any: ...
