"""The Events API cells of the network benchmarks: echo and keep-alive HTTP.

An Events server (evioloop's evio-style callback API, docs/events.md) is compared, in
the same interleaved rounds, with the asyncio.Protocol server of the same workload on
every loop and with the C reference server; the client is loadgen.c, as in the other
cells.  Each Events cell runs its own C reference every round, so that the ratio to C
is paired (taken between runs seconds apart) like the ratio to uvloop.

    events-1k-c10 ... events-100k-c100   echo, 1 and 100 KiB x 10 and 100 connections
    events-http-c10, events-http-c100    examples/http_server.py vs the httptools Protocol

Rows, as "LOOP:KIND" for server.py (see server.py and events_servers.py):

    evioloop:events-echo        native: evioloop.serve(Events(data=lambda c, d: d), 'tcp://...')
    evioloop:events-echo-reuse  the same with Options(reuse_input_buffer=True) from opened()
    evioloop:events-echo-net    portable mode on evioloop ('tcp-net://'): the Protocol adapter
    uvloop:events-echo          portable mode on uvloop (serve_async inside uvloop's loop)
    LOOP:proto / LOOP:http      the asyncio.Protocol servers of the classic cells
    C-epoll                     cserver.c
"""
from benchlib import CREF, LOOP_LABEL, Cell, fmt, fmt_int, median, paired, paired_list, \
    size_label, summarize

ECHO_SIZES = (1024, 102400)
ECHO_CONNS = (10, 100)
HTTP_CONNS = (10, 100)

KIND_LABEL = {
    'events-echo': 'Events',
    'events-echo-reuse': 'Events reuse_buf',
    'events-echo-net': 'Events tcp-net',
    'events-http': 'Events example',
    'events-http-net': 'Events ex. tcp-net',
    'proto': 'Protocol',
    'http': 'Protocol',
}

# The numbers the project set itself for the Events echo, against the C server; they
# are printed next to the measured ratios, never checked.  (cell id: (CPU/req at most,
# req/s at least), as ratios to the C server; None: no target set.)
ECHO_TARGETS = {
    'events-1k-c10': (1.03, 0.97),
    'events-1k-c100': (None, 0.97),
    'events-100k-c10': (1.05, 0.97),
    'events-100k-c100': (1.05, 0.97),
}


class EventsCell(Cell):
    classic = False
    own_cref = True

    def __init__(self, mode, size, conns):
        super().__init__('events' if mode == 'echo' else 'events-http', size, conns)
        self._mode = mode
        self.base = 'uvloop:proto' if mode == 'echo' else 'uvloop:http'

    @property
    def id(self):
        if self._mode == 'http':
            return f'events-http-c{self.conns}'
        return f'events-{self.size // 1024}k-c{self.conns}'

    @property
    def mode(self):
        return self._mode

    def rows(self, servers, with_cref):
        rows = []
        if self._mode == 'echo':
            if 'evioloop' in servers:
                rows += ['evioloop:events-echo', 'evioloop:events-echo-reuse',
                         'evioloop:events-echo-net']
            if 'uvloop' in servers:
                rows.append('uvloop:events-echo')
            rows += [f'{s}:proto' for s in servers]
        else:
            if 'evioloop' in servers:
                rows.append('evioloop:events-http')
            if 'uvloop' in servers:
                rows.append('uvloop:events-http')
            rows += [f'{s}:http' for s in servers]
        return rows + ([CREF] if with_cref else [])


def cells():
    out = [EventsCell('echo', s, c) for s in ECHO_SIZES for c in ECHO_CONNS]
    return out + [EventsCell('http', None, c) for c in HTTP_CONNS]


def row_label(server):
    if server == CREF:
        return LOOP_LABEL[CREF]
    loop, _, kind = server.partition(':')
    label = f'{LOOP_LABEL.get(loop, loop)} {KIND_LABEL.get(kind, kind)}'
    if kind.startswith('events') and loop != 'evioloop':
        label += ' (portable)'
    return label


TITLE = {
    'echo': 'Events echo: Events(data=lambda c, d: d) vs asyncio.Protocol echo vs C',
    'http': 'Events HTTP: examples/http_server.py vs the httptools Protocol server vs C',
}

LEGEND = """\
The Events tables: the same columns as above; "vs uv" is against the asyncio.Protocol
server on uvloop of the same cell, "vs C" against the C reference server (paired, per
round, like "vs uv"; CPU/req: lower is better).  "portable" rows run the same Events
object through evioloop's asyncio.Protocol adapter; "tcp-net" forces that on evioloop.
"""


def print_tables(cells, results, out):
    w = out.write
    ev = [c for c in cells if isinstance(c, EventsCell)]
    if not ev:
        return
    w('\n' + LEGEND)
    for mode in ('echo', 'http'):
        kcells = [c for c in ev if c.mode == mode]
        if not kcells:
            continue
        w(f'\n== {TITLE[mode]} ==\n')
        w(f'{"size":>6} {"conns":>5}  {"server":<33}{"req/s":>9} {"spr%":>4} {"vs uv":>5}'
          f' {"vs C":>5} {"srv us/req":>10} {"spr%":>4} {"vs uv":>5} {"vs C":>5}'
          f' {"srv%":>4} {"cli%":>4} {"cli us/req":>10} {"sirq":>5} {"other":>5}\n')
        for cell in kcells:
            base = results.get((cell.id, cell.base), [])
            cref = results.get((cell.id, CREF), [])
            first = True
            for s in cell.rows(_loops_of(results, cell), True):
                runs = results.get((cell.id, s))
                if not runs:
                    continue
                head = (f'{size_label(cell.size) if cell.size else "-":>6} {cell.conns:>5}'
                        if first else ' ' * 12)
                first = False
                sm = summarize(runs)
                if sm is None:
                    err = next((r['error'] for r in runs if 'error' in r), '?')
                    w(f'{head}  {row_label(s):<33}FAILED: {" ".join(err.split())[:300]}\n')
                    continue
                nan = float('nan')
                r_rps = paired(runs, base, 'rps') if s != cell.base else nan
                r_us = paired(runs, base, 'srv_us') if s != cell.base else nan
                c_rps = paired(runs, cref, 'rps') if s != CREF else nan
                c_us = paired(runs, cref, 'srv_us') if s != CREF else nan
                nfail = len(runs) - sm['n']
                w(f'{head}  {row_label(s):<33}{fmt_int(sm["rps"]):>9}'
                  f' {fmt(sm["spread"], ".0f"):>4} {fmt(r_rps, ".2f"):>5} {fmt(c_rps, ".2f"):>5}'
                  f' {fmt(sm["srv_us"], ".2f"):>10} {fmt(sm["us_spread"], ".0f"):>4}'
                  f' {fmt(r_us, ".2f"):>5} {fmt(c_us, ".2f"):>5}'
                  f' {fmt(sm["srv_pct"], ".0f"):>4} {fmt(sm["cli_pct"], ".0f"):>4}'
                  f' {fmt(sm["cli_us"], ".2f"):>10} {fmt(sm["sirq_us"], ".2f"):>5}'
                  f' {fmt(sm["other"], ".2f"):>5}'
                  + (f'  ({nfail} of {len(runs)} runs failed)' if nfail else '') + '\n')
    print_targets(ev, results, out)


def _loops_of(results, cell):
    """The loops that have rows in this cell's results, in the usual order."""
    found = {s.partition(':')[0] for c, s in results if c == cell.id and ':' in s}
    order = ['evioloop', 'uvloop', 'asyncio', 'rloop']
    return [x for x in order if x in found] + sorted(found - set(order))


def print_targets(cells, results, out):
    w = out.write
    rows = [c for c in cells if c.id in ECHO_TARGETS and (c.id, 'evioloop:events-echo') in results]
    if not rows:
        return
    w('\n== Events echo (native, evioloop) / C reference server, per round ==\n'
      'The targets are the project\'s; they are shown next to the numbers, not checked.\n'
      'Per-round ratios in [ ]; with the spreads of this machine, one run of 3 rounds does\n'
      'not settle a difference of a few percent.\n')
    w(f'{"cell":<18} {"CPU/req":>7} {"target":>7}  {"per round":<30} {"req/s":>6} {"target":>7}'
      f'  per round\n')
    for cell in rows:
        e = results[(cell.id, 'evioloop:events-echo')]
        c = results.get((cell.id, CREF), [])
        us, rps = paired_list(e, c, 'srv_us'), paired_list(e, c, 'rps')
        t_us, t_rps = ECHO_TARGETS[cell.id]
        t_us = f'<= {t_us:g}' if t_us else '-'
        t_rps = f'>= {t_rps:g}' if t_rps else '-'
        w(f'{cell.id:<18} {fmt(median(us), ".3f"):>7} {t_us:>7}'
          f'  {"[" + " ".join(f"{x:.2f}" for x in us) + "]":<30}'
          f' {fmt(median(rps), ".3f"):>6} {t_rps:>7}'
          f'  [{" ".join(f"{x:.2f}" for x in rps)}]\n')
    reuse = [c for c in rows if (c.id, 'evioloop:events-echo-reuse') in results]
    if reuse:
        w('The same for the reuse_input_buffer=True row:\n')
        for cell in reuse:
            e = results[(cell.id, 'evioloop:events-echo-reuse')]
            c = results.get((cell.id, CREF), [])
            w(f'{cell.id:<18} {fmt(paired(e, c, "srv_us"), ".3f"):>7} CPU/req,'
              f' {fmt(paired(e, c, "rps"), ".3f")} req/s, of the C server\n')
