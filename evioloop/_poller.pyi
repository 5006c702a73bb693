# Type stub for the compiled poller (_poller.pyx).
from typing import Final

BACKEND: Final[str]
"""The poller in use: "epoll" or "kqueue"."""
