"""add_reader / add_writer as fd owners, their errors, and stale registrations."""
import asyncio
import os
import socket
import tempfile
import time

import pytest

import evioloop


@pytest.fixture
def pair():
    a, b = socket.socketpair()
    a.setblocking(False)
    b.setblocking(False)
    yield a, b
    a.close()
    b.close()


def run_briefly(loop, t=0.02):
    loop.run_until_complete(asyncio.sleep(t))


def _outcome(call):
    try:
        return ('returned', call())
    except Exception as exc:  # noqa: BLE001 - compared with the stock loop's
        return (type(exc).__name__, str(exc) if not isinstance(exc, OverflowError) else '')


def _closed_fd_number():
    fd = os.open(os.devnull, os.O_RDONLY)
    os.close(fd)
    return fd


BAD_FDS = {
    'str': 'x',
    'negative': -1,
    'float': 1.5,
    'none': None,
    'object': object(),
    'fileno-raises': type('F', (), {'fileno': lambda self: (_ for _ in ()).throw(ValueError())})(),
    'too-large': 2 ** 40,
}


@pytest.mark.parametrize('what', sorted(BAD_FDS))
@pytest.mark.parametrize('side', ['reader', 'writer'])
def test_bad_fds_same_errors_as_stock(evloop, stockloop, what, side):
    fd = BAD_FDS[what]
    got = []
    for lp in (stockloop, evloop):
        add = getattr(lp, f'add_{side}')
        remove = getattr(lp, f'remove_{side}')
        got.append((_outcome(lambda add=add: add(fd, print)),
                    _outcome(lambda remove=remove: remove(fd))))
    assert got[1] == got[0]


@pytest.mark.parametrize('side', ['reader', 'writer'])
def test_closed_fd_number_same_error_as_stock(evloop, stockloop, side):
    got = []
    for lp in (stockloop, evloop):
        fd = _closed_fd_number()
        add = getattr(lp, f'add_{side}')
        remove = getattr(lp, f'remove_{side}')
        got.append((_outcome(lambda add=add, fd=fd: add(fd, print)),
                    _outcome(lambda remove=remove, fd=fd: remove(fd))))
    assert got[0][0][0] == 'OSError'
    assert got[1] == got[0]


def test_closed_fd_number_leaves_no_owner(evloop):
    fd = _closed_fd_number()
    with pytest.raises(OSError):
        evloop.add_reader(fd, print)
    assert evloop._evio_stats()['watched_fds'] == 0
    # the number is usable once it names a real fd again
    a, b = socket.socketpair()
    try:
        got = []
        evloop.add_reader(a, got.append, 'r')
        b.send(b'x')
        run_briefly(evloop)
        assert 'r' in got
        assert evloop.remove_reader(a) is True
    finally:
        a.close()
        b.close()


@pytest.mark.skipif(evioloop.BACKEND != 'epoll', reason='epoll refuses regular files')
def test_regular_file_is_refused_like_stock(evloop, stockloop):
    got = []
    with tempfile.TemporaryFile() as f:
        for lp in (stockloop, evloop):
            got.append((_outcome(lambda lp=lp: lp.add_reader(f, print)),
                        _outcome(lambda lp=lp: lp.remove_reader(f)),
                        _outcome(lambda lp=lp: lp.add_writer(f.fileno(), print)),
                        _outcome(lambda lp=lp: lp.remove_writer(f.fileno()))))
    assert got[0][0][0] == 'PermissionError'
    assert got[1] == got[0]
    assert evloop._evio_stats()['watched_fds'] == 0


def test_return_values(loop, pair):
    a, b = pair
    assert loop.remove_reader(a) is False
    assert loop.remove_writer(a) is False
    assert loop.add_reader(a, print) is None
    assert loop.add_writer(a, print) is None
    assert loop.remove_reader(a) is True
    assert loop.remove_reader(a) is False
    assert loop.remove_writer(a.fileno()) is True
    assert loop.remove_writer(a) is False


def test_reader_fires_with_args(loop, pair):
    a, b = pair
    got = []

    def on_readable(tag, n):
        got.append((tag, a.recv(n)))

    loop.add_reader(a, on_readable, 'tag', 100)
    run_briefly(loop)
    assert got == []
    b.send(b'hello')
    run_briefly(loop)
    assert got == [('tag', b'hello')]
    loop.remove_reader(a)
    b.send(b'more')
    run_briefly(loop)
    assert got == [('tag', b'hello')]


def test_reader_accepts_a_file_object_and_its_number(loop, pair):
    a, b = pair
    got = []
    loop.add_reader(a.fileno(), lambda: got.append(a.recv(10)))
    b.send(b'1')
    run_briefly(loop)
    assert loop.remove_reader(a) is True   # the object names the same fd
    assert got == [b'1']


def test_writer_fires_while_writable(loop, pair):
    a, b = pair
    got = []

    def on_writable():
        got.append('w')
        if len(got) == 3:
            loop.remove_writer(a)

    loop.add_writer(a, on_writable)
    run_briefly(loop)
    assert got == ['w', 'w', 'w']


def test_reader_stops_firing_when_drained(loop, pair):
    a, b = pair
    got = []
    loop.add_reader(a, lambda: got.append(a.recv(100)))
    b.send(b'x')
    run_briefly(loop, 0.05)
    assert got == [b'x']
    loop.remove_reader(a)


def test_replacing_a_reader_cancels_the_old_handle(loop, pair):
    a, b = pair
    got = []
    old = loop._add_reader(a, lambda: got.append('old'))
    new = loop._add_reader(a, lambda: got.append(('new', a.recv(10))))
    assert old.cancelled()
    assert not new.cancelled()
    b.send(b'x')
    run_briefly(loop)
    assert got == [('new', b'x')]
    assert loop.remove_reader(a) is True
    assert new.cancelled()


def test_replacing_a_writer_cancels_the_old_handle(loop, pair):
    a, b = pair
    got = []
    old = loop._add_writer(a, lambda: got.append('old'))
    loop.add_writer(a, lambda: (got.append('new'), loop.remove_writer(a)))
    assert old.cancelled()
    run_briefly(loop)
    assert got == ['new']


def test_reader_and_writer_on_the_same_fd(loop, pair):
    a, b = pair
    got = []

    def on_write():
        got.append('w')
        loop.remove_writer(a)

    loop.add_reader(a, lambda: got.append(('r', a.recv(10))))
    loop.add_writer(a, on_write)
    run_briefly(loop)
    assert got == ['w']
    b.send(b'1')
    run_briefly(loop)
    assert got == ['w', ('r', b'1')]
    # removing the writer kept the reader; adding a writer back keeps it too
    loop.add_writer(a, on_write)
    b.send(b'2')
    run_briefly(loop)
    assert sorted(map(str, got[2:])) == sorted(map(str, ['w', ('r', b'2')]))
    assert loop.remove_reader(a) is True
    b.send(b'3')
    run_briefly(loop)
    assert len(got) == 4
    assert a.recv(10) == b'3'


def test_both_sides_fire_in_one_iteration(loop, pair):
    a, b = pair
    got = []
    b.send(b'x')
    loop.add_reader(a, lambda: (got.append('r'), a.recv(10), loop.remove_reader(a)))
    loop.add_writer(a, lambda: (got.append('w'), loop.remove_writer(a)))
    # the fd is readable and writable already: a single iteration runs both
    loop.call_soon(loop.stop)
    loop.run_forever()
    assert sorted(got) == ['r', 'w']


def test_one_shot_reader_removes_itself(loop, pair):
    a, b = pair
    got = []

    def once():
        got.append(a.recv(10))
        loop.remove_reader(a)

    loop.add_reader(a, once)
    b.send(b'1')
    run_briefly(loop)
    b.send(b'2')
    run_briefly(loop)
    assert got == [b'1']
    assert a.recv(10) == b'2'


def test_reader_closing_its_fd(loop, watchdog):
    watchdog(10)
    a, b = socket.socketpair()
    got = []

    def on_readable():
        got.append(a.recv(10))
        loop.remove_reader(a)
        a.close()

    loop.add_reader(a, on_readable)
    b.send(b'bye')
    run_briefly(loop)
    b.close()
    assert got == [b'bye']


def test_hangup_wakes_the_reader(loop, pair):
    a, b = pair
    got = []
    loop.add_reader(a, lambda: (got.append(a.recv(10)), loop.remove_reader(a)))
    b.close()
    run_briefly(loop)
    assert got == [b'']


def test_reader_fd_reused_after_remove(loop):
    got = []
    for i in range(20):
        a, b = socket.socketpair()
        loop.add_reader(a, lambda a=a, i=i: (got.append((i, a.recv(10))),
                                             loop.remove_reader(a)))
        b.send(b'%d' % i)
        run_briefly(loop, 0.005)
        a.close()
        b.close()
    assert got == [(i, b'%d' % i) for i in range(20)]


def test_watched_fds_visible_through_selector_map(loop, pair):
    # stock code reads loop._selector.get_map() (e.g. transports' repr)
    a, b = pair
    loop.add_reader(a, print)
    key = loop._selector.get_map()[a.fileno()]
    assert key.fd == a.fileno()
    assert key.events == 1   # selectors.EVENT_READ
    loop.add_writer(a, print)
    assert loop._selector.get_map()[a.fileno()].events == 3
    assert a.fileno() in set(loop._selector.get_map())
    loop.remove_reader(a)
    loop.remove_writer(a)
    assert a.fileno() not in loop._selector.get_map()


def test_evioloop_stats_watched_fds(evloop, pair):
    a, b = pair
    assert evloop._evio_stats()['watched_fds'] == 0
    evloop.add_reader(a, print)
    evloop.add_writer(b, print)
    assert evloop._evio_stats()['watched_fds'] == 2
    evloop.remove_reader(a)
    evloop.remove_writer(b)
    assert evloop._evio_stats()['watched_fds'] == 0


# ---------------------------------------------------------------- stale registrations

def _idle_cpu(loop, seconds=0.3):
    t0 = time.thread_time()
    loop.run_until_complete(asyncio.sleep(seconds))
    return time.thread_time() - t0


def test_fd_closed_before_remove_reader_with_a_dup_does_not_spin(evloop):
    # epoll keeps the registration of the file alive through the dup and
    # reports it under the old number; EPOLL_CTL_DEL on the closed number
    # cannot remove it. The loop has to notice and drop it. (The stock loop
    # spins here.)
    a, b = socket.socketpair()
    fd = a.fileno()
    dup = os.dup(fd)
    try:
        got = []
        evloop.add_reader(fd, got.append, 'called')
        a.close()                  # closed first...
        assert evloop.remove_reader(fd) is True   # ...then unregistered
        b.send(b'readable')
        cpu = _idle_cpu(evloop)
        assert cpu < 0.1, f'loop spun: {cpu:.3f}s CPU in 0.3s'
        assert got == []
    finally:
        os.close(dup)
        b.close()


def test_stale_registration_does_not_reach_the_new_owner_of_the_number(evloop):
    a, b = socket.socketpair()
    fd = a.fileno()
    dup = os.dup(fd)
    c = d = None
    try:
        evloop.add_reader(fd, print, 'old')
        a.close()
        evloop.remove_reader(fd)
        # the number is free again: take it with a new socket
        c, d = socket.socketpair()
        if c.fileno() != fd:
            os.dup2(c.fileno(), fd)
            c.close()
            c = socket.socket(fileno=fd)
        assert c.fileno() == fd
        got = []
        evloop.add_reader(c, lambda: got.append(c.recv(100)))
        b.send(b'to the old file')          # only the old file is readable
        cpu = _idle_cpu(evloop)
        assert got == []
        assert cpu < 0.1, f'loop spun: {cpu:.3f}s CPU in 0.3s'
        d.send(b'to the new file')
        evloop.run_until_complete(asyncio.sleep(0.02))
        assert got == [b'to the new file']
        evloop.remove_reader(c)
    finally:
        os.close(dup)
        b.close()
        for s in (c, d):
            if s is not None:
                s.close()


def test_stale_registration_keeps_other_watchers_working(evloop):
    a, b = socket.socketpair()
    x, y = socket.socketpair()
    fd = a.fileno()
    dup = os.dup(fd)
    try:
        got = []
        evloop.add_reader(x, lambda: got.append(x.recv(100)))
        evloop.add_writer(y, lambda: (got.append('y writable'), evloop.remove_writer(y)))
        evloop.add_reader(fd, print)
        a.close()
        evloop.remove_reader(fd)
        b.send(b'stale')
        evloop.run_until_complete(asyncio.sleep(0.05))
        y.send(b'after')
        evloop.run_until_complete(asyncio.sleep(0.05))
        assert got == ['y writable', b'after']
        evloop.remove_reader(x)
    finally:
        os.close(dup)
        for s in (b, x, y):
            s.close()


def test_cancelled_reader_handle_is_dropped_on_its_next_event(loop, pair):
    a, b = pair
    got = []
    h = loop._add_reader(a, got.append, 'called')
    h.cancel()
    b.send(b'x')
    run_briefly(loop)
    assert got == []
    assert a.fileno() not in loop._selector.get_map()
    assert loop.remove_reader(a) is False


@pytest.mark.parametrize('exc_type', [KeyboardInterrupt, SystemExit])
def test_base_exception_in_reader_propagates_and_loop_recovers(loop, pair, exc_type):
    a, b = pair
    x, y = socket.socketpair()
    try:
        calls = []

        def raiser():
            calls.append('raiser')
            a.recv(10)
            raise exc_type()

        loop.add_reader(a, raiser)
        loop.add_reader(x, lambda: calls.append(('other', x.recv(10))))
        b.send(b'1')
        with pytest.raises(exc_type):
            loop.run_until_complete(asyncio.sleep(1))
        assert not loop.is_running()
        loop.remove_reader(a)
        y.send(b'2')
        run_briefly(loop)
        assert calls[0] == 'raiser'
        assert calls[-1] == ('other', b'2')
        loop.remove_reader(x)
    finally:
        x.close()
        y.close()
        # the sleep(1) task is left pending by the interrupted run
        for t in asyncio.all_tasks(loop):
            t.cancel()
        loop.run_until_complete(asyncio.sleep(0))


def test_watch_survives_its_fd_number_being_closed_and_reused(evloop):
    # The writer's fd is closed without remove_writer; the kernel drops that
    # registration and the number comes back for a new socket. Adding a reader
    # on the number must watch the new socket (the stock loop raises
    # FileNotFoundError from epoll_ctl(MOD) here).
    a, b = socket.socketpair()
    evloop.add_writer(a.fileno(), lambda: None)
    number = a.fileno()
    a.close()
    c, d = socket.socketpair()
    try:
        if c.fileno() != number:
            c, d = d, c
        assert c.fileno() == number, 'the kernel did not reuse the lowest fd number'
        got = []
        evloop.add_reader(number, lambda: (got.append(c.recv(10)), evloop.stop()))
        d.send(b'x')
        evloop.call_later(2, evloop.stop)
        evloop.run_forever()
        assert got == [b'x']
        assert evloop.remove_reader(number) is True
        assert evloop.remove_writer(number) is True
    finally:
        for s in (b, c, d):
            s.close()


def test_the_zombie_check_sees_an_unreaped_child_and_not_a_reaped_one():
    # conftest's autouse check_zombies relies on _zombie(): it must name an
    # exited, unreaped child without reaping it, and see nothing once reaped
    from conftest import _zombie
    assert _zombie() is None
    pid = os.fork()
    if pid == 0:
        os._exit(3)
    deadline = time.monotonic() + 5
    while _zombie() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert _zombie() == pid
    assert _zombie() == pid             # looking did not reap it
    assert os.waitpid(pid, 0) == (pid, 3 << 8)
    assert _zombie() is None
