"""Property tests of the Events API's address parser (evioloop/events/addrs.py).

The expected parse comes from a model written here from evio's syntax
(docs/events.md "Addresses", /work/shared/reference/events-anchors.md):
`scheme[-net]://rest?reuseport=v&...`, no scheme meaning tcp, the scheme
fixing the socket type and family, `host:port` / `[v6]:port` / `:port` with a
decimal port 0-65535, `unix://path` (`@name`: abstract), reuseport true when
its value starts with t, T, y, Y or 1-9.

* valid addresses of every kind parse to exactly the model's fields;
* any text either parses or raises ValueError (never another exception), and
  what it accepts is what the model accepts;
* a failed bind (port in use, a directory that does not exist, a path that is
  a regular file) raises OSError and leaves no fd and no Unix socket file,
  through open_listeners() and through evioloop.listen() (native, stock
  loop, -net).
"""
import os
import re
import shutil
import socket
import stat
import tempfile

import pytest
from events_helpers import harness
from fuzz_helpers import fuzz, open_fds
from hypothesis import assume, given
from hypothesis import strategies as st

import evioloop
from evioloop.events.addrs import close_listeners, open_listeners, parse_addr

# scheme -> (socket type, family): evio's table, written out again here
MODEL_SCHEMES = {
    'tcp': (socket.SOCK_STREAM, socket.AF_UNSPEC),
    'tcp4': (socket.SOCK_STREAM, socket.AF_INET),
    'tcp6': (socket.SOCK_STREAM, socket.AF_INET6),
    'udp': (socket.SOCK_DGRAM, socket.AF_UNSPEC),
    'udp4': (socket.SOCK_DGRAM, socket.AF_INET),
    'udp6': (socket.SOCK_DGRAM, socket.AF_INET6),
    'unix': (socket.SOCK_STREAM, socket.AF_UNIX),
}
_ASCII_PORT = re.compile(r'[0-9]+')


def model_truthy(value):
    return value[:1] in ('t', 'T', 'y', 'Y') or value[:1] in tuple('123456789')


def model(text):
    """The fields evio's syntax gives `text`, or None where it is malformed."""
    if '://' in text:
        i = text.index('://')
        scheme, rest = text[:i], text[i + 3:]
    else:
        scheme, rest = 'tcp', text
    portable = scheme.endswith('-net')
    if portable:
        scheme = scheme[:-len('-net')]
    if scheme not in MODEL_SCHEMES:
        return None
    reuseport = False
    if '?' in rest:
        rest, query = rest.split('?', 1)
        for opt in query.split('&'):
            if not opt.startswith('reuseport='):
                return None
            reuseport = model_truthy(opt[len('reuseport='):])
    socktype, family = MODEL_SCHEMES[scheme]
    out = dict(scheme=scheme, socktype=socktype, family=family, portable=portable,
               reuseport=reuseport, host=None, port=None, path=None)
    if scheme == 'unix':
        if not rest:
            return None
        out['path'] = rest
        return out
    if ':' not in rest:
        return None
    i = rest.rindex(':')
    host, port = rest[:i], rest[i + 1:]
    if host[:1] == '[':
        if host[-1:] != ']' or len(host) < 2:
            return None
        host = host[1:-1]
    elif ':' in host:
        return None
    # Go's strconv: ASCII digits only
    if not _ASCII_PORT.fullmatch(port) or int(port) > 65535:
        return None
    out.update(host=host, port=int(port))
    return out


def fields(a):
    return dict(scheme=a.scheme, socktype=a.socktype, family=a.family, portable=a.portable,
                reuseport=a.reuseport, host=a.host, port=a.port, path=a.path)


# -- valid addresses ----------------------------------------------------------------

_HOST_CHARS = st.characters(codec='ascii', exclude_characters=':?[]/&\x00')
hosts = st.one_of(
    st.sampled_from(['', '127.0.0.1', '0.0.0.0', 'localhost', '[::1]', '[::]',
                     '[fe80::1%lo]', '[]', 'example.com']),
    st.text(_HOST_CHARS, max_size=12))
ports = st.builds(lambda p, zeros: '0' * zeros + str(p),
                  st.integers(0, 65535), st.integers(0, 2))
# evio's spellings of true and false, and anything else (its first letter decides)
reuse_values = st.one_of(
    st.sampled_from(['true', 'True', 'TRUE', 't', 'yes', 'y', 'Y', '1', '9', '42',
                     'false', 'False', 'f', 'no', 'n', '0', '', 'off', 'on', '-1']),
    st.text(max_size=4).filter(lambda s: '&' not in s))
queries = st.lists(reuse_values, max_size=3).map(
    lambda vs: '?' + '&'.join('reuseport=' + v for v in vs) if vs else '')
ip_schemes = st.sampled_from([None, 'tcp', 'tcp4', 'tcp6', 'udp', 'udp4', 'udp6'])
unix_paths = st.one_of(
    st.builds(lambda s: '/tmp/' + s, st.text(min_size=1, max_size=20).filter(
        lambda s: '?' not in s)),
    st.builds(lambda s: '@' + s, st.text(max_size=20).filter(lambda s: '?' not in s)),
    st.text(min_size=1, max_size=20).filter(lambda s: '?' not in s))


@st.composite
def valid_addresses(draw):
    net = draw(st.booleans())
    if draw(st.integers(0, 3)) == 0:
        scheme, rest = 'unix', draw(unix_paths)
    else:
        scheme = draw(ip_schemes)
        rest = draw(hosts) + ':' + draw(ports)
    q = draw(queries)
    if scheme is None:
        # no scheme means tcp (and no -net without a scheme to hang it on)
        return rest + q
    return f'{scheme}{"-net" if net else ""}://{rest}{q}'


@fuzz(150)
@given(valid_addresses())
def test_valid_addresses_parse_as_the_model_says(text):
    want = model(text)
    assume(want is not None)    # e.g. a generated host '[]x' the model itself refuses
    assert fields(parse_addr(text)) == want


@fuzz(60)
@given(st.sampled_from(sorted(MODEL_SCHEMES)), st.booleans(), reuse_values)
def test_reuseport_follows_the_first_letter(scheme, net, value):
    rest = '/tmp/x' if scheme == 'unix' else '127.0.0.1:0'
    a = parse_addr(f'{scheme}{"-net" if net else ""}://{rest}?reuseport={value}')
    assert a.reuseport is model_truthy(value)
    assert a.portable is net


# -- arbitrary text -----------------------------------------------------------------

_NEAR = st.sampled_from(list(':/?&=[]@.%-') + ['://', 'tcp', 'udp', 'unix', '6', '4',
                                                 '-net', 'reuseport=', '::1', '0', '65536',
                                                 '\u00b2', '\u0661\u0662'])
noisy_text = st.one_of(
    st.text(max_size=40),
    st.lists(st.one_of(_NEAR, st.text(max_size=3)), max_size=12).map(''.join),
    valid_addresses().flatmap(lambda t: st.integers(0, len(t)).map(
        lambda i: t[:i] + t[i + 1:])))              # a valid address with a char dropped


@fuzz(200)
@given(noisy_text)
def test_any_text_parses_or_raises_value_error(text):
    want = model(text)
    if want is None:
        with pytest.raises(ValueError) as info:
            parse_addr(text)
        # docs/events.md: the ValueError names the address
        assert repr(text) in str(info.value)
    else:
        assert fields(parse_addr(text)) == want


@pytest.mark.parametrize('value', [b'tcp://127.0.0.1:0', None, 5, ('127.0.0.1', 0)])
def test_non_str_address_is_a_type_error(value):
    with pytest.raises(TypeError):
        parse_addr(value)


@pytest.mark.parametrize('text', [':\u0661\u0662', 'tcp://127.0.0.1:\u00b2'])
def test_port_is_ascii_digits_only(text):
    with pytest.raises(ValueError) as info:
        parse_addr(text)
    assert repr(text) in str(info.value)


# -- binding: failures leave nothing behind --------------------------------------------

def socket_files(d):
    out = []
    for root, _dirs, files in os.walk(d):
        for f in files:
            p = os.path.join(root, f)
            if stat.S_ISSOCK(os.lstat(p).st_mode):
                out.append(p)
    return out


@pytest.fixture
def tmpdir_unix():
    d = tempfile.mkdtemp(prefix='evfz-', dir='/tmp')     # short: Unix paths are <= 107
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def busy_port():
    """A TCP port on 127.0.0.1 that is listened on (binding it fails with EADDRINUSE)."""
    s = socket.socket()
    s.bind(('127.0.0.1', 0))
    s.listen(1)
    yield s.getsockname()[1]
    s.close()


GOOD_KINDS = ['tcp4', 'tcp', 'udp4', 'unix', 'abstract']
BAD_KINDS = ['port_in_use', 'no_such_dir', 'regular_file']


@fuzz(40)
@given(good=st.lists(st.sampled_from(GOOD_KINDS), max_size=3),
       bad=st.one_of(st.none(), st.sampled_from(BAD_KINDS)),
       where=st.integers(0, 3), tag=st.integers(0, 10 ** 9))
def test_bind_all_or_nothing(tmpdir_unix, busy_port, good, bad, where, tag):
    def address(kind, i):
        return {
            'tcp4': 'tcp4://127.0.0.1:0', 'tcp': 'tcp://127.0.0.1:0',
            'udp4': 'udp4://127.0.0.1:0',
            'unix': f'unix://{tmpdir_unix}/s{i}',
            'abstract': f'unix://@evfz-{os.getpid()}-{tag}-{i}',
            'port_in_use': f'tcp4://127.0.0.1:{busy_port}',
            'no_such_dir': f'unix://{tmpdir_unix}/nodir/s',
            'regular_file': f'unix://{tmpdir_unix}/plain',
        }[kind]
    with open(os.path.join(tmpdir_unix, 'plain'), 'w'):
        pass
    addrs = [address(k, i) for i, k in enumerate(good)]
    if bad is not None:
        addrs.insert(min(where, len(addrs)), address(bad, 9))
    before = open_fds()
    if bad is None and addrs:
        listeners = open_listeners(addrs)
        assert [a.sock is not None for a in listeners] == [True] * len(addrs)
        assert len(socket_files(tmpdir_unix)) == good.count('unix')
        close_listeners(listeners)
    else:
        with pytest.raises(ValueError if not addrs else OSError):
            open_listeners(addrs)
    assert open_fds() == before
    assert socket_files(tmpdir_unix) == []
    # the regular file in the way is refused, never removed
    assert os.path.isfile(os.path.join(tmpdir_unix, 'plain'))


@pytest.fixture(params=['native', 'stock', 'net'])
def hn(request):
    yield from harness(request.param)


@fuzz(10)
@given(good=st.lists(st.sampled_from(GOOD_KINDS), max_size=2),
       bad=st.sampled_from(BAD_KINDS), where=st.integers(0, 2), tag=st.integers(0, 10 ** 9))
def test_listen_fails_whole_and_leaves_nothing(hn, tmpdir_unix, busy_port, good, bad, where,
                                               tag):
    """The same through evioloop.listen(), native, on the stock loop and with -net."""
    addrs = {
        'tcp4': 'tcp4://127.0.0.1:0', 'tcp': 'tcp://127.0.0.1:0', 'udp4': 'udp4://127.0.0.1:0',
        'abstract': f'unix://@evfz-{os.getpid()}-{tag}', 'unix': f'unix://{tmpdir_unix}/s',
    }
    chosen = [addrs[k] for k in dict.fromkeys(good)]      # each kind once
    bad_addr = {'port_in_use': f'tcp4://127.0.0.1:{busy_port}',
                'no_such_dir': f'unix://{tmpdir_unix}/nodir/s',
                'regular_file': f'unix://{tmpdir_unix}/plain'}[bad]
    chosen.insert(min(where, len(chosen)), bad_addr)
    with open(os.path.join(tmpdir_unix, 'plain'), 'w'):
        pass
    served = []

    async def main():
        with pytest.raises(OSError):
            await hn.listen(evioloop.Events(serving=served.append), *chosen)
    before = open_fds()
    hn.run(main())
    assert served == []                 # nothing was served
    assert open_fds() == before
    assert socket_files(tmpdir_unix) == []
    assert os.path.isfile(os.path.join(tmpdir_unix, 'plain'))


def test_bind_too_long_unix_path_is_an_os_error(tmpdir_unix):
    before = open_fds()
    try:
        with pytest.raises(OSError):
            open_listeners(['tcp4://127.0.0.1:0', f'unix://{tmpdir_unix}/' + 'a' * 200])
    finally:
        assert open_fds() == before
        assert socket_files(tmpdir_unix) == []
