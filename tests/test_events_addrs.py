"""The Events API: addresses (docs/events.md, "Addresses").

Covers every scheme (none, tcp, tcp4, tcp6, udp, udp4, udp6, unix, unix
abstract), an empty host, several addresses at once with conn.addr_index,
the reuseport option (true / yes / 1 / false / no / 0), Unix socket files
(a stale one removed before bind, removed again at shutdown; a non-socket
path refused and kept), and the errors raised before anything is served
(malformed address, unknown scheme, unknown option: ValueError; port in
use: OSError), each naming the address and leaving no socket or file
behind. Each test runs native, on the stock loop, on uvloop, and portable
on evioloop through the -net scheme suffix.
"""
import asyncio
import os
import socket

import pytest

import evioloop
from evioloop import Events
from events_helpers import (
    ALL_MODES, harness, has_ipv6_loopback, needs_ipv6, port_of, target_of)


@pytest.fixture(params=ALL_MODES)
def hn(request):
    yield from harness(request.param)


def echo(conn, in_):
    return in_


async def check_echo(hn, server, index=0, family=None, target=None):
    c = await hn.connect(target if target is not None else server, index, family=family)
    await c.send(b'echo %d' % index)
    assert await c.recv_exactly(6) == b'echo %d' % index
    c.close()


def connect_fails(family, target):
    s = socket.socket(family, socket.SOCK_STREAM)
    s.settimeout(2)
    try:
        return s.connect_ex(target) != 0
    finally:
        s.close()


@pytest.mark.parametrize('address', ['tcp://127.0.0.1:0', '127.0.0.1:0', 'tcp4://127.0.0.1:0',
                                     'tcp://localhost:0'])
def test_tcp_v4(hn, address):
    async def main():
        async with hn.serve(Events(data=echo), address) as server:
            fam, target = target_of(server.addrs[0])
            assert target[1] > 0
            if 'localhost' not in address:
                assert fam == socket.AF_INET
                await check_echo(hn, server, target=('127.0.0.1', target[1]))
            await check_echo(hn, server)
    hn.run(main())


@needs_ipv6
@pytest.mark.parametrize('address', ['tcp6://[::1]:0', 'tcp://[::1]:0', '[::1]:0'])
def test_tcp_v6(hn, address):
    async def main():
        async with hn.serve(Events(data=echo), address) as server:
            port = port_of(server)
            await check_echo(hn, server, target=('::1', port))
    hn.run(main())


def test_empty_host_is_every_interface(hn):
    async def main():
        async with hn.serve(Events(data=echo), 'tcp://:0') as server:
            port = port_of(server)
            await check_echo(hn, server, target=('127.0.0.1', port))
            if has_ipv6_loopback():
                await check_echo(hn, server, target=('::1', port))
    hn.run(main())


def test_tcp4_empty_host_is_ipv4_only(hn):
    async def main():
        async with hn.serve(Events(data=echo), 'tcp4://:0') as server:
            port = port_of(server)
            await check_echo(hn, server, target=('127.0.0.1', port))
            if has_ipv6_loopback():
                assert connect_fails(socket.AF_INET6, ('::1', port))
    hn.run(main())


@needs_ipv6
def test_tcp6_empty_host_is_ipv6_only(hn):
    async def main():
        async with hn.serve(Events(data=echo), 'tcp6://:0') as server:
            port = port_of(server)
            await check_echo(hn, server, target=('::1', port))
            assert connect_fails(socket.AF_INET, ('127.0.0.1', port))
    hn.run(main())


@pytest.mark.parametrize('scheme,family,host', [
    ('udp', socket.AF_INET, '127.0.0.1'),
    ('udp4', socket.AF_INET, '127.0.0.1'),
    pytest.param('udp6', socket.AF_INET6, '::1', marks=needs_ipv6),
])
def test_udp_schemes(hn, scheme, family, host):
    async def main():
        loop = asyncio.get_running_loop()
        shown = f'[{host}]' if ':' in host else host
        async with hn.serve(Events(data=echo), f'{scheme}://{shown}:0') as server:
            port = port_of(server)
            s = hn.udp_client(family)
            await loop.sock_connect(s, (host, port))
            await loop.sock_sendall(s, b'datagram')
            assert await asyncio.wait_for(loop.sock_recv(s, 100), 10) == b'datagram'
    hn.run(main())


def test_unix_socket_file_lifecycle(hn):
    path = hn.unix_path()
    # a stale socket file from an earlier run
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(path)
    stale.close()
    assert os.path.exists(path)

    async def main():
        async with hn.serve(Events(data=echo), f'unix://{path}') as server:
            assert os.path.exists(path)
            await check_echo(hn, server, target=path)
        assert not os.path.exists(path)
    hn.run(main())


def test_unix_path_that_is_not_a_socket_is_refused(hn):
    path = hn.unix_path()
    with open(path, 'w') as f:
        f.write('precious')

    async def main():
        with pytest.raises((OSError, ValueError)) as info:
            await evioloop.listen(Events(), hn.addr('tcp://127.0.0.1:0'), hn.addr(f'unix://{path}'))
        assert path in str(info.value)
    hn.run(main())
    with open(path) as f:
        assert f.read() == 'precious'


def test_unix_abstract(hn):
    name = f'evioloop-test-{os.getpid()}-{id(hn)}'

    async def main():
        async with hn.serve(Events(data=echo), f'unix://@{name}') as server:
            await check_echo(hn, server, target='\0' + name)
    hn.run(main())


def test_several_addresses_and_addr_index(hn):
    indexes = []
    path = hn.unix_path()

    def opened(conn):
        indexes.append(conn.addr_index)

    async def main():
        addrs = ['tcp://127.0.0.1:0', f'unix://{path}', '127.0.0.1:0', 'udp://127.0.0.1:0']
        async with hn.serve(Events(opened=opened, data=echo), *addrs) as server:
            assert len(server.addrs) == 4
            assert target_of(server.addrs[1])[1] == path
            for i in (2, 0, 1, 2):
                await check_echo(hn, server, i)
        assert not os.path.exists(path)
    hn.run(main())
    assert indexes == [2, 0, 1, 2]


@pytest.mark.parametrize('value,on', [
    ('true', True), ('True', True), ('yes', True), ('Y', True), ('1', True), ('9', True),
    ('false', False), ('no', False), ('0', False), ('', False)])
def test_reuseport(hn, value, on):
    async def main():
        async with hn.serve(Events(data=echo), f'tcp://127.0.0.1:0?reuseport={value}') as first:
            port = port_of(first)
            again = f'tcp://127.0.0.1:{port}?reuseport={value}'
            if on:
                # both listeners have SO_REUSEPORT: the second bind succeeds
                async with hn.serve(Events(data=echo), again) as second:
                    assert port_of(second) == port
                    await check_echo(hn, second, target=('127.0.0.1', port))
            else:
                with pytest.raises(OSError):
                    await evioloop.listen(Events(), hn.addr(again))
            await check_echo(hn, first)
    hn.run(main())


# -- errors before anything is served -------------------------------------------
BAD = {
    'no port': ('tcp://127.0.0.1', ValueError),
    'port not a number': ('tcp://127.0.0.1:http-ish', ValueError),
    'port too big': ('tcp://127.0.0.1:70000', ValueError),
    'unbalanced bracket': ('tcp://[::1:0', ValueError),
    'unknown scheme': ('sctp://127.0.0.1:0', ValueError),
    'unknown option': ('tcp://127.0.0.1:0?reuseaddr=true', ValueError),
    'unknown option udp': ('udp://127.0.0.1:0?backlog=5', ValueError),
    'empty unix path': ('unix://', ValueError),
}


@pytest.mark.parametrize('what', list(BAD))
def test_bad_address_raises_before_serving(hn, what):
    bad, exc_type = BAD[what]
    path = hn.unix_path()
    log = []

    async def main():
        events = Events(serving=lambda s: log.append('serving'))
        # the -net suffix goes on good addresses only; a bad one stays as it is
        good = [hn.addr(f'unix://{path}'), hn.addr('tcp://127.0.0.1:0')]
        for call in (evioloop.listen, evioloop.serve_async):
            with pytest.raises(exc_type) as info:
                await call(events, *good, bad)
            assert bad in str(info.value), str(info.value)
            assert not os.path.exists(path)
    hn.run(main())
    assert log == []


def test_port_in_use(hn):
    blocker = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    blocker.bind(('127.0.0.1', 0))
    blocker.listen()
    port = blocker.getsockname()[1]
    path = hn.unix_path()
    log = []

    async def main():
        events = Events(serving=lambda s: log.append('serving'))
        try:
            with pytest.raises(OSError) as info:
                await evioloop.listen(events, hn.addr(f'unix://{path}'),
                                      hn.addr(f'tcp://127.0.0.1:{port}'))
            msg = str(info.value)
            assert 'error while attempting to bind on address' in msg, msg
            assert str(port) in msg and '127.0.0.1' in msg, msg
            assert not os.path.exists(path)
        finally:
            blocker.close()
    hn.run(main())
    assert log == []


def test_server_addrs_in_order(hn):
    path = hn.unix_path()

    async def main():
        addrs = [f'unix://{path}', 'tcp://127.0.0.1:0', 'udp://127.0.0.1:0']
        async with hn.serve(Events(data=echo), *addrs) as server:
            fams = [target_of(a)[0] for a in server.addrs]
            assert fams == [socket.AF_UNIX, socket.AF_INET, socket.AF_INET]
            assert target_of(server.addrs[0])[1] == path
            assert port_of(server, 1) > 0 and port_of(server, 2) > 0
    hn.run(main())
