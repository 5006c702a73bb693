"""evioloop: a fast asyncio event loop on evio's Wait/iter dispatch.

Layer 6, the package face. Ways in:

    evioloop.run(main())                                   # like asyncio.run
    asyncio.run(main(), loop_factory=evioloop.new_event_loop)   # 3.12+
    with asyncio.Runner(loop_factory=evioloop.new_event_loop) as r: ...  # 3.11+
    evioloop.install()  /  evioloop.EventLoopPolicy()     # legacy policies
"""
import asyncio
import sys
import warnings
from asyncio import unix_events

# first: one clear ImportError if this Python's asyncio lacks a private name
# that evioloop builds on, before a compiled module trips over it
from . import _compat
_compat.check()

from .core._handles import Handle, TimerHandle  # noqa: E402
from ._poller import BACKEND  # noqa: E402 ("epoll" or "kqueue")
from .loop import Loop  # noqa: E402
from .events import (  # noqa: E402
    Action, Conn, Events, InputStream, LoadBalance, Options, Server, UdpConn, listen, serve,
    serve_async)

__all__ = ['Loop', 'new_event_loop', 'run', 'install', 'EventLoopPolicy', 'BACKEND',
           'Handle', 'TimerHandle',
           # the Events API (docs/events.md)
           'serve', 'serve_async', 'listen', 'Events', 'Action', 'Options', 'LoadBalance',
           'InputStream', 'Conn', 'UdpConn', 'Server']
__version__ = '0.1.0'


def new_event_loop():
    """Return a new evioloop event loop (an `evioloop.Loop`), not set as current.

    Raises:
        OSError: the kernel refused the loop's poller or wakeup file
            descriptors (out of file descriptors, for one).
    """
    return Loop()


def run(main, *, debug=None):
    """Run coroutine `main` on a new evioloop loop, as asyncio.run() does.

    The loop is made, set as the current loop, and closed at the end (after
    the remaining tasks are cancelled and async generators and the default
    executor are shut down). Returns what `main` returns; an exception of
    `main` propagates.

    Raises:
        RuntimeError: called while an event loop runs in this thread.
        ValueError: `main` is not a coroutine.
    """
    if asyncio.events._get_running_loop() is not None:
        # before any loop exists, as asyncio.run() checks
        raise RuntimeError("evioloop.run() cannot be called from a running event loop")
    if sys.version_info >= (3, 11):
        with asyncio.Runner(debug=debug, loop_factory=new_event_loop) as runner:
            return runner.run(main)
    return _run_310(main, debug=debug)


def _run_310(main, *, debug=None):
    # asyncio.run() of 3.10, with our loop: 3.10 has no asyncio.Runner.
    from asyncio import coroutines, events, runners
    if not coroutines.iscoroutine(main):
        raise ValueError(f"a coroutine was expected, got {main!r}")
    loop = new_event_loop()
    try:
        events.set_event_loop(loop)
        if debug is not None:
            loop.set_debug(debug)
        return loop.run_until_complete(main)
    finally:
        try:
            runners._cancel_all_tasks(loop)
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.run_until_complete(loop.shutdown_default_executor())
        finally:
            events.set_event_loop(None)
            loop.close()


def _warn_policy_deprecated(what):
    # asyncio deprecates the policy system in 3.14; so do we, there.
    if sys.version_info >= (3, 14):
        warnings.warn(f"{what} is deprecated since Python 3.14 (asyncio deprecates "
                      "event loop policies); use evioloop.run() or "
                      "asyncio.Runner(loop_factory=evioloop.new_event_loop)",
                      DeprecationWarning, stacklevel=3)


class EventLoopPolicy(unix_events._UnixDefaultEventLoopPolicy):
    """The legacy way in: an event loop policy whose loops are evioloop's."""

    def __init__(self):
        """A policy whose `new_event_loop()` makes `evioloop.Loop`s.

        Warns:
            DeprecationWarning: on Python 3.14 and later, where asyncio
                deprecates event loop policies.
        """
        _warn_policy_deprecated('evioloop.EventLoopPolicy')
        super().__init__()

    _loop_factory = Loop

    def __repr__(self):
        return '<evioloop.EventLoopPolicy>'


def install():
    """Make evioloop the loop of asyncio's default policy (legacy).

    Sets a new `EventLoopPolicy` as asyncio's event loop policy: from then
    on `asyncio.new_event_loop()` and `asyncio.run()` use evioloop.

    Warns:
        DeprecationWarning: on Python 3.14 and later, where asyncio deprecates
            event loop policies.
    """
    _warn_policy_deprecated('evioloop.install()')
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', DeprecationWarning)
        asyncio.set_event_loop_policy(EventLoopPolicy())
