"""getaddrinfo / getnameinfo: the answers of the socket module, and numeric
hosts answered without the executor on evioloop."""
import asyncio
import concurrent.futures
import socket

import pytest

AF_INET, AF_INET6, AF_UNSPEC = socket.AF_INET, socket.AF_INET6, socket.AF_UNSPEC
STREAM, DGRAM = socket.SOCK_STREAM, socket.SOCK_DGRAM


def _zone_host():
    try:
        socket.getaddrinfo('fe80::1%lo', 80)
    except (socket.gaierror, OSError):
        return None
    return 'fe80::1%lo'


ZONE = _zone_host()

CASES = [
    ('127.0.0.1', 80, {}),
    ('127.0.0.1', '80', {}),
    ('127.0.0.1', 0, {}),
    ('127.0.0.1', None, {}),
    ('127.0.0.1', 443, {'type': STREAM}),
    ('127.0.0.1', 53, {'type': DGRAM, 'family': AF_INET}),
    ('10.1.2.3', 8080, {'proto': socket.IPPROTO_TCP}),
    ('0.0.0.0', 80, {}),
    ('::1', 80, {}),
    ('::1', 80, {'family': AF_INET6, 'type': STREAM}),
    ('::', 0, {}),
    ('2001:db8::1', 443, {}),
    ('::ffff:127.0.0.1', 80, {}),
    (b'127.0.0.1', b'80', {}),
    (None, 80, {'flags': socket.AI_PASSIVE}),
    (None, 80, {}),
    ('127.0.0.1', 80, {'flags': socket.AI_CANONNAME}),
    ('127.0.0.1', 'http', {}),          # a service name: needs a lookup
    ('127.0.0.1', 'https', {'type': STREAM}),
    ('localhost', 80, {'type': STREAM}),  # a host name: needs a lookup
    ('127.0.0.1', 80, {'family': AF_INET6}),     # error: wrong family
    ('::1', 80, {'family': AF_INET}),
    ('127.0.0.1', 'no-such-service-xyz', {}),    # error
    ('127.0.0.1', 70000, {}),
    ('1.2.3', 80, {}),                  # inet_aton shorthand
]
if ZONE:
    CASES += [(ZONE, 80, {}), (ZONE, 443, {'family': AF_INET6, 'type': STREAM})]


def _expected(host, port, kw):
    try:
        return ('ok', socket.getaddrinfo(host, port, kw.get('family', 0), kw.get('type', 0),
                                         kw.get('proto', 0), kw.get('flags', 0)))
    except Exception as exc:  # noqa: BLE001
        return (type(exc).__name__, exc.args)


def _got(loop, host, port, kw):
    try:
        return ('ok', loop.run_until_complete(loop.getaddrinfo(host, port, **kw)))
    except Exception as exc:  # noqa: BLE001
        return (type(exc).__name__, exc.args)


@pytest.mark.parametrize('host, port, kw', CASES, ids=[
    f'{h!r}-{p!r}-{sorted(k.items())}' for h, p, k in CASES])
@pytest.mark.parametrize('debug', [False, True], ids=['nodebug', 'debug'])
def test_getaddrinfo_same_as_socket_module(loop, host, port, kw, debug):
    loop.set_debug(debug)
    assert _got(loop, host, port, kw) == _expected(host, port, kw)


@pytest.mark.skipif(ZONE is None, reason='this machine has no "lo" interface for a zone id')
def test_zone_id_is_kept(loop):
    infos = loop.run_until_complete(loop.getaddrinfo(ZONE, 80, type=STREAM))
    assert infos
    for family, _type, _proto, _canon, sockaddr in infos:
        assert family == AF_INET6
        assert sockaddr[0] == 'fe80::1'
        assert sockaddr[3] == socket.if_nametoindex('lo')


class _NoExecutor(concurrent.futures.ThreadPoolExecutor):
    """A default executor that refuses all work."""

    def submit(self, *args, **kwargs):
        raise AssertionError('the executor was used')


NUMERIC = [('127.0.0.1', 80, {}), ('::1', 443, {}), ('0.0.0.0', 0, {'type': STREAM}),
           ('127.0.0.1', '8080', {'family': AF_INET, 'type': STREAM}),
           (None, 80, {'flags': socket.AI_PASSIVE}),
           (b'10.0.0.1', 80, {})]
if ZONE:
    NUMERIC.append((ZONE, 80, {}))


@pytest.mark.parametrize('host, port, kw', NUMERIC)
def test_numeric_hosts_are_answered_without_the_executor(evloop, host, port, kw):
    ex = _NoExecutor(1)
    evloop.set_default_executor(ex)
    try:
        got = evloop.run_until_complete(evloop.getaddrinfo(host, port, **kw))
        assert got == _expected(host, port, kw)[1]
    finally:
        ex.shutdown()


def test_the_executor_is_used_for_names(evloop):
    # the guard above is meaningful: a name does go through the executor
    ex = _NoExecutor(1)
    evloop.set_default_executor(ex)
    try:
        with pytest.raises(AssertionError, match='the executor was used'):
            evloop.run_until_complete(evloop.getaddrinfo('localhost', 80))
    finally:
        ex.shutdown()


def test_getaddrinfo_many_concurrent(loop):
    async def main():
        hosts = ['127.0.0.1', '::1', 'localhost'] * 20
        return await asyncio.gather(*(loop.getaddrinfo(h, 80, type=STREAM) for h in hosts))
    res = loop.run_until_complete(main())
    assert res[0] == socket.getaddrinfo('127.0.0.1', 80, type=STREAM)
    assert res[1] == socket.getaddrinfo('::1', 80, type=STREAM)
    assert res[2] == socket.getaddrinfo('localhost', 80, type=STREAM)
    assert res[3:] == res[:3] * 19


NAMEINFO = [
    (('127.0.0.1', 80), 0),
    (('127.0.0.1', 80), socket.NI_NUMERICHOST | socket.NI_NUMERICSERV),
    (('::1', 443, 0, 0), socket.NI_NUMERICHOST),
    (('127.0.0.1', 53), socket.NI_DGRAM),
    (('127.0.0.1',), 0),              # error: bad sockaddr
]
if ZONE:
    NAMEINFO.append((('fe80::1', 80, 0, socket.if_nametoindex('lo')), socket.NI_NUMERICHOST))


@pytest.mark.parametrize('sockaddr, flags', NAMEINFO)
def test_getnameinfo_same_as_socket_module(loop, sockaddr, flags):
    try:
        expected = ('ok', socket.getnameinfo(sockaddr, flags))
    except Exception as exc:  # noqa: BLE001
        expected = (type(exc).__name__, exc.args)
    try:
        got = ('ok', loop.run_until_complete(loop.getnameinfo(sockaddr, flags)))
    except Exception as exc:  # noqa: BLE001
        got = (type(exc).__name__, exc.args)
    assert got == expected
