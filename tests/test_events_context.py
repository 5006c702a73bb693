"""The contextvars Events callbacks see: those of the task that called
listen(), in every mode, as an asyncio protocol sees its creator's; and each
connection has its own copy (a value set in one conn's callback is not seen
by another's)."""
import contextvars
import socket

import pytest

from evioloop import Events
from events_helpers import ALL_MODES, harness, until


@pytest.fixture(params=ALL_MODES)
def h(request):
    yield from harness(request.param)

VAR = contextvars.ContextVar('VAR', default='unset')


def test_callbacks_see_listen_callers_context(h):
    seen = []

    def opened(conn):
        seen.append(('opened', VAR.get()))

    def data(conn, in_):
        seen.append(('data', VAR.get()))
        VAR.set(f'set by conn {len(seen)}')
        return in_

    def closed(conn, err):
        seen.append(('closed', VAR.get()))

    async def main():
        VAR.set('listen caller')
        async with h.serve(Events(opened=opened, data=data, closed=closed),
                           'tcp://127.0.0.1:0') as server:
            VAR.set('changed after listen')
            for _ in range(2):
                c = await h.connect(server)
                await c.send(b'hi')
                assert await c.recv_exactly(2) == b'hi'
                c.close()
            await until(lambda: sum(e[0] == 'closed' for e in seen) == 2, what='closed')
    h.run(main())
    opened_values = [v for k, v in seen if k == 'opened']
    data_values = [v for k, v in seen if k == 'data']
    assert opened_values == ['listen caller', 'listen caller']
    assert data_values == ['listen caller', 'listen caller']


def test_udp_data_sees_listen_callers_context(h):
    seen = []

    def data(conn, in_):
        seen.append(VAR.get())
        return in_

    async def main():
        VAR.set('listen caller')
        async with h.serve(Events(data=data), 'udp://127.0.0.1:0') as server:
            VAR.set('changed after listen')
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            try:
                s.sendto(b'x', server.addrs[0])
                await until(lambda: seen, what='the datagram')
            finally:
                s.close()
    h.run(main())
    assert seen == ['listen caller']
