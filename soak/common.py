"""What every soak workload shares: the run's state, its counters and its error records.

`Soak` is handed to every workload. It owns the counters (`Stats`, one per
workload), the list of errors (each one fails the run), the set of client
addresses the soak reset on purpose (so that the server side may see a
ConnectionResetError from them without it counting), and the random payloads.
"""
import asyncio
import os
import random
import time

MiB = 1 << 20
MAX_MSG = MiB
# Payload bytes come out of one random pool: slicing it is cheap, and every
# message still differs from its neighbours (random offset and length).
_POOL_SIZE = 2 * MiB

# The exceptions the stock loop does not report for a connection whose peer
# went away (selector_events._FATAL_ERROR_IGNORE): for a peer the soak reset,
# seeing one of these is what a correct loop does.
RESET_ERRORS = (BrokenPipeError, ConnectionResetError, ConnectionAbortedError)
# How long an address the soak reset stays "expected to reset" (ports get reused).
# 30 s: a reset is reported within milliseconds, and the kernel's ephemeral
# ports take minutes to come round again at the soak's connection rate.
_RESET_MEMORY = 30.0
# No single step of a workload may take longer than this: a stall is an error.
STEP_TIMEOUT = 60.0
# Recorded errors kept in full (all of them are counted).
_KEEP_ERRORS = 200


class Stats:
    """Counters of one workload. `bytes` counts payload bytes that were checked."""

    __slots__ = ('name', 'ops', 'bytes', 'conns', 'errors', 'corrupt', 'lost', 'extra')

    def __init__(self, name):
        self.name = name
        self.ops = 0          # messages / requests / datagrams / processes / callbacks
        self.bytes = 0        # payload bytes that came back and were checked
        self.conns = 0        # connections (or processes) opened
        self.errors = 0       # errors of this workload (each one is also in Soak.errors)
        self.corrupt = 0      # bytes that came back wrong (messages, datagrams)
        self.lost = 0         # stream bytes missing / datagrams that never came back
        self.extra = {}       # workload-specific counters

    def snapshot(self):
        d = {k: getattr(self, k) for k in ('ops', 'bytes', 'conns', 'errors', 'corrupt',
                                           'lost')}
        d.update(self.extra)
        return d

    def bump(self, key, n=1):
        self.extra[key] = self.extra.get(key, 0) + n


class Soak:
    """The run: flags, counters, errors, and the helpers the workloads use."""

    def __init__(self, loop, seed, quick):
        self.loop = loop
        self.seed = seed
        self.quick = quick
        self.stopping = False
        self.stats = {}
        self.errors = []          # (time, workload, message), first _KEEP_ERRORS
        self.error_count = 0
        self.handler_calls = []   # every loop exception-handler call, summarised
        self.handler_unexpected = 0
        self.handler_expected = 0
        self.expected_resets = 0  # server-side reset errors from peers the soak reset
        self._reset_peers = {}    # (host, port) -> time the soak reset it
        self.t0 = time.monotonic()
        self.notes = []           # things the summary must say (e.g. TLS skipped)
        pool_rng = random.Random(seed)
        self._pool = pool_rng.randbytes(_POOL_SIZE) if hasattr(pool_rng, 'randbytes') \
            else bytes(pool_rng.getrandbits(8) for _ in range(_POOL_SIZE))

    # -- counters and errors ----------------------------------------------
    def stat(self, name):
        st = self.stats.get(name)
        if st is None:
            st = self.stats[name] = Stats(name)
        return st

    def error(self, workload, message):
        """An error: it fails the run. Kept in full up to _KEEP_ERRORS."""
        self.error_count += 1
        self.stat(workload).errors += 1
        if len(self.errors) < _KEEP_ERRORS:
            self.errors.append((round(time.monotonic() - self.t0, 3), workload, message))

    def rng(self, workload, worker):
        """A random stream per worker, from the run's seed (sizes are reproducible)."""
        return random.Random(f'{self.seed}/{workload}/{worker}')

    def payload(self, rng, max_size=MAX_MSG):
        """Random bytes, 1 .. max_size long, skewed small (log-uniform length)."""
        bits = max_size.bit_length() - 1
        n = min(max_size, max(1, int(2 ** rng.uniform(0, bits))))
        off = rng.randrange(0, _POOL_SIZE - n + 1)
        return self._pool[off:off + n]

    # -- resets the soak made on purpose ------------------------------------
    def mark_reset(self, addr):
        """The soak is about to reset the connection whose client end is `addr`."""
        if isinstance(addr, tuple) and len(addr) >= 2:
            self._reset_peers[(addr[0], addr[1])] = time.monotonic()

    def was_reset(self, addr):
        if not (isinstance(addr, tuple) and len(addr) >= 2):
            return False
        t = self._reset_peers.get((addr[0], addr[1]))
        return t is not None and time.monotonic() - t < _RESET_MEMORY

    def prune_resets(self):
        now = time.monotonic()
        for k in [k for k, t in self._reset_peers.items() if now - t > _RESET_MEMORY]:
            del self._reset_peers[k]

    def server_exc(self, workload, exc, peer):
        """A server-side exception: expected only if it is a reset from a peer we reset."""
        if isinstance(exc, RESET_ERRORS) and self.was_reset(peer):
            self.expected_resets += 1
            self.stat(workload).bump('expected_resets')
            return
        self.error(workload, f'server side: {exc!r} (peer {peer!r})')

    # -- the loop's exception handler ---------------------------------------
    def exception_handler(self, loop, context):
        """Record every call; a reset from a peer the soak reset is expected."""
        exc = context.get('exception')
        peer = _peer_of(context)
        expected = isinstance(exc, RESET_ERRORS) and self.was_reset(peer)
        if expected:
            self.handler_expected += 1
        else:
            self.handler_unexpected += 1
        if len(self.handler_calls) < _KEEP_ERRORS:
            self.handler_calls.append({
                't': round(time.monotonic() - self.t0, 3),
                'message': str(context.get('message')),
                'exception': repr(exc),
                'peer': repr(peer),
                'expected': expected,
                'keys': sorted(context),
            })
        if not expected:
            self.error('loop', f"exception handler: {context.get('message')!r} {exc!r} "
                               f'(peer {peer!r})')


def _peer_of(context):
    for key in ('transport', 'protocol', 'conn'):
        obj = context.get(key)
        if obj is None:
            continue
        get = getattr(obj, 'get_extra_info', None)
        if get is not None:
            try:
                return get('peername')
            except Exception:       # a half-closed object: no peer to tell
                pass
        addr = getattr(obj, 'remote_addr', None)
        if addr is not None:
            return addr
        tr = getattr(obj, 'transport', None) or getattr(obj, '_transport', None)
        if tr is not None:
            try:
                return tr.get_extra_info('peername')
            except Exception:
                pass
    return None


async def close_writer(writer):
    """Close a StreamWriter and wait, bounded; what the close raises is the caller's."""
    writer.close()
    await asyncio.wait_for(writer.wait_closed(), STEP_TIMEOUT)


# -- process state (Linux /proc; tolerant elsewhere) ---------------------------
_PAGE = os.sysconf('SC_PAGE_SIZE') if hasattr(os, 'sysconf') else 4096


def rss_bytes():
    try:
        with open('/proc/self/statm') as f:
            return int(f.read().split()[1]) * _PAGE
    except OSError:
        import resource
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def open_fds():
    """{fd: target} of this process (the listing's own fd left out)."""
    out = {}
    try:
        names = os.listdir('/proc/self/fd')
    except OSError:
        return out
    for name in names:
        try:
            out[int(name)] = os.readlink(f'/proc/self/fd/{name}')
        except OSError:
            pass        # the listing's own fd, closed by now
    return out


def child_processes():
    """[(pid, state)] of this process's children, zombies included ('Z')."""
    me = os.getpid()
    out = []
    try:
        names = os.listdir('/proc')
    except OSError:
        return out
    for name in names:
        if not name.isdigit():
            continue
        try:
            with open(f'/proc/{name}/stat') as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rfind(')') + 2:].split()
        if len(fields) > 1 and int(fields[1]) == me:
            out.append((int(name), fields[0]))
    return out


def slope_per_min(points):
    """Least-squares slope of [(t_seconds, value)] in value per minute (None if < 3)."""
    if len(points) < 3:
        return None
    n = len(points)
    mt = sum(t for t, _ in points) / n
    mv = sum(v for _, v in points) / n
    sxx = sum((t - mt) ** 2 for t, _ in points)
    if sxx == 0:
        return None
    sxy = sum((t - mt) * (v - mv) for t, v in points)
    return sxy / sxx * 60.0
