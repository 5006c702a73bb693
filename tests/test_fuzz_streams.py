"""Property tests of the two ways to read input in pieces (docs/events.md "Reading in pieces").

* `InputStream` (evio's): a random byte stream cut at random points, each
  piece passed to begin() and a random prefix consumed before end(): what is
  consumed, in order, plus what is kept is exactly the stream; begin() gives
  the packet itself when nothing is kept; end() copies (the packet may be the
  loop's buffer, reused afterwards).
* The Conn pull reader (gnet's peek/next/discard/inbound_buffered), on a real
  server (native on evioloop, portable on the stock loop): a client writes
  random chunks, the server's data callback applies random reader operations;
  every result and `inbound_buffered` after every step equal a bytes model of
  "what an earlier call left unread, then in_", and the hash of everything the
  callbacks saw equals the hash of what the client sent.
"""
import pytest
from events_helpers import harness, until
from fuzz_helpers import fuzz, sha, split_at
from hypothesis import given
from hypothesis import strategies as st

from evioloop import Events, InputStream

# -- InputStream ----------------------------------------------------------------------

streams = st.binary(max_size=2000)
cut_lists = st.lists(st.integers(0, 4000), max_size=20)
# how much of each begin() result is consumed: a fraction in 0..1 (1: all of it)
fractions = st.lists(st.floats(0, 1), min_size=1, max_size=8)


@fuzz(120)
@given(streams, cut_lists, fractions, st.sampled_from([bytes, bytearray, memoryview]))
def test_input_stream_reassembles(data, cuts, fracs, kind):
    s = InputStream()
    kept = b''                              # the model: what the stream holds
    consumed = bytearray()
    for i, piece in enumerate(split_at(data, cuts)):
        scratch = bytearray(piece)          # the "loop buffer" the packet lives in
        packet = kind(scratch) if kind is not bytes else bytes(scratch)
        got = s.begin(packet)
        if not kept:
            assert got is packet            # evio: no copy when nothing was kept
        assert bytes(got) == kept + piece
        k = int(len(got) * fracs[i % len(fracs)])
        consumed += bytes(got[:k])
        s.end(got[k:])
        kept = bytes(got)[k:]
        assert len(s) == len(kept)
        scratch[:] = b'\xee' * len(scratch)  # the loop reuses its buffer
        # end() kept a copy: the reuse does not show in the next begin()
        assert bytes(s.begin(b'')) == kept
    assert bytes(consumed) + kept == data


# -- the pull reader on a real server ------------------------------------------------

MODES = ['native', 'stock']


@pytest.fixture(params=MODES)
def h(request):
    yield from harness(request.param)


# one reader operation: (name, n); n -1 means "all"
ops = st.tuples(st.sampled_from(['peek', 'next', 'discard', 'buffered']),
                st.one_of(st.just(-1), st.integers(0, 40), st.integers(0, 600)))
# each data call takes the next group of operations (an empty group: the
# call does not touch the reader, which keeps nothing, as in evio)
op_groups = st.lists(st.lists(ops, max_size=5), min_size=1, max_size=8)


class ReaderModel:
    """What the pull reader must answer: bytes left unread earlier, then in_."""

    def __init__(self, groups):
        self.groups = groups
        self.calls = 0
        self.seen = bytearray()        # every in_, in order (the stream itself)
        self.gone = bytearray()        # what next() returned, discard() and the drop rule
        #                                dropped, in order: with pending, the whole stream
        self.pending = b''
        self.errors = []

    def data(self, conn, in_):
        if in_ is None:
            return None
        self.seen += in_
        group = self.groups[self.calls % len(self.groups)]
        self.calls += 1
        pending = self.pending + bytes(in_)
        for name, n in group:
            want_n = len(pending) if n < 0 else min(n, len(pending))
            if name == 'peek':
                got, want = conn.peek(n), pending[:want_n]
            elif name == 'next':
                got, want = conn.next(n), pending[:want_n]
                self.gone += got
                pending = pending[want_n:]
            elif name == 'discard':
                got, want = conn.discard(n), want_n
                self.gone += pending[:want_n]
                pending = pending[want_n:]
            else:
                got, want = conn.inbound_buffered, len(pending)
            if got != want or conn.inbound_buffered != len(pending):
                self.errors.append((self.calls, name, n, got, want, len(pending)))
        # a call that used no reader keeps nothing (docs/events.md)
        if not group:
            self.gone += pending
            pending = b''
        self.pending = pending
        return None


@fuzz(25)
@given(data=st.binary(min_size=1, max_size=6000), cuts=cut_lists, groups=op_groups)
def test_pull_reader_matches_model(h, data, cuts, groups):
    m = ReaderModel(groups)

    async def main():
        async with h.serve(Events(data=m.data), 'tcp://127.0.0.1:0') as server:
            c = await h.connect(server)
            sent = 0
            for piece in split_at(data, cuts):
                await c.send(piece)
                sent += len(piece)
                # mostly one data call per piece (the kernel may still merge some)
                await until(lambda n=sent: len(m.seen) >= n, what='the bytes at the server')
            c.close()
    h.run(main())
    assert m.calls >= 1 and m.errors == []
    assert sha(bytes(m.seen)) == sha(data)
    # next() gave the stream's bytes in order, nothing twice, nothing lost
    assert sha(bytes(m.gone) + m.pending) == sha(data)
