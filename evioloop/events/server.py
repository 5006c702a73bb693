"""Layer 5: serving, ticking and shutting down an Events server.

`listen` binds every address, picks the mode (native on an evioloop loop,
portable on any other or when an address says `-net`), calls `serving`, and
hands each listener to its owner: a compiled `NativeListener`/`UdpOwner` in
the loop's fd table, or an asyncio server/datagram endpoint through the
adapter in portable.py. `Server` is the handle the user sees; its shutdown
runs in evio's order (stop accepting, close every connection with `closed`,
remove the listeners, then the `shutdown` hook).
"""
import asyncio
import datetime
import os
import threading

from ..core import _core
from . import _conn, _server, _udp, portable
from .addrs import open_listeners, close_listeners
from .api import Action, LoadBalance

__all__ = ['Server', 'listen', 'serve_async', 'serve']

# seconds a portable shutdown waits for the host loop to report its
# transports gone after closing them
_PORTABLE_CLOSE_WAIT = 5.0


def _check_events(events):
    n = getattr(events, 'num_loops', 1)
    if not isinstance(n, int) or isinstance(n, bool):
        raise TypeError(f'num_loops must be an int, not {type(n).__name__}')
    loops = (os.cpu_count() or 1) if n < 0 else max(n, 1)
    if loops > 1:
        raise NotImplementedError(
            f'num_loops={n} means {loops} loops; more than one loop per server is not '
            f'built yet (use num_loops=1)')
    lb = getattr(events, 'load_balance', LoadBalance.RANDOM)
    if lb not in tuple(LoadBalance):
        raise ValueError(f'load_balance must be an evioloop.LoadBalance, not {lb!r}')
    return loops


def _tick_result(r):
    """tick()'s return as (delay seconds, action)."""
    delay, action = 0.0, Action.NONE
    if r is None:
        pass
    elif isinstance(r, tuple):
        if len(r) != 2:
            raise TypeError(f'Events.tick() returned a tuple of {len(r)}; '
                            f'expected (delay, action)')
        delay, action = r
    elif isinstance(r, Action):
        action = r
    else:
        delay = r
    if isinstance(delay, datetime.timedelta):
        delay = delay.total_seconds()
    if not isinstance(delay, (int, float)) or isinstance(delay, bool):
        raise TypeError(f'Events.tick() returned {delay!r} as its delay; expected '
                        f'seconds (int or float) or a timedelta')
    if action is None:
        action = Action.NONE
    if not isinstance(action, Action):
        raise TypeError(f'Events.tick() returned {action!r} as its action; '
                        f'expected an evioloop.Action or None')
    return max(float(delay), 0.0), action


class Server:
    """A running Events server (what `serving`, `shutdown` and `listen` get)."""

    def __init__(self, events, listeners, loop, native, num_loops):
        """Made by `listen()` (and so `serve`, `serve_async`), not by user code."""
        self._events = events
        self._listeners = listeners
        self._loop = loop
        self._native = native
        self.addrs = [a.bound for a in listeners]
        self.num_loops = num_loops
        self._core = _server.ServerCore(loop, events, self, native)
        self._owners = []           # native: listener owners; portable: servers, transports
        self._state = 'new'         # new, serving, stopping, closed
        self._closed = loop.create_future()
        self._tick_handle = None

    # -- what the user may call

    @property
    def udp_dropped(self):
        """Datagrams dropped because the send queue was full."""
        return self._core.udp_dropped

    @property
    def native(self):
        """True when the server runs on evioloop's compiled path."""
        return self._native

    def count_connections(self):
        """How many connections are open now (TCP and Unix; UDP has none)."""
        return len(self._core.conns)

    def is_serving(self):
        """True once `serving` has returned, until a shutdown starts."""
        return self._state == 'serving'

    def stop(self):
        """Start a clean shutdown, from any thread; return at once.

        Every connection is closed and gets `closed`, the listeners close,
        then `shutdown` runs; `wait_closed()` waits for the end. A call
        while the server is not serving (a second call, say) does nothing.
        """
        if threading.get_ident() == self._core.thread_id:
            self._request_shutdown()
        else:
            self._loop.call_soon_threadsafe(self._request_shutdown)

    async def wait_closed(self):
        """Wait until the shutdown has finished (`shutdown` has run).

        Cancelling the wait does not cancel the shutdown.
        """
        await asyncio.shield(self._closed)

    async def __aenter__(self):
        """`async with await listen(...) as server:` gives the server itself."""
        return self

    async def __aexit__(self, *exc_info):
        """Leaving the `async with` block: `stop()`, then `wait_closed()`."""
        self.stop()
        await self.wait_closed()

    def __repr__(self):
        mode = 'native' if self._native else 'portable'
        return f'<evioloop.Server {mode} {self._state} addrs={self.addrs!r}>'

    # -- starting

    def _start(self):
        serving = getattr(self._events, 'serving', None)
        if serving is not None:
            action = serving(self)
            if action is not None and not isinstance(action, Action):
                raise TypeError(f'Events.serving() returned {action!r}; expected an '
                                f'evioloop.Action or None')
            if action == Action.SHUTDOWN:
                self._state = 'stopping'
                self._finish()
                return
        self._state = 'serving'
        if self._native:
            for i, a in enumerate(self._listeners):
                if a.is_udp:
                    self._owners.append(_udp.start_native_udp(self._core, a.sock, i))
                else:
                    self._owners.append(
                        _conn.start_native_listener(self._core, a.sock, i, 1024))
        if getattr(self._events, 'tick', None) is not None:
            self._tick_handle = self._loop.call_soon(self._tick)

    async def _start_portable(self):
        for i, a in enumerate(self._listeners):
            self._owners.append(await portable.start(self._loop, self._core, a, i))

    # -- ticking, on the loop

    def _tick(self):
        self._tick_handle = None
        if self._state != 'serving':
            return
        try:
            delay, action = _tick_result(self._events.tick())
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._loop.call_exception_handler({
                'message': 'Events.tick() failed; no more ticks',
                'exception': exc,
            })
            return
        if action == Action.SHUTDOWN:
            self._request_shutdown()
        elif self._state == 'serving':
            self._tick_handle = self._loop.call_later(delay, self._tick)

    # -- shutting down, in evio's order

    def _request_shutdown(self):
        if self._state != 'serving':
            return
        self._state = 'stopping'
        self._core.stopping = True
        # not inside the callback that asked: every conn gets its closed()
        # from a clean stack
        self._loop.call_soon(self._shutdown)

    def _shutdown(self):
        if self._tick_handle is not None:
            self._tick_handle.cancel()
            self._tick_handle = None
        for owner in self._owners:              # stop accepting and reading
            if self._native:
                owner._stop()
            else:
                owner.close()
        self._owners = []
        for conn in self._core._conns():
            conn._shutdown_close()
        if not self._native and self._core.live_transports:
            self._core.transports_gone = self._loop.create_future()
            waiter = asyncio.ensure_future(
                asyncio.wait_for(asyncio.shield(self._core.transports_gone),
                                 _PORTABLE_CLOSE_WAIT))
            waiter.add_done_callback(self._transports_gone)
            return
        self._finish()

    def _transports_gone(self, waiter):
        # done, or timed out: the host loop kept a transport; finish anyway
        if not waiter.cancelled():
            waiter.exception()
        self._finish()

    def _finish(self):
        close_listeners(self._listeners)
        hook = getattr(self._events, 'shutdown', None)
        if hook is not None:
            try:
                hook(self)
            except (SystemExit, KeyboardInterrupt):
                raise
            except BaseException as exc:
                self._loop.call_exception_handler({
                    'message': 'Events.shutdown() failed',
                    'exception': exc,
                })
        self._state = 'closed'
        if not self._closed.done():
            self._closed.set_result(None)


async def listen(events, *addrs, portable=False):
    """Open every listener and start serving; return the `Server` at once.

    Every address is bound before anything is served: when one fails,
    nothing is served and nothing is left behind (sockets closed, Unix
    socket files removed). `portable=True` serves through asyncio
    transports (as on any other loop) instead of evioloop's compiled path.

    Raises:
        ValueError: no address, a malformed one (see `parse_addr`),
            `reuseport` where the platform has none, or an
            `events.load_balance` that is not a `LoadBalance`.
        TypeError: an address that is not a str, `events.num_loops` that is
            not an int, or `serving` returned something that is not an action.
        OSError: an address cannot be resolved or bound (FileExistsError:
            a Unix socket path exists and is not a socket).
        NotImplementedError: `events.num_loops` asks for more than one loop.
        RuntimeError: no event loop is running (as asyncio raises it).
    """
    num_loops = _check_events(events)
    loop = asyncio.get_running_loop()
    listeners = open_listeners(addrs)
    native = (isinstance(loop, _core.CoreLoop) and not portable
              and not any(a.portable for a in listeners))
    server = Server(events, listeners, loop, native, num_loops)
    try:
        server._start()
        if not native and server._state == 'serving':
            await server._start_portable()
    except BaseException:
        for owner in server._owners:
            owner._stop() if native else owner.close()
        close_listeners(listeners)
        raise
    return server


async def serve_async(events, *addrs, portable=False):
    """Serve until the server shuts down; cancelling shuts it down cleanly.

    Raises:
        ValueError, TypeError, OSError, NotImplementedError: as `listen()`.
        asyncio.CancelledError: once a cancelled server has shut down.
    """
    server = await listen(events, *addrs, portable=portable)
    try:
        await asyncio.shield(server._closed)
    except asyncio.CancelledError:
        server.stop()
        await server._closed
        raise


def serve(events, *addrs, portable=False):
    """evio's Serve: block until the server shuts down, on a new evioloop loop.

    Raises:
        RuntimeError: called while an event loop runs in this thread (await
            `serve_async()` there).
        ValueError, TypeError, OSError, NotImplementedError: as `listen()`.
    """
    from .. import run
    if asyncio.events._get_running_loop() is not None:
        raise RuntimeError('evioloop.serve() cannot be called from a running event '
                           'loop; await evioloop.serve_async() there')
    run(serve_async(events, *addrs, portable=portable))
