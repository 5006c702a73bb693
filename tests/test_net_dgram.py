"""evioloop's compiled datagram transport (evioloop/transports/_dgram.pyx) against the stock one.

Most tests play one scenario on the stock loop and on evioloop and compare
what the protocol saw (datagrams, addresses, callbacks in order, buffer sizes,
exception types): the stock loop's record is the expected one, so each Python
checks its own version's behaviour (3.13 sends empty datagrams and counts 8
bytes more per queued datagram; 3.10-3.12 drop empty data). A few tests look
at what only evioloop does (several datagrams per wake-up, bounded; sendto()
without an address on a socketpair) and say so.
"""
import asyncio
import contextvars
import hashlib
import logging
import os
import socket
import sys
import tempfile

import pytest

from net_helpers import drain_datagrams, has_ipv6_loopback, loop_errors, run, spin, until

VAR = contextvars.ContextVar('VAR', default='unset')
KINDS = ('stock', 'evioloop')


def both(scenario, **kw):
    """Run scenario() on both loops; return {kind: its record}."""
    return {kind: run(kind, scenario(), **kw) for kind in KINDS}


def same_on_both(scenario, **kw):
    got = both(scenario, **kw)
    assert got['evioloop'] == got['stock']
    return got['stock']


class Rec(asyncio.DatagramProtocol):
    """Records every callback in order, with VAR as the callback saw it."""

    def __init__(self, log=None, who='p'):
        self.log = [] if log is None else log
        self.who = who
        self.data = []
        self.lost = asyncio.get_running_loop().create_future()
        self.transport = None

    def connection_made(self, transport):
        self.transport = transport
        self.log.append((self.who, 'made', VAR.get()))

    def datagram_received(self, data, addr):
        assert type(data) is bytes
        self.data.append((data, addr))
        self.log.append((self.who, 'datagram', VAR.get()))

    def error_received(self, exc):
        self.log.append((self.who, 'error', type(exc).__name__, exc.errno, VAR.get()))

    def pause_writing(self):
        self.log.append((self.who, 'pause', self.transport.get_write_buffer_size()))

    def resume_writing(self):
        self.log.append((self.who, 'resume', self.transport.get_write_buffer_size()))

    def connection_lost(self, exc):
        self.log.append((self.who, 'lost', type(exc).__name__, VAR.get()))
        if not self.lost.done():
            self.lost.set_result(exc)


def digest(chunks):
    return hashlib.sha256(b''.join(b'%d:' % len(c) + c for c in chunks)).hexdigest()


def unix_pair(d, sndbuf=None):
    """A bound receiver (not on the loop) and a bound sender socket."""
    rpath, spath = os.path.join(d, 'r'), os.path.join(d, 's')
    recv = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    recv.bind(rpath)
    recv.setblocking(False)
    send = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    if sndbuf:
        send.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf)
    send.bind(spath)
    return recv, send, rpath


# ---------------------------------------------------------------- reading

def test_a_burst_arrives_whole_in_order_and_bounded_per_wakeup():
    # few enough small ones that the socket's default receive buffer holds
    # them all (the kernel drops what does not fit)
    n = 120

    async def main():
        loop = asyncio.get_running_loop()
        ticks = [0]

        def tick():         # one increment per loop iteration
            ticks[0] += 1
            loop.call_soon(tick)
        t, p = await loop.create_datagram_endpoint(Rec, local_addr=('127.0.0.1', 0))
        seen_at = []
        orig = p.datagram_received
        p.datagram_received = lambda d, a: (seen_at.append(ticks[0]), orig(d, a))
        raw = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            raw.bind(('127.0.0.1', 0))
            # all of them wait in the socket before the loop looks at it
            sent = [os.urandom(1 + i % 100) for i in range(n)]
            for d in sent:
                raw.sendto(d, t.get_extra_info('sockname'))
            loop.call_soon(tick)
            await until(lambda: len(p.data) == n)
            assert [a for _, a in p.data] == [raw.getsockname()] * n
            per_tick = {}
            for k in seen_at:
                per_tick[k] = per_tick.get(k, 0) + 1
        finally:
            raw.close()
            t.close()
            await p.lost
        return digest(d for d, _ in p.data) == digest(sent), max(per_tick.values())

    (ok_stock, most_stock), (ok_evio, most_evio) = both(main).values()
    assert ok_stock and ok_evio          # none lost, none reordered, bytes equal
    assert most_stock == 1               # the stock loop: one per wake-up
    # evioloop: many per wake-up, at most 4 recvmmsg batches of 16
    assert 16 < most_evio <= 64


def test_a_flooded_socket_does_not_starve_another():
    async def main():
        loop = asyncio.get_running_loop()
        order = []
        ends = []
        for who in 'ab':
            t, p = await loop.create_datagram_endpoint(
                lambda w=who: Rec(who=w), local_addr=('127.0.0.1', 0))
            p.datagram_received = (lambda w: lambda d, a: order.append(w))(who)
            ends.append((t, p))
        raw = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            for _ in range(120):
                raw.sendto(b'a', ends[0][0].get_extra_info('sockname'))
            for _ in range(10):
                raw.sendto(b'b', ends[1][0].get_extra_info('sockname'))
            await until(lambda: len(order) == 130)
        finally:
            raw.close()
            for t, p in ends:
                t.close()
                await p.lost
        # b's datagrams are all delivered before a's flood is done
        return order.index('b') < 120 and order[-1] == 'a' and order.count('b') == 10

    assert both(main) == {'stock': True, 'evioloop': True}


@pytest.mark.parametrize('family', ['inet', 'inet6', 'unix'])
def test_boundaries_and_large_datagrams(family):
    if family == 'inet6' and not has_ipv6_loopback():
        pytest.skip('no ::1 here')
    # up to the largest UDP payload (65507 over IPv4); a Unix datagram may be
    # larger than any UDP one (the stock transport reads up to 256 KiB)
    sizes = [0, 1, 2, 511, 1472, 9000, 65507]
    if family == 'unix':
        sizes.append(150_000)

    async def main():
        loop = asyncio.get_running_loop()
        d = tempfile.mkdtemp(prefix='evd-', dir='/tmp')
        try:
            if family == 'unix':
                kw = dict(family=socket.AF_UNIX, local_addr=os.path.join(d, 'a'))
                ckw = dict(family=socket.AF_UNIX, local_addr=os.path.join(d, 'b'),
                           remote_addr=os.path.join(d, 'a'))
            else:
                host = '127.0.0.1' if family == 'inet' else '::1'
                kw = dict(local_addr=(host, 0))
            st, sp = await loop.create_datagram_endpoint(Rec, **kw)
            if family != 'unix':
                ckw = dict(remote_addr=st.get_extra_info('sockname')[:2])
            ct, cp = await loop.create_datagram_endpoint(Rec, **ckw)
            if family == 'unix':
                sk = ct.get_extra_info('socket')
                for opt in (socket.SO_SNDBUF,):
                    sk.setsockopt(socket.SOL_SOCKET, opt, 1 << 20)
            sent = [bytes([i]) * n for i, n in enumerate(sizes)]
            for data in sent:
                ct.sendto(data)
            # a last datagram marks the end (3.10-3.12 never send b'')
            ct.sendto(b'end')
            await until(lambda: sp.data and sp.data[-1][0] == b'end')
            got = [len(x) for x, _ in sp.data]
            addrs_ok = all(a == ct.get_extra_info('sockname') for _, a in sp.data)
            whole = [x for x, _ in sp.data] == [s for s in sent if s in
                                                 [x for x, _ in sp.data]] + [b'end']
            ct.close()
            st.close()
            await cp.lost
            await sp.lost
            return got, addrs_ok, whole
        finally:
            for name in os.listdir(d):
                os.unlink(os.path.join(d, name))
            os.rmdir(d)

    got, addrs_ok, whole = same_on_both(main)
    assert addrs_ok and whole
    assert got[-1] == 3 and max(got) == max(sizes)


def _norm(addr, names):
    """An address with its run-specific parts (ports, temp dirs) named."""
    if isinstance(addr, tuple):
        return (addr[0], names.get(addr[1], 'port?')) + tuple(addr[2:])
    if isinstance(addr, bytes):
        return ('bytes', names.get(addr, 'path?'))
    if isinstance(addr, str) and addr:
        return names.get(addr, 'path?')
    return addr


def test_sender_address_forms():
    async def main():
        loop = asyncio.get_running_loop()
        d = tempfile.mkdtemp(prefix='evd-', dir='/tmp')
        out = []
        try:
            cases = [('v4', socket.AF_INET, ('127.0.0.1', 0))]
            if has_ipv6_loopback():
                cases.append(('v6', socket.AF_INET6, ('::1', 0)))
            cases += [('unix-named', socket.AF_UNIX, os.path.join(d, 'u')),
                      ('unix-unnamed', socket.AF_UNIX, os.path.join(d, 'v')),
                      ('abstract', socket.AF_UNIX, f'\0evd-{os.getpid()}')]
            for what, fam, local in cases:
                t, p = await loop.create_datagram_endpoint(Rec, local_addr=local, family=fam)
                raw = socket.socket(fam, socket.SOCK_DGRAM)
                names = {}
                try:
                    if what == 'unix-named':
                        raw.bind(os.path.join(d, 'sender'))
                        names[raw.getsockname()] = 'sender'
                    elif what == 'abstract':
                        raw.bind(local + '-sender')
                        names[raw.getsockname()] = 'sender'
                        names[local.encode()] = 'me'
                    elif what in ('v4', 'v6'):
                        raw.bind((local[0], 0))
                        names[raw.getsockname()[1]] = 'sender'
                    raw.sendto(b'x', t.get_extra_info('sockname'))
                    await until(lambda p=p: p.data)
                    out.append((what, _norm(p.data[0][1], names),
                                _norm(t.get_extra_info('sockname'),
                                      {t.get_extra_info('sockname')[1]
                                       if fam != socket.AF_UNIX else local: 'me'})))
                finally:
                    raw.close()
                    t.close()
                    await p.lost
        finally:
            for name in os.listdir(d):
                os.unlink(os.path.join(d, name))
            os.rmdir(d)
        return out

    got = same_on_both(main)
    # and what that is: not only "the same", but the socket module's forms
    forms = dict((w, a) for w, a, _ in got)
    assert forms['v4'] == ('127.0.0.1', 'sender')
    assert forms['unix-named'] == 'sender'
    assert forms['abstract'] == ('bytes', 'sender')   # Linux abstract namespace
    assert not forms['unix-unnamed']


def test_pause_reading_mid_burst_holds_the_rest_until_resume():
    async def main():
        loop = asyncio.get_running_loop()
        t, p = await loop.create_datagram_endpoint(Rec, local_addr=('127.0.0.1', 0))
        orig = p.datagram_received

        refused = []

        def received(data, addr):
            orig(data, addr)
            if len(p.data) == 10:
                try:
                    t.pause_reading()
                except NotImplementedError:     # 3.10's datagram transports
                    refused.append('pause_reading')
        p.datagram_received = received
        raw = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            for i in range(50):
                raw.sendto(b'%d' % i, t.get_extra_info('sockname'))
            await until(lambda: len(p.data) >= 10)
            await spin(30, 0.05)
            if refused:
                while_paused = refused
            else:
                while_paused = len(p.data), t.is_reading()
                t.resume_reading()
            await until(lambda: len(p.data) == 50)
        finally:
            raw.close()
            t.close()
            await p.lost
        return while_paused, [d for d, _ in p.data] == [b'%d' % i for i in range(50)]

    if sys.version_info >= (3, 11):
        assert same_on_both(main) == ((10, False), True)
    else:
        assert same_on_both(main) == (['pause_reading'], True)


def test_an_exception_in_datagram_received_is_reported_and_reading_goes_on():
    async def main():
        loop = asyncio.get_running_loop()
        t, p = await loop.create_datagram_endpoint(Rec, local_addr=('127.0.0.1', 0))
        orig = p.datagram_received

        def received(data, addr):
            orig(data, addr)
            if data == b'2':
                raise ZeroDivisionError('in datagram_received')
        p.datagram_received = received
        raw = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            for i in range(5):
                raw.sendto(b'%d' % i, t.get_extra_info('sockname'))
            await until(lambda: len(p.data) == 5)
        finally:
            raw.close()
            t.close()
            await p.lost
        errs = [type(c.get('exception')).__name__ for c in loop_errors(loop)]
        return [d for d, _ in p.data], errs, t.is_closing()

    assert same_on_both(main, allow_loop_errors=True) == (
        [b'0', b'1', b'2', b'3', b'4'], ['ZeroDivisionError'], True)


# ---------------------------------------------------------------- writing

def test_sendto_checks_and_errors():
    async def main():
        loop = asyncio.get_running_loop()
        log = []
        st, sp = await loop.create_datagram_endpoint(Rec, local_addr=('127.0.0.1', 0))
        peer = st.get_extra_info('sockname')
        ct, cp = await loop.create_datagram_endpoint(lambda: Rec(log, 'c'), remote_addr=peer)
        ut, up = await loop.create_datagram_endpoint(lambda: Rec(log, 'u'),
                                                     local_addr=('127.0.0.1', 0))
        out = []

        def attempt(what, f):
            try:
                f()
                out.append((what, 'ok'))
            except Exception as exc:     # noqa: BLE001 - the type is the record
                out.append((what, type(exc).__name__))
        attempt('str data', lambda: ct.sendto('text'))
        attempt('int data', lambda: ut.sendto(5, peer))
        attempt('other addr', lambda: ct.sendto(b'x', ('127.0.0.1', 9)))
        attempt('empty, other addr', lambda: ct.sendto(b'', ('127.0.0.1', 9)))
        attempt('same addr', lambda: ct.sendto(b'same', peer))
        attempt('bytearray', lambda: ut.sendto(bytearray(b'ba'), peer))
        attempt('memoryview', lambda: ut.sendto(memoryview(b'xmvx')[1:3], peer))
        attempt('name', lambda: ut.sendto(b'name', ('localhost', peer[1])))
        attempt('empty', lambda: ut.sendto(b'', peer))
        # too large for UDP: EMSGSIZE to error_received, at once
        attempt('too large', lambda: ut.sendto(b'x' * 70000, peer))
        attempt('bad port', lambda: ut.sendto(b'x', ('127.0.0.1', 70000)))
        attempt('bad host', lambda: ut.sendto(b'x', ('no such host.invalid', 1)))
        await until(lambda: len(sp.data) >= 4, what='the datagrams')
        await spin(10, 0.05)
        out.append([d for d, _ in sp.data])
        out.append(log)
        out.append(ut.is_closing())
        for t, p in ((st, sp), (ct, cp), (ut, up)):
            t.close()
            await p.lost
        return out

    got = same_on_both(main, allow_loop_errors=True)
    assert ('str data', 'TypeError') in got and ('other addr', 'ValueError') in got
    assert ('u', 'error', 'OSError', 90, 'unset') in got[-2]       # EMSGSIZE


def test_unconnected_ipv6_sendto_address_forms():
    if not has_ipv6_loopback():
        pytest.skip('no ::1 here')

    async def main():
        loop = asyncio.get_running_loop()
        st, sp = await loop.create_datagram_endpoint(Rec, local_addr=('::1', 0))
        ut, up = await loop.create_datagram_endpoint(Rec, local_addr=('::1', 0))
        port = st.get_extra_info('sockname')[1]
        out = []
        for addr in [('::1', port), ('::1', port, 0), ('::1', port, 0, 0),
                     ('0:0:0:0:0:0:0:1', port), ('::1', port, 1 << 20), ('::1', -1)]:
            try:
                ut.sendto(b'%d' % len(out), addr)
                out.append('ok')
            except Exception as exc:     # noqa: BLE001 - the type is the record
                out.append(type(exc).__name__)
        ut.sendto(b'end', ('::1', port))
        await until(lambda: sp.data and sp.data[-1][0] == b'end')
        me = ut.get_extra_info('sockname')
        res = out, [d for d, _ in sp.data], all(a == me for _, a in sp.data), up.log
        for t, p in ((st, sp), (ut, up)):
            t.close()
            await p.lost
        return res

    got = same_on_both(main, allow_loop_errors=True)
    assert got[0][:4] == ['ok'] * 4 and got[2]


def test_sendto_after_close():
    async def main():
        loop = asyncio.get_running_loop()
        st, sp = await loop.create_datagram_endpoint(Rec, local_addr=('127.0.0.1', 0))
        peer = st.get_extra_info('sockname')
        ct, cp = await loop.create_datagram_endpoint(Rec, remote_addr=peer)
        ut, up = await loop.create_datagram_endpoint(Rec, local_addr=('127.0.0.1', 0))
        warnings = []
        handler = logging.Handler()
        handler.emit = lambda r: warnings.append(r.getMessage())
        logging.getLogger('asyncio').addHandler(handler)
        try:
            ct.close()
            ut.close()
            await cp.lost
            await up.lost
            # connected: dropped, and a warning from the 5th on
            for _ in range(8):
                ct.sendto(b'late')
            # not connected: the stock socket is gone, and so is its loop
            try:
                ut.sendto(b'late', peer)
                unconnected = 'ok'
            except Exception as exc:     # noqa: BLE001 - the type is the record
                unconnected = type(exc).__name__
        finally:
            logging.getLogger('asyncio').removeHandler(handler)
            st.close()
            await sp.lost
        return warnings, unconnected, ct.get_extra_info('sockname') is not None

    warnings, unconnected, _ = same_on_both(main)
    assert len(warnings) == 4 and unconnected == 'AttributeError'


def test_error_received_for_icmp_and_contexts():
    async def main():
        loop = asyncio.get_running_loop()
        log = []
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(('127.0.0.1', 0))
        dead = s.getsockname()
        s.close()
        VAR.set('creator')
        t, p = await loop.create_datagram_endpoint(lambda: Rec(log), remote_addr=dead)
        VAR.set('sender')
        t.sendto(b'anyone?')
        await until(lambda: any(e[1] == 'error' for e in log))
        VAR.set('closer')
        t.close()
        await p.lost
        return log

    log = same_on_both(main)
    assert log[0] == ('p', 'made', 'creator')
    assert ('p', 'error', 'ConnectionRefusedError', 111, 'creator') in log
    assert log[-1] == ('p', 'lost', 'NoneType', 'closer')


def test_contexts_of_every_callback():
    async def main():
        loop = asyncio.get_running_loop()
        log = []

        class Setter(Rec):
            def datagram_received(self, data, addr):
                super().datagram_received(data, addr)
                VAR.set(f'set by datagram {data!r}')
                self.transport.sendto(data, addr)

        VAR.set('create server')
        st, sp = await loop.create_datagram_endpoint(lambda: Setter(log, 's'),
                                                     local_addr=('127.0.0.1', 0))
        VAR.set('create client')
        ct, cp = await loop.create_datagram_endpoint(
            lambda: Rec(log, 'c'), remote_addr=st.get_extra_info('sockname'))
        VAR.set('main')
        for i in range(3):
            ct.sendto(b'%d' % i)
        await until(lambda: len(cp.data) == 3)
        VAR.set('closing')
        st.close()
        ct.close()
        await sp.lost
        await cp.lost
        return log

    # each endpoint's own sequence (the two interleave differently: evioloop
    # reads several datagrams per wake-up)
    got = both(main)
    for who in 'sc':
        assert ([e for e in got['evioloop'] if e[0] == who]
                == [e for e in got['stock'] if e[0] == who])
    # the reads share one context: what one datagram_received set, the next sees
    assert ('s', 'datagram', "set by datagram b'0'") in got['stock']


def _queue_scenario(action, high=None):
    """Fill an unread Unix receiver; record the buffer sizes and callbacks
    while queueing, after `action` and after the receiver reads."""
    async def main():
        loop = asyncio.get_running_loop()
        d = tempfile.mkdtemp(prefix='evd-', dir='/tmp')
        recv, send, rpath = unix_pair(d, sndbuf=4096)
        log = []
        try:
            VAR.set('creator')
            t, p = await loop.create_datagram_endpoint(lambda: Rec(log), sock=send)
            if high is not None:
                t.set_write_buffer_limits(high=high)
            sizes = []
            sent = []
            VAR.set('queuer')
            for i in range(200):
                data = bytes([i]) * (500 + i)
                sent.append(data)
                t.sendto(data, rpath)
                sizes.append(t.get_write_buffer_size())
            queued = sum(1 for a, b in zip([0] + sizes, sizes, strict=False) if b > a)
            VAR.set('after')
            if action == 'close':
                t.close()
            elif action == 'abort':
                t.abort()
            await spin(5)
            state = (t.is_closing(), p.lost.done(), t.get_write_buffer_size())
            rtr = repr(t)
            n = len(sent) if action != 'abort' else len(sent) - queued
            got = await drain_datagrams(recv, n)
            if action != 'none':
                await p.lost
            else:
                await until(lambda: t.get_write_buffer_size() <= t.get_write_buffer_limits()[0])
                t.close()
                await p.lost
            await spin(5)
            extra = await drain_datagrams(recv, 0)
            try:
                recv.recv(1 << 18)
                leftover = True
            except BlockingIOError:
                leftover = False
        finally:
            recv.close()
            send.close()
            for name in os.listdir(d):
                os.unlink(os.path.join(d, name))
            os.rmdir(d)
        return dict(sizes=sizes, queued=queued, state=state, log=log,
                    digest=digest(got) == digest(sent[:n]), extra=extra,
                    leftover=leftover, repr_has_fd='fd=' in rtr,
                    final_size=t.get_write_buffer_size())
    return main


def test_queue_under_eagain_water_marks_and_pause_resume():
    rec = same_on_both(lambda: _queue_scenario('none', high=8192)())
    assert rec['queued'] > 100 and rec['digest'] and not rec['leftover']
    kinds = [e[1] for e in rec['log']]
    assert kinds == ['made', 'pause', 'resume', 'lost']
    # paused in the queuer's context, resumed in the writer's: both are that
    # of the sendto() that met EAGAIN first, as on the stock loop
    assert rec['sizes'] == sorted(rec['sizes'])


def test_close_while_queued_sends_everything_then_connection_lost():
    rec = same_on_both(lambda: _queue_scenario('close')())
    assert rec['state'][:2] == (True, False) and rec['digest']
    assert [e[1] for e in rec['log']] == ['made', 'pause', 'resume', 'lost']


def test_abort_while_queued_drops_the_queue():
    rec = same_on_both(lambda: _queue_scenario('abort')())
    assert rec['state'][:2] == (True, True) and rec['digest'] and not rec['leftover']


# ---------------------------------------------------------------- connected by other means

def test_socketpair_sendto_without_address_differs_from_stock():
    """On a socketpair the peer has no name (getpeername() gives ''), so the
    stock transport takes the socket for unconnected and sendto(data) fails
    (a TypeError from sock.sendto(data, None): fatal, the transport closes).
    evioloop sends to the peer, as uvloop does."""
    async def main():
        loop = asyncio.get_running_loop()
        a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        log = []
        try:
            t, p = await loop.create_datagram_endpoint(lambda: Rec(log), sock=a)
            t.sendto(b'to the peer')
            await spin(5)
            b.setblocking(False)
            try:
                got = b.recv(100)
            except BlockingIOError:
                got = None
            errs = [(c['message'], type(c.get('exception')).__name__)
                    for c in loop_errors(loop)]
            # the peer writes back: both deliver it, from an unnamed sender
            if not t.is_closing():
                b.send(b'back')
                await until(lambda: p.data)
            t.close()
            await p.lost
        finally:
            b.close()
        return got, errs, [e[1:3] for e in log], p.data

    got = both(main, allow_loop_errors=True)
    assert got['stock'] == (None, [('Fatal write error on datagram transport', 'TypeError')],
                            [('made', 'unset'), ('lost', 'TypeError')], [])
    assert got['evioloop'][:3] == (b'to the peer', [], [('made', 'unset'), ('datagram', 'unset'),
                                                        ('lost', 'NoneType')])
    assert len(got['evioloop'][3]) == 1 and got['evioloop'][3][0][0] == b'back'
    assert not got['evioloop'][3][0][1]          # '' or None, as recvfrom gives


def test_sock_connected_udp_sendto_without_address():
    async def main():
        loop = asyncio.get_running_loop()
        st, sp = await loop.create_datagram_endpoint(Rec, local_addr=('127.0.0.1', 0))
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.connect(st.get_extra_info('sockname'))
        t, p = await loop.create_datagram_endpoint(Rec, sock=s)
        t.sendto(b'one')
        t.sendto(b'two', ('127.0.0.1', 9))   # connected by other means: to the peer
        await until(lambda: len(sp.data) == 2)
        res = ([d for d, _ in sp.data], t.get_extra_info('peername') == s.getpeername())
        for tr, pr in ((t, p), (st, sp)):
            tr.close()
            await pr.lost
        return res, s.fileno()

    assert same_on_both(main) == (([b'one', b'two'], True), -1)


# ---------------------------------------------------------------- the transport itself

def test_extra_info_repr_and_fd_table():
    async def main():
        loop = asyncio.get_running_loop()
        t, p = await loop.create_datagram_endpoint(Rec, local_addr=('127.0.0.1', 0))
        sk = t.get_extra_info('socket')
        fd = sk.fileno()
        info = (sk.family, sk.type, t.get_extra_info('peername'),
                t.get_extra_info('sockname') == sk.getsockname(),
                t.get_extra_info('nothing', 'dflt'), isinstance(t, asyncio.DatagramTransport),
                t.get_write_buffer_limits())
        r_open = repr(t)
        key = loop._selector.get_map()[fd]
        # a transport's fd cannot be taken over by add_reader/sock_recv
        try:
            loop.add_reader(fd, lambda: None)
            taken = 'taken'
        except RuntimeError:
            taken = 'RuntimeError'
        t.close()
        closing = repr(t)
        await p.lost
        await spin(3)
        in_table = fd in loop._selector.get_map()
        return (info, 'read=polling' in r_open, key.events, taken, 'closing' in closing,
                'closed' in repr(t), in_table, t.get_extra_info('sockname') is not None)

    assert same_on_both(main)[1:] == (True, 1, 'RuntimeError', True, True, False, True)


def test_write_buffer_limits_and_the_marks_stock_code_reads():
    # set_write_buffer_limits' checks and defaults, and the _FlowControlMixin
    # attributes the stock transport has (_high_water, _low_water,
    # _protocol_paused), before and after new limits
    async def main():
        loop = asyncio.get_running_loop()
        t, p = await loop.create_datagram_endpoint(Rec, local_addr=('127.0.0.1', 0))
        got = [(t._high_water, t._low_water, t._protocol_paused, t.get_write_buffer_limits())]
        for high, low in ((1000, 10), (None, 40), (4000, None), (0, 0)):
            t.set_write_buffer_limits(high=high, low=low)
            got.append((t._high_water, t._low_water, t._protocol_paused,
                        t.get_write_buffer_limits()))
        try:
            t.set_write_buffer_limits(high=5, low=10)
        except ValueError as exc:
            got.append(str(exc))
        t.close()
        await p.lost
        return got

    got = same_on_both(main)
    assert got[0] == (65536, 16384, False, (16384, 65536))
    assert got[-1] == 'high (5) must be >= low (10) must be >= 0'


def test_unclosed_transport_warns_and_closes_its_socket():
    async def main():
        loop = asyncio.get_running_loop()
        t, p = await loop.create_datagram_endpoint(Rec, local_addr=('127.0.0.1', 0))
        sk = t.get_extra_info('socket')
        fd = sk.fileno()
        await spin(2)
        return t, fd

    import gc
    import warnings as w
    for kind in KINDS:
        with w.catch_warnings(record=True) as caught:
            w.simplefilter('always')
            # the transport is dropped at once: only its fd number is kept
            fd = run(kind, main())[1]
            gc.collect()
        assert any(issubclass(c.category, ResourceWarning) for c in caught), kind
        with pytest.raises(OSError):
            os.fstat(fd)


@pytest.mark.skipif(sys.platform != 'linux', reason='/proc/self/fd')
def test_no_fd_left_after_many_endpoints():
    async def main():
        loop = asyncio.get_running_loop()
        before = set(os.listdir('/proc/self/fd'))
        for _ in range(20):
            t, p = await loop.create_datagram_endpoint(Rec, local_addr=('127.0.0.1', 0))
            t.sendto(b'x', t.get_extra_info('sockname'))
            await until(lambda p=p: p.data)
            t.abort()
            await p.lost
        await spin(3)
        return set(os.listdir('/proc/self/fd')) - before

    assert both(main) == {'stock': set(), 'evioloop': set()}


def test_exchange_then_burst_then_exchange_loses_and_reorders_nothing():
    # evioloop reads one datagram per wake-up (recvfrom) while a socket gets
    # one at a time, switches to recvmmsg batches when datagrams queue up and
    # back when they stop: every datagram of each phase arrives, in order,
    # with its sender, and an exchange gets one datagram per wake-up on both
    # loops (the stock loop's answer)
    async def main():
        loop = asyncio.get_running_loop()
        ticks = [0]
        ticking = [True]

        def tick():         # one increment per loop iteration
            ticks[0] += 1
            if ticking[0]:
                loop.call_soon(tick)
        t, p = await loop.create_datagram_endpoint(Rec, local_addr=('127.0.0.1', 0))
        seen_at = []
        orig = p.datagram_received
        p.datagram_received = lambda d, a: (seen_at.append(ticks[0]), orig(d, a))
        raw = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sent, most = [], []
        try:
            raw.bind(('127.0.0.1', 0))
            raw_name = raw.getsockname()
            addr = t.get_extra_info('sockname')
            loop.call_soon(tick)
            for phase, count in (('exchange', 30), ('burst', 100), ('exchange', 30)):
                start = len(seen_at)
                if phase == 'burst':
                    for i in range(count):
                        sent.append(os.urandom(1 + i % 200))
                        raw.sendto(sent[-1], addr)
                    await until(lambda: len(p.data) == len(sent))
                else:
                    for i in range(count):
                        sent.append(os.urandom(1 + i % 50))
                        raw.sendto(sent[-1], addr)
                        await until(lambda: len(p.data) == len(sent))
                per_tick = {}
                for k in seen_at[start:]:
                    per_tick[k] = per_tick.get(k, 0) + 1
                most.append((phase, max(per_tick.values())))
        finally:
            ticking[0] = False
            raw.close()
            t.close()
            await p.lost
        return (digest(d for d, _ in p.data) == digest(sent),
                {a for _, a in p.data} == {raw_name}, most)

    got = both(main)
    assert got['stock'][:2] == got['evioloop'][:2] == (True, True)
    stock, ours = got['stock'][2], got['evioloop'][2]
    assert stock == [('exchange', 1), ('burst', 1), ('exchange', 1)]
    # the exchanges as on the stock loop; the burst in batches on evioloop
    assert ours[0] == stock[0] and ours[2] == stock[2]
    assert ours[1][0] == 'burst' and ours[1][1] > 1
