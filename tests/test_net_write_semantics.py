"""What a protocol sees of its own writes, on evioloop and the stock loop.

evioloop may hold a write until the end of the step to batch it with the
next, but only where that cannot be seen: `get_write_buffer_size()` right
after a write, and when `pause_writing` comes, must be what the stock loop
shows (its write() sends at once when nothing is queued).
"""
import pytest

from net_helpers import LOOP_KINDS, Recorder, connected_pair, run, until


@pytest.fixture(params=LOOP_KINDS)
def kind(request):
    return request.param


class SizeAfterWrite(Recorder):
    """Writes a reply in data_received and notes the buffer size at once."""

    def __init__(self, reply_sizes):
        super().__init__()
        self.reply_sizes = reply_sizes
        self.sizes = []

    def data_received(self, data):
        super().data_received(data)
        for n in self.reply_sizes:
            self.transport.write(b'r' * n)
            self.sizes.append(self.transport.get_write_buffer_size())


@pytest.mark.parametrize('family', ['tcp', 'unix'])
def test_buffer_size_right_after_write_in_data_received(kind, family):
    async def main():
        server = SizeAfterWrite([100, 2000, 30])
        async with connected_pair(family, lambda: server, Recorder) as pair:
            pair.ctransport.write(b'go')
            await pair.cproto.wait_bytes(2130)
            assert bytes(pair.cproto.data) == b'r' * 2130
            return server.sizes

    assert run(kind, main()) == [0, 0, 0]


@pytest.mark.parametrize('family', ['tcp', 'unix'])
def test_buffer_size_right_after_write_in_a_task(kind, family):
    async def main():
        async with connected_pair(family, Recorder, Recorder) as pair:
            st = pair.sproto.transport
            sizes = []
            st.write(b'a' * 500)
            sizes.append(st.get_write_buffer_size())
            st.writelines([b'b' * 10, b'c' * 20])
            sizes.append(st.get_write_buffer_size())
            await pair.cproto.wait_bytes(530)
            assert bytes(pair.cproto.data) == b'a' * 500 + b'b' * 10 + b'c' * 20
            return sizes

    assert run(kind, main()) == [0, 0]


class CountsPauses(Recorder):
    def __init__(self):
        super().__init__()
        self.pauses = 0
        self.sizes_at_pause = []

    def pause_writing(self):
        self.pauses += 1
        self.sizes_at_pause.append(self.transport.get_write_buffer_size())

    def resume_writing(self):
        pass


def test_a_write_under_the_high_mark_does_not_pause(kind):
    # the kernel takes a 48 KiB write whole on a fresh loopback connection;
    # the protocol must not be paused for bytes the kernel was never offered
    async def main():
        async with connected_pair('tcp', CountsPauses, Recorder) as pair:
            s = pair.sproto
            s.transport.set_write_buffer_limits(high=32 * 1024)
            s.transport.write(b'w' * (48 * 1024))
            after = (s.pauses, s.transport.get_write_buffer_size())
            await pair.cproto.wait_bytes(48 * 1024)
            return after

    assert run(kind, main()) == (0, 0)


def test_pause_writing_sees_what_the_kernel_refused(kind):
    # with a reader that does not read, the buffer fills; when pause_writing
    # comes, the size it sees is over the high-water mark on both loops
    async def main():
        async with connected_pair('tcp', CountsPauses, Recorder,
                                  small_buffers=True) as pair:
            pair.ctransport.pause_reading()
            s = pair.sproto
            s.transport.set_write_buffer_limits(high=64 * 1024)
            for _ in range(64):
                s.transport.write(b'p' * 16384)
            await until(lambda: s.pauses, what='pause_writing')
            assert all(size > 64 * 1024 for size in s.sizes_at_pause), s.sizes_at_pause
            pair.ctransport.resume_reading()
            await pair.cproto.wait_bytes(64 * 16384)
            assert bytes(pair.cproto.data) == b'p' * (64 * 16384)
            return s.pauses

    assert run(kind, main()) == 1


class ManyWritesInDataReceived(CountsPauses):
    """Answers the first data with `count` writes of `size` bytes, in one callback."""

    def __init__(self, count, size):
        super().__init__()
        self.count, self.size = count, size

    def data_received(self, data):
        super().data_received(data)
        for i in range(self.count):
            self.transport.write(bytes([i % 251]) * self.size)


@pytest.mark.parametrize('family,count,size', [
    ('tcp', 2000, 37), ('tcp', 2000, 60), ('unix', 2000, 37)])
def test_many_small_writes_in_one_callback_do_not_pause(kind, family, count, size):
    # 74 KB and 120 KB in small writes, more than the 64 KiB high-water mark
    # in all, to a peer that reads: the stock loop sends each write at once and
    # the kernel takes them all, so it never pauses (a Unix socket's buffer
    # takes 74 KB, not always more). evioloop batches them and
    # must still leave the kernel, not the number of chunks one syscall takes,
    # to decide what stays queued.
    expected = b''.join(bytes([i % 251]) * size for i in range(count))

    async def main():
        server = ManyWritesInDataReceived(count, size)
        async with connected_pair(family, lambda: server, Recorder) as pair:
            pair.ctransport.write(b'go')
            await pair.cproto.wait_bytes(len(expected))
            assert bytes(pair.cproto.data) == expected
            return server.pauses

    assert run(kind, main()) == 0


def test_many_small_writes_in_one_step_arrive_in_order(kind):
    async def main():
        writer = SizeAfterWrite([])
        async with connected_pair('tcp', lambda: writer, Recorder) as pair:
            st = pair.sproto.transport
            for i in range(1000):
                st.write(b'%04d' % i)
            await pair.cproto.wait_bytes(4000)
            return bytes(pair.cproto.data)

    assert run(kind, main()) == b''.join(b'%04d' % i for i in range(1000))


def test_write_then_close_in_data_received_delivers_everything(kind):
    class WriteClose(Recorder):
        def data_received(self, data):
            self.transport.write(b'z' * 70000)
            self.transport.close()

    async def main():
        async with connected_pair('tcp', WriteClose, Recorder) as pair:
            pair.ctransport.write(b'x')
            await pair.cproto.wait_bytes(70000)
            await until(lambda: pair.cproto.eof.done() or pair.cproto.lost.done(), what='EOF')
            return bytes(pair.cproto.data)

    assert run(kind, main()) == b'z' * 70000



class PausedClient(Recorder):
    def connection_made(self, transport):
        super().connection_made(transport)
        transport.pause_reading()


@pytest.mark.parametrize('what', ['bytearray', 'memoryview'])
def test_a_buffer_changed_after_write_still_sends_what_was_written(what):
    # A large bytearray/memoryview write may go out from the caller's memory;
    # what the kernel did not take must be a copy made before write()
    # returned. evioloop only: the stock loop of 3.12+ keeps a view of the
    # caller's buffer and sends whatever it holds later, so this is a promise
    # of evioloop's, not asyncio's.
    kind = 'evioloop'
    async def main():
        async with connected_pair('tcp', Recorder, PausedClient, small_buffers=True) as pair:
            st = pair.sproto.transport
            buf = bytearray(b'A' * (1 << 20))
            st.write(buf if what == 'bytearray' else memoryview(buf))
            assert st.get_write_buffer_size() > 0, 'the kernel took it all: no test'
            buf[:] = b'B' * len(buf)
            st.write(memoryview(buf)[:100000])
            pair.ctransport.resume_reading()
            got = await pair.cproto.wait_bytes((1 << 20) + 100000)
            return got == b'A' * (1 << 20) + b'B' * 100000

    assert run(kind, main()) is True
