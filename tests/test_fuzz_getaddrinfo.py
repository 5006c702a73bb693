"""Property test of evioloop.Loop.getaddrinfo's fast path (evioloop/loop.py).

evioloop first calls socket.getaddrinfo with AI_NUMERICHOST|AI_NUMERICSERV
added (no lookup, cannot block) and falls back to the stock path when that
fails. For every mix of host, port, family, type, proto and flags, `await
loop.getaddrinfo(...)` on evioloop must give exactly what the stock loop
gives: the same list, or an exception of the same type with the same args.

Hermetic: the only names resolved are 'localhost' (/etc/hosts) and service
names (/etc/services). Arbitrary text as a host is always asked with
AI_NUMERICHOST in the caller's flags, so neither loop sends it to DNS.
"""
import asyncio
import socket

import pytest
from fuzz_helpers import fuzz
from hypothesis import given
from hypothesis import strategies as st

import evioloop


@pytest.fixture(scope='module')
def loops():
    """One loop of each kind for every example (a new loop each time costs too much)."""
    made = {'evioloop': evioloop.new_event_loop(), 'stock': asyncio.SelectorEventLoop()}
    assert isinstance(made['evioloop'], evioloop.Loop)
    yield made
    for lp in made.values():
        lp.run_until_complete(lp.shutdown_default_executor())
        lp.close()


def _v6_scoped(addr):
    return st.sampled_from(['%lo', '%1', '%0', '%nosuchif', '%']).map(lambda s: addr + s)


numeric_hosts = st.one_of(
    st.ip_addresses(v=4).map(str),
    st.ip_addresses(v=6).map(str),
    st.ip_addresses(v=6).map(lambda a: a.exploded),
    st.sampled_from(['fe80::1', 'ff02::1', '::1']).flatmap(_v6_scoped),
    st.sampled_from(['127.0.0.1', '0.0.0.0', '::', '::ffff:127.0.0.1', '127.1', '0x7f.1',
                     '127.0.0.01', '1.2.3.4 ', ' 1.2.3.4', '[::1]']))
# (host, needs AI_NUMERICHOST to stay off the network)
hosts = st.one_of(
    numeric_hosts.map(lambda h: (h, False)),
    numeric_hosts.map(lambda h: (h.encode(), False)),
    st.sampled_from([None, '', 'localhost', b'localhost', 'LOCALHOST', 'a\x00b', b'',
                     'x' * 64 + '.com', '.', '..', 'a..b']).map(lambda h: (h, False)),
    st.integers(-1, 2 ** 32).map(lambda h: (h, False)),
    st.sampled_from([1.5, ['127.0.0.1'], bytearray(b'127.0.0.1')]).map(lambda h: (h, False)),
    st.text(max_size=20).map(lambda h: (h, True)),
    st.binary(max_size=12).map(lambda h: (h, True)))
ports = st.one_of(
    st.integers(0, 65535), st.integers(-2 ** 33, 2 ** 33), st.none(),
    st.integers(0, 65535).map(str), st.integers(0, 65535).map(lambda p: str(p).encode()),
    st.sampled_from(['http', 'https', 'ssh', 'domain', b'http', 'nosuchservice', '', '-1',
                     '65536', '99999', ' 80', '80 ', '0x50', '+80', '8\x000', 1.0, b'']),
    st.text(max_size=6))
families = st.sampled_from([0, socket.AF_INET, socket.AF_INET6, socket.AF_UNIX, 12345, -1])
types = st.sampled_from([0, socket.SOCK_STREAM, socket.SOCK_DGRAM, socket.SOCK_RAW, 99])
protos = st.sampled_from([0, socket.IPPROTO_TCP, socket.IPPROTO_UDP, 99, -1])
FLAG_BITS = [socket.AI_PASSIVE, socket.AI_CANONNAME, socket.AI_NUMERICHOST,
             socket.AI_NUMERICSERV, socket.AI_V4MAPPED, socket.AI_ALL, socket.AI_ADDRCONFIG]
flag_sets = st.one_of(
    st.lists(st.sampled_from(FLAG_BITS), max_size=4).map(lambda fs: sum(set(fs))),
    st.sampled_from([0x10000, 0x10000 | socket.AI_PASSIVE, 2 ** 31, 2 ** 40, -1, -2]))


def outcome(loop, host, port, family, type_, proto, flags):
    try:
        return 'ok', loop.run_until_complete(loop.getaddrinfo(
            host, port, family=family, type=type_, proto=proto, flags=flags))
    except Exception as exc:        # the exception is the answer being compared
        return 'raised', type(exc), exc.args


@fuzz(200)
@given(hosts, ports, families, types, protos, flag_sets)
def test_getaddrinfo_same_as_stock(loops, host_and_guard, port, family, type_, proto, flags):
    host, needs_numeric = host_and_guard
    if needs_numeric:
        flags |= socket.AI_NUMERICHOST
    want = outcome(loops['stock'], host, port, family, type_, proto, flags)
    got = outcome(loops['evioloop'], host, port, family, type_, proto, flags)
    assert got == want, (host, port, family, type_, proto, flags)


def test_fast_path_answers_numeric_hosts_in_the_loop(loops):
    """The case the fast path exists for, so that the property above covers it."""
    lp = loops['evioloop']
    got = lp.run_until_complete(lp.getaddrinfo('127.0.0.1', 80, type=socket.SOCK_STREAM))
    assert got == socket.getaddrinfo('127.0.0.1', 80, type=socket.SOCK_STREAM)


def test_negative_flags_are_refused_as_stock_does(loops):
    want = outcome(loops['stock'], '127.0.0.1', 0, 0, 0, 0, -1)
    assert want[:2] == ('raised', socket.gaierror)
    assert outcome(loops['evioloop'], '127.0.0.1', 0, 0, 0, 0, -1) == want
