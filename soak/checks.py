"""The soak's verdict: the PASS criteria, the RSS trend, and the printed summary.

PASS needs all of:
* zero corrupted bytes anywhere (streams, HTTP, UDP, subprocess pipes) and zero
  lost bytes on the stream workloads (TCP, Unix, TLS, Events, churn, HTTP);
* zero errors: every workload check that failed, every server-side exception
  that is not a reset from a peer the soak reset, every unexpected call of the
  loop's exception handler;
* the open fds at the end exactly those at the start (once the load is
  stopped and everything closed), and again after the loop is closed;
* no child process left (zombie or not);
* the RSS slope after warm-up at most `rss_threshold_kib_min()`;
* on evioloop, its tables (`loop._evio_stats()`) empty once everything is
  closed: no callback queued, no timer, no fd watched.
UDP datagrams that never came back are reported, not failed.
"""
from common import slope_per_min

# A leak the soak must catch is one that grows with the work done (over 1,000
# stream messages and ~100 connections a second). After warm-up RSS moves in a
# band of 10-15 MiB: messages of up to 1 MiB come and go, and glibc keeps freed
# memory or gives it back as it likes. Measured over 10-minute runs (7.5-minute
# window): 634 and 1302 KiB/min on evioloop, 618 on the stock loop; with
# malloc_trim(0) before each sample (--trim: live memory only) evioloop's
# minimum RSS stayed flat and the slope was 457 KiB/min. So 2 MiB/min is above
# what the allocator alone does, and still fails a leak of ~20 bytes per stream
# message or ~350 bytes per connection. A --quick run fits a 30 s window that
# is still in warm-up (RSS climbs for ~3 minutes): measured slopes -8 .. +14
# MiB/min on evioloop, up to 30 MiB/min on the stock loop. Its bound, 64
# MiB/min, passes that and still fails a leak of ~800 bytes per stream message
# (anything that keeps a buffer per message); only long runs catch slow leaks.
LONG_RUN = 300.0


def rss_threshold_kib_min(duration):
    return 2048.0 if duration >= LONG_RUN else 65536.0


def warmup_seconds(duration, quick):
    if quick:
        return duration / 2
    return max(0.25 * duration, 20.0)


def rss_trend(samples, duration, quick, key='rss'):
    """(slope KiB/min or None, number of samples fitted, warm-up seconds).

    key='blocks': the slope of sys.getallocatedblocks() (blocks/min) instead.
    """
    warm = warmup_seconds(duration, quick)
    scale = 1024.0 if key == 'rss' else 1.0
    pts = [(s['t'], s[key] / scale) for s in samples if s['t'] >= warm]
    return slope_per_min(pts), len(pts), warm


STREAM = ('tcp', 'unix', 'tls', 'events', 'churn', 'http')


def evaluate(result):
    """The reasons the run fails ([] = PASS)."""
    why = []
    stats = result['stats']
    for name, st in sorted(stats.items()):
        if st['corrupt']:
            why.append(f'{name}: {st["corrupt"]} corrupted messages/datagrams')
        if name in STREAM and st['lost']:
            why.append(f'{name}: {st["lost"]} bytes lost')
    if result['error_count']:
        why.append(f'{result["error_count"]} errors (first: {result["errors"][0][1]}: '
                   f'{result["errors"][0][2]})')
    if result['handler_unexpected']:
        why.append(f'{result["handler_unexpected"]} unexpected exception-handler calls')
    for label, leaked, closed in (('end of load', *result['fd_diff']),
                                  ('after loop.close()', *result['fd_diff_closed'])):
        if leaked or closed:
            why.append(f'fds at {label} differ from the start: leaked {leaked}, '
                       f'closed {closed}')
    if result['children']:
        why.append(f'child processes left: {result["children"]}')
    slope, npts, _ = result['rss_trend']
    limit = result['rss_limit_kib_min']
    if slope is None:
        why.append(f'RSS slope: only {npts} samples after warm-up, cannot fit a line')
    elif slope > limit:
        why.append(f'RSS grows {slope:.0f} KiB/min after warm-up (limit {limit:.0f})')
    for name, st in stats.items():
        if st['ops'] == 0:
            why.append(f'{name}: no operation completed')
    # evioloop's tables once everything is closed: nothing queued, no timer,
    # no fd still watched (the stock loop has no such hook)
    end = result.get('core_end')
    if end and any(end.get(k) for k in ('ready', 'timers', 'watched_fds')):
        why.append(f'the loop\'s tables are not empty after shutdown: {end}')
    return why


def _mb(n):
    return n / 1e6


def print_summary(result, why, out):
    p = lambda *a: print(*a, file=out)  # noqa: E731
    dur = result['load_seconds']
    p('')
    p(f'== soak summary: loop={result["loop"]} ({result["loop_type"]}) '
      f'python={result["python"]} seed={result["seed"]} load={dur:.1f}s')
    p(f'{"workload":<11}{"ops":>10}{"ops/s":>10}{"MB":>10}{"MB/s":>8}{"conns":>8}'
      f'{"err":>6}{"corrupt":>8}{"lost":>8}  extra')
    tot_b = 0
    for name, st in sorted(result['stats'].items()):
        tot_b += st['bytes']
        extra = {k: v for k, v in st.items()
                 if k not in ('ops', 'bytes', 'conns', 'errors', 'corrupt', 'lost')}
        p(f'{name:<11}{st["ops"]:>10}{st["ops"] / dur:>10.0f}{_mb(st["bytes"]):>10.1f}'
          f'{_mb(st["bytes"]) / dur:>8.2f}{st["conns"]:>8}{st["errors"]:>6}'
          f'{st["corrupt"]:>8}{st["lost"]:>8}  {extra if extra else ""}')
    p(f'bytes checked: {tot_b} ({_mb(tot_b):.1f} MB, {_mb(tot_b) / dur:.1f} MB/s)')
    cpu = result['cpu']
    p(f'CPU: self user {cpu["user"]:.1f}s sys {cpu["sys"]:.1f}s '
      f'({(cpu["user"] + cpu["sys"]) / dur * 100:.0f}% of one core); '
      f'children user {cpu["child_user"]:.1f}s sys {cpu["child_sys"]:.1f}s')
    slope, npts, warm = result['rss_trend']
    rs = result['rss']
    p(f'RSS: start {rs["start"] / 2**20:.1f} MiB, after warm-up ({warm:.0f}s) '
      f'{rs["warm"] / 2**20:.1f} MiB, end of load {rs["end"] / 2**20:.1f} MiB, '
      f'max {rs["max"] / 2**20:.1f} MiB; slope '
      f'{"n/a" if slope is None else f"{slope:.0f}"} KiB/min over {npts} samples '
      f'(limit {result["rss_limit_kib_min"]:.0f})')
    bslope = result['blocks_trend'][0]
    b0, b1 = result['samples'][0]['blocks'], result['samples'][-1]['blocks']
    p(f'Python allocated blocks (sys.getallocatedblocks): first sample {b0}, last {b1}, '
      f'slope after warm-up {"n/a" if bslope is None else f"{bslope:.0f}"} blocks/min '
      '(reported, not a criterion)')
    p(f'fds: start {result["fds"]["start"]}, max {result["fds"]["max"]}, end '
      f'{result["fds"]["end"]}, after loop.close() {result["fds"]["closed"]} '
      f'(before the loop: {result["fds"]["before_loop"]})')
    p(f'exception handler: {result["handler_expected"]} expected calls, '
      f'{result["handler_unexpected"]} unexpected; server-side expected resets: '
      f'{result["expected_resets"]}')
    core0 = result['samples'][0].get('core')
    if core0 is not None:
        p(f'loop tables (_evio_stats): first sample {core0}, after shutdown '
          f'{result["core_end"]}')
    for note in result['notes']:
        p(f'note: {note}')
    for t, w, msg in result['errors'][:20]:
        p(f'error at {t:.1f}s [{w}] {msg}')
    if result['error_count'] > 20:
        p(f'... {result["error_count"] - 20} more errors')
    if why:
        p('FAIL:')
        for w in why:
            p(f'  - {w}')
    else:
        p('PASS')
