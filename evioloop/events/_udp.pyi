# Type stub for the compiled UDP conn (_udp.pyx, docs/events.md "UDP").
from typing import Any

from typing_extensions import Buffer

class UdpConn:
    """One datagram's conn, as in evio: a fresh object per datagram.

    Handed to `data(conn, datagram)` on a UDP listener. It has no context,
    no `wake()` and no pull reader.
    """
    @property
    def addr_index(self) -> int:
        """Which listener received the datagram: its position in `serve`'s addrs."""
    @property
    def remote_addr(self) -> Any:
        """The sender's address, as the socket module gives it."""
    @property
    def local_addr(self) -> Any:
        """The listener's address, as the socket module gives it."""
    @property
    def fd(self) -> int:
        """The listener's file descriptor (-1 when the host transport has no socket)."""
    def sendto(self, data: Buffer, addr: Any) -> None:
        """Send a datagram to any address from this listener.

        A datagram the kernel does not take at once waits in the listener's
        bounded queue; what overflows it is dropped and counted in
        `Server.udp_dropped`.

        Raises:
            TypeError: `data` is not a bytes-like object.
            OSError: the kernel refused the datagram for another reason than a
                full buffer.
        """
