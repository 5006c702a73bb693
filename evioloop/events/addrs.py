"""Layer 5: evio's server addresses, parsed and bound.

`parse_addr` reads `scheme://address?option=value` as evio's parseAddr does,
but refuses what evio silently ignores (an unknown scheme or option, a missing
port). `open_listeners` binds every address before anything is served and, if
any of them fails, closes what it opened and removes the Unix socket files it
made, so a failed start leaves nothing behind.
"""
import errno
import os
import socket
import stat

__all__ = ['ListenAddr', 'parse_addr', 'open_listeners', 'close_listeners']

_SCHEMES = {
    'tcp': (socket.SOCK_STREAM, socket.AF_UNSPEC),
    'tcp4': (socket.SOCK_STREAM, socket.AF_INET),
    'tcp6': (socket.SOCK_STREAM, socket.AF_INET6),
    'udp': (socket.SOCK_DGRAM, socket.AF_UNSPEC),
    'udp4': (socket.SOCK_DGRAM, socket.AF_INET),
    'udp6': (socket.SOCK_DGRAM, socket.AF_INET6),
    'unix': (socket.SOCK_STREAM, socket.AF_UNIX),
}


class ListenAddr:
    """One parsed address: what to bind, and the listening socket once bound."""

    __slots__ = ('text', 'scheme', 'family', 'socktype', 'host', 'port', 'path',
                 'reuseport', 'portable', 'sock', 'bound', 'unix_file')

    def __init__(self, text):
        self.text = text
        self.sock = None
        self.bound = None           # the address as the socket reports it
        self.unix_file = None       # the file to remove at shutdown

    @property
    def is_udp(self):
        return self.socktype == socket.SOCK_DGRAM

    def __repr__(self):
        return f'<ListenAddr {self.text!r}>'


def _truthy(value):
    # evio: true when the value starts with t, T, y, Y or a digit 1-9
    return bool(value) and (value[0] in 'tTyY' or '1' <= value[0] <= '9')


def parse_addr(text):
    """Parse one evio address, `scheme://address?option=value`, into a ListenAddr.

    Schemes: tcp, tcp4, tcp6, udp, udp4, udp6, unix, each with an optional
    `-net` (evio's switch to its portable mode); no scheme means tcp. The one
    option is `reuseport=true|false`.

    Raises:
        TypeError: `text` is not a str.
        ValueError: `text` is malformed (an unknown scheme or option, no
            port or no path); the message names the address.
    """
    if not isinstance(text, str):
        raise TypeError(f'an address must be a str, not {type(text).__name__}')
    a = ListenAddr(text)
    scheme, sep, rest = text.partition('://')
    if not sep:
        scheme, rest = 'tcp', text
    a.portable = scheme.endswith('-net')     # evio's switch to its stdlib mode
    if a.portable:
        scheme = scheme[:-4]
    if scheme not in _SCHEMES:
        raise ValueError(f'unknown scheme {scheme!r} in address {text!r} '
                         f'(known: {", ".join(_SCHEMES)}, each with an optional -net)')
    a.scheme = scheme
    a.socktype, a.family = _SCHEMES[scheme]
    rest, q, query = rest.partition('?')
    a.reuseport = False
    if q:
        for part in query.split('&'):
            key, eq, value = part.partition('=')
            if key != 'reuseport' or not eq:
                raise ValueError(f'unknown option {part!r} in address {text!r} '
                                 f'(the only option is reuseport=true|false)')
            a.reuseport = _truthy(value)
    a.host = a.port = a.path = None
    if scheme == 'unix':
        if not rest:
            raise ValueError(f'no path in address {text!r}')
        a.path = rest
        return a
    host, colon, port = rest.rpartition(':')
    if not colon:
        raise ValueError(f'no port in address {text!r} (expected host:port or :port)')
    if host.startswith('['):
        if not host.endswith(']'):
            raise ValueError(f'malformed IPv6 host in address {text!r}')
        host = host[1:-1]
    elif ':' in host:
        raise ValueError(f'an IPv6 host must be in brackets, as [::1]:port, in {text!r}')
    # ASCII digits only, as Go's strconv (str.isdigit also takes '²' and '١')
    if not (port.isascii() and port.isdigit()) or int(port) > 65535:
        raise ValueError(f'bad port {port!r} in address {text!r}')
    a.host = host
    a.port = int(port)
    return a


def _resolve(a):
    """(family, sockaddr) to bind for an IP address."""
    host = a.host
    family = a.family
    if not host:
        # Go's ":port": every interface; dual-stack on plain tcp/udp
        if family == socket.AF_INET or (family == socket.AF_UNSPEC and not socket.has_ipv6):
            return socket.AF_INET, ('0.0.0.0', a.port)
        return socket.AF_INET6, ('::', a.port)
    try:
        infos = socket.getaddrinfo(host, a.port, family, a.socktype, 0, socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise OSError(exc.errno, f'cannot resolve the host of address {a.text!r}: '
                      f'{exc.strerror}') from None
    fam, _, _, _, sockaddr = infos[0]
    return fam, sockaddr


def _remove_stale_socket(a):
    path = a.path
    if path.startswith('@'):
        return
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(st.st_mode):
        raise FileExistsError(errno.EEXIST, f'address {a.text!r}: {path!r} exists and '
                              f'is not a socket')
    os.remove(path)


def _bind(a, backlog):
    if a.family == socket.AF_UNIX:
        _remove_stale_socket(a)
        family, sockaddr = socket.AF_UNIX, a.path
        if a.path.startswith('@'):
            sockaddr = '\0' + a.path[1:]        # Linux's abstract namespace
    else:
        family, sockaddr = _resolve(a)
    sock = socket.socket(family, a.socktype)
    try:
        if family != socket.AF_UNIX:
            if a.socktype == socket.SOCK_STREAM:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                # plain tcp/udp with no host listens on IPv4 too, as Go does
                v6only = 0 if (a.family == socket.AF_UNSPEC and not a.host) else 1
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, v6only)
        if a.reuseport:
            if not hasattr(socket, 'SO_REUSEPORT'):
                raise ValueError(f'address {a.text!r}: reuseport is not supported here')
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        try:
            sock.bind(sockaddr)
        except OSError as exc:
            # the stock loop's wording (create_server)
            # (some errors carry no strerror: "AF_UNIX path too long")
            reason = (exc.strerror or str(exc)).lower()
            raise OSError(exc.errno, f'error while attempting to bind on address '
                          f'{sockaddr!r} ({a.text!r}): {reason}') from None
        if family == socket.AF_UNIX and not a.path.startswith('@'):
            a.unix_file = a.path
        if a.socktype == socket.SOCK_STREAM:
            sock.listen(backlog)
        sock.setblocking(False)
        a.bound = sock.getsockname()
    except BaseException:
        sock.close()
        if a.unix_file is not None:
            _unlink(a.unix_file)
            a.unix_file = None
        raise
    a.sock = sock


def open_listeners(addrs, backlog=1024):
    """Parse and bind every address, or none: [ListenAddr] with open sockets."""
    if not addrs:
        raise ValueError('serve() needs at least one address')
    parsed = [parse_addr(text) for text in addrs]
    try:
        for a in parsed:
            _bind(a, backlog)
    except BaseException:
        close_listeners(parsed)
        raise
    return parsed


def _unlink(path):
    try:
        os.remove(path)
    except FileNotFoundError:
        pass


def close_listeners(listeners):
    """Close the sockets and remove the Unix socket files (evio: on close)."""
    for a in listeners:
        if a.sock is not None:
            a.sock.close()
            a.sock = None
        if a.unix_file is not None:
            _unlink(a.unix_file)
            a.unix_file = None
