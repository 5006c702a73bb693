"""Connection churn for tests/test_leaks.py, run as its own process.

    python churn_client.py COUNT ADDR [ADDR ...]

ADDR is host:port (TCP) or a Unix socket path. Opens COUNT connections in
turn over the addresses, each sending a few bytes and checking that they come
back, then ending it: every other connection closes cleanly, the rest reset
(SO_LINGER 0), so that TCP leaves no TIME_WAIT behind to run out of ports.
Prints "ok COUNT" on success; exits non-zero naming the first failure.

It runs outside the test's process so that the loop under test gets one core
to itself and the client's sockets never share its GIL.
"""
import socket
import struct
import sys

LINGER_RESET = struct.pack('ii', 1, 0)


def parse(addr):
    """(family, sockaddr): numeric only, so that no connection pays a lookup."""
    if ':' in addr:
        host, port = addr.rsplit(':', 1)
        return socket.AF_INET, (host, int(port))
    return socket.AF_UNIX, addr


def main():
    count = int(sys.argv[1])
    addrs = sys.argv[2:]
    targets = [parse(a) for a in addrs]
    for i in range(count):
        family, sockaddr = targets[i % len(targets)]
        s = socket.socket(family, socket.SOCK_STREAM)
        s.connect(sockaddr)
        msg = b'%d\n' % i
        s.sendall(msg)
        got = b''
        while len(got) < len(msg):
            chunk = s.recv(64)
            if not chunk:
                break
            got += chunk
        if got != msg:
            sys.exit(f'connection {i} to {addrs[i % len(addrs)]}: sent {msg!r}, got {got!r}')
        if i % 2:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_RESET)
        s.close()
    print('ok', count)


if __name__ == '__main__':
    main()
