"""A Redis-protocol key-value server on evioloop's Events API.

    python examples/redis_server.py --port 6380
    redis-cli -p 6380 SET k v && redis-cli -p 6380 GET k
    redis-benchmark -p 6380 -t ping,set,get,incr -n 200000 -P 16 -q

Speaks RESP2: arrays of bulk strings (what clients send) and inline commands
(`PING\\r\\n`, what telnet sends), pipelined. Commands: PING, ECHO, SET (EX, PX,
EXAT, PXAT, NX, XX, KEEPTTL, GET), GET, DEL, EXISTS, INCR, DECR, INCRBY,
DECRBY, DBSIZE, FLUSHDB, FLUSHALL, SELECT 0, QUIT, and enough of COMMAND and
CONFIG GET for redis-cli and redis-benchmark. Replies and error messages are
worded as Redis 7 words them; a protocol error is answered and the connection
closed, as Redis does.

The parser (`parse_command`, `parse_commands`) reads RESP the way Redis's
processInputBuffer does, limits, error messages and quirks included (the two
bytes after a bulk string and the byte after a header's \\r are skipped
unchecked; a NUL byte ends a header search, as C's strchr does). It and the
command executor (`Store`) are plain Python with no I/O, so that they can be
tested and fuzzed on their own. `RedisServer.data` answers a whole pipeline in
one pass over its CRLF-split tokens and runs PING, GET, SET and INCR in place;
it gives parse_command only what that pass cannot take, so that its answers
stay parse_command's and Store's (tests/test_examples_fast.py checks this).
"""
import argparse
import fnmatch
import re
import sys
import time
from itertools import islice

import evioloop

INLINE_MAX = 64 * 1024           # PROTO_INLINE_MAX_SIZE
BULK_MAX = 512 * 1024 * 1024     # proto-max-bulk-len
INT_MAX = 2 ** 31 - 1
LLONG_MIN, LLONG_MAX = -2 ** 63, 2 ** 63 - 1


class ProtocolError(Exception):
    """Bytes that are not RESP: answer `reply()` and close the connection."""

    def reply(self):
        return error(b'Protocol error: ' + self.args[0])


def string2ll(s):
    """Redis's strict integer parse (util.c): the int, or None."""
    n = len(s)
    if n == 0 or n >= 21:
        return None
    if s == b'0':
        return 0
    digits = s[1:] if s[0] == 0x2d else s       # '-'
    if not digits or not 0x31 <= digits[0] <= 0x39 or not digits.isdigit():
        return None
    v = -int(digits) if s[0] == 0x2d else int(digits)
    return v if LLONG_MIN <= v <= LLONG_MAX else None


def _strchr(buf, ch, pos):
    """C's strchr on Redis's query buffer: the search stops at a NUL byte."""
    i = buf.find(ch, pos)
    z = buf.find(b'\0', pos, i if i >= 0 else len(buf))
    return -1 if z >= 0 else i


_SPACE = b' \t\n\v\f\r'           # isspace()
_QUOTE_OR_ODD_SPACE = re.compile(b'["\'\v\f\0]')
_ESCAPES = {0x6e: 0x0a, 0x72: 0x0d, 0x74: 0x09, 0x62: 0x08, 0x61: 0x07}


def split_args(line):
    """Redis's sdssplitargs: an inline command's arguments, or None for
    unbalanced quotes. "..." knows \\n \\r \\t \\b \\a \\xHH and \\<c>; '...' knows \\'."""
    if not _QUOTE_OR_ODD_SPACE.search(line):
        return line.split()                     # the same split, when nothing is special
    line = line.split(b'\0', 1)[0]              # a C string ends at NUL
    n = len(line)
    args = []
    i = 0
    while True:
        while i < n and line[i] in _SPACE:
            i += 1
        if i >= n:
            return args
        cur = bytearray()
        quote = 0                                   # 0x22 in "...", 0x27 in '...'
        while True:
            c = line[i] if i < n else 0
            nxt = line[i + 1] if i + 1 < n else 0
            if quote == 0x22 and c == 0x5c and nxt == 0x78 and _ishex(line[i + 2:i + 4]):
                cur.append(int(line[i + 2:i + 4], 16))
                i += 3
            elif quote == 0x22 and c == 0x5c and nxt:
                cur.append(_ESCAPES.get(nxt, nxt))
                i += 1
            elif quote == 0x27 and c == 0x5c and nxt == 0x27:
                cur.append(0x27)
                i += 1
            elif quote and c == quote:              # the closing quote
                if nxt and nxt not in _SPACE:
                    return None
                i += 1
                break
            elif quote and not c:                   # unbalanced
                return None
            elif quote:
                cur.append(c)
            elif c in b' \n\r\t' or not c:
                break
            elif c in (0x22, 0x27):
                quote = c
            else:
                cur.append(c)
            i += 1
        args.append(bytes(cur))


def _ishex(two):
    return len(two) == 2 and all(c in b'0123456789abcdefABCDEF' for c in two)


def parse_command(buf, pos=0):
    """Parse one command of `buf` (bytes) at `pos`, as Redis's processInputBuffer does.

    Returns `(args, end)`: `args` a list of bytes (empty for an empty line or
    `*0`, which Redis skips), or `(None, pos)` when the command is not complete
    yet. Raises ProtocolError for what Redis answers with a protocol error.
    """
    if type(buf) is not bytes:
        buf = bytes(buf)
    n = len(buf)
    if pos >= n:
        return None, pos
    find = buf.find
    if buf[pos] != 0x2a:                        # not '*': an inline command
        nl = _strchr(buf, b'\n', pos)
        if nl < 0:
            if n - pos > INLINE_MAX:
                raise ProtocolError(b'too big inline request')
            return None, pos
        end = nl + 1
        if nl > pos and buf[nl - 1] == 0x0d:
            nl -= 1
        args = split_args(buf[pos:nl])
        if args is None:
            raise ProtocolError(b'unbalanced quotes in request')
        return args, end
    cr = _strchr(buf, b'\r', pos)
    if cr < 0:
        if n - pos > INLINE_MAX:
            raise ProtocolError(b'too big mbulk count string')
        return None, pos
    if cr + 2 > n:                              # the \n is taken on trust, as Redis does
        return None, pos
    count = string2ll(buf[pos + 1:cr])
    if count is None or count > INT_MAX:
        raise ProtocolError(b'invalid multibulk length')
    p = cr + 2
    args = []
    while len(args) < count:
        cr = find(b'\r', p)
        if cr < 0 or find(b'\0', p, cr) >= 0:   # (strchr: not found before a NUL)
            if n - p > INLINE_MAX:
                raise ProtocolError(b'too big bulk count string')
            return None, pos
        if cr + 2 > n:
            return None, pos
        if buf[p] != 0x24:                      # '$'
            raise ProtocolError(b"expected '$', got '%c'" % buf[p])
        digits = buf[p + 1:cr]
        if digits.isdigit() and len(digits) < 9 and (digits[0] != 0x30 or cr == p + 2):
            size = int(digits)                  # the common case, string2ll's answer
        else:
            size = string2ll(digits)
            if size is None or size < 0 or size > BULK_MAX:
                raise ProtocolError(b'invalid bulk length')
        p = cr + 2
        if n - p < size + 2:
            return None, pos
        args.append(buf[p:p + size])
        p += size + 2                           # the \r\n is not checked, as in Redis
    return args, p


def parse_commands(buf):
    """All the complete commands at the start of `buf`: `(commands, consumed)`.

    Empty commands are left out. Stops before a protocol error if commands
    come before it (they are to be answered first: the next call raises);
    raises ProtocolError if the error is first. `buf[consumed:]` is the tail.
    """
    commands = []
    pos = 0
    while True:
        try:
            args, pos = parse_command(buf, pos)
        except ProtocolError:
            if commands:
                return commands, pos
            raise
        if args is None:
            return commands, pos
        if args:
            commands.append(args)


# ------------------------------------------------------------------- replies

OK = b'+OK\r\n'
PONG = b'+PONG\r\n'
NIL = b'$-1\r\n'
_COUNTS = {b'*%d' % k: k for k in range(1, 1025)}      # a multibulk header: its count
_HEADERS = [b'$%d' % k for k in range(4096)]           # a bulk of k bytes: its header
_BULK_HEADS = [b'$%d\r\n' % k for k in range(4096)]   # ... and how a reply starts it
_SPLIT = 4096           # tokens per split of the buffer (a big bulk is not shredded)


def error(msg):
    """An error reply; CR and LF become spaces, as in addReplyErrorFormat."""
    msg = msg.strip(b'\r\n').replace(b'\r', b' ').replace(b'\n', b' ')
    return (msg if msg.startswith(b'-') else b'-ERR ' + msg) + b'\r\n'


def bulk(value):
    return NIL if value is None else b'$%d\r\n%s\r\n' % (len(value), value)


def integer(n):
    return b':%d\r\n' % n


def array(items):
    return b'*%d\r\n' % len(items) + b''.join(bulk(v) for v in items)


NOT_INTEGER = error(b'value is not an integer or out of range')
SYNTAX = error(b'syntax error')
OVERFLOW = error(b'increment or decrement would overflow')
CONFIG = {b'save': b'', b'appendonly': b'no', b'databases': b'1'}


class Store:
    """One Redis database of strings, with expiry; `execute(args)` -> reply bytes.

    `data` maps each key to its value: bytes, or an int where INCR and its kin
    left one (as Redis keeps an int); `get()` always gives bytes.
    """

    def __init__(self, clock=time.monotonic, wallclock=time.time):
        self.data = {}
        self.expires = {}             # key -> deadline on `clock`
        self.clock = clock
        self.wallclock = wallclock
        # execute()'s table, by the name as sent in either case: (method, least, most args)
        self._exact = {}
        for name, (fn, arity) in COMMANDS.items():
            self._exact[name] = self._exact[name.upper()] = (
                fn.__get__(self), abs(arity), arity if arity > 0 else INT_MAX)

    def get(self, key):
        """The value (bytes) or None; a key whose time has come is deleted."""
        if self.expires and key in self.expires and self.expires[key] <= self.clock():
            del self.expires[key]
            del self.data[key]
        v = self.data.get(key)
        return b'%d' % v if type(v) is int else v

    def delete(self, key):
        found = self.get(key) is not None
        if found:
            del self.data[key]
            self.expires.pop(key, None)
        return found

    def execute(self, args):
        entry = self._exact.get(args[0])
        if entry is not None and entry[1] <= len(args) <= entry[2]:
            return entry[0](args)
        name = args[0].lower()                  # another spelling, an error
        entry = COMMANDS.get(name)
        if entry is None:
            return unknown_command(args)
        fn, arity = entry
        if (arity > 0 and len(args) != arity) or len(args) < -arity:
            return error(b"wrong number of arguments for '%s' command" % name)
        return fn(self, args)

    def ping(self, args):
        if len(args) > 2:
            return error(b"wrong number of arguments for 'ping' command")
        return PONG if len(args) == 1 else bulk(args[1])

    def echo(self, args):
        return bulk(args[1])

    def get_(self, args):
        return bulk(self.get(args[1]))

    def set_(self, args):
        # option rules and the order of checks as in Redis's
        # parseExtendedStringArgumentsOrReply and getExpireMillisecondsOrReply
        key, value = args[1], args[2]
        if len(args) == 3:                      # no options: the common case
            self.data[key] = value
            if self.expires:
                self.expires.pop(key, None)
            return OK
        cond = unit = expire = None
        keepttl = want_old = False
        i = 3
        while i < len(args):
            opt = args[i].upper()
            if opt in (b'NX', b'XX') and cond in (None, opt):
                cond = opt
            elif opt == b'GET':
                want_old = True
            elif opt == b'KEEPTTL' and unit is None:
                keepttl = True
            elif (opt in (b'EX', b'PX', b'EXAT', b'PXAT') and not keepttl
                  and unit in (None, opt) and i + 1 < len(args)):
                unit = opt
                i += 1
                expire = args[i]
            else:
                return SYNTAX
            i += 1
        deadline = None
        if unit is not None:
            t = string2ll(expire)
            if t is None:
                return NOT_INTEGER
            if t <= 0 or (unit in (b'EX', b'EXAT') and t > LLONG_MAX // 1000):
                return error(b"invalid expire time in 'set' command")
            ms = t * 1000 if unit in (b'EX', b'EXAT') else t       # epoch ms from here on
            now = self.wallclock()
            if unit in (b'EX', b'PX'):
                ms += int(now * 1000)
            if ms > LLONG_MAX:          # where Redis's int64 would wrap
                return error(b"invalid expire time in 'set' command")
            deadline = self.clock() + (ms / 1000 - now)
        old = self.get(key)
        if (cond == b'NX' and old is not None) or (cond == b'XX' and old is None):
            return bulk(old) if want_old else NIL
        self.data[key] = value
        if deadline is not None:
            self.expires[key] = deadline
        elif not keepttl:
            self.expires.pop(key, None)
        return bulk(old) if want_old else OK

    def del_(self, args):
        return integer(sum(self.delete(k) for k in args[1:]))

    def exists(self, args):
        return integer(sum(self.get(k) is not None for k in args[1:]))

    def incrby(self, args):
        name = args[0].lower()
        if name in (b'incr', b'decr'):
            by = 1
        else:
            by = string2ll(args[2])
            if by is None:
                return NOT_INTEGER
        if name.startswith(b'decr'):
            if by == LLONG_MIN:
                return error(b'decrement would overflow')
            by = -by
        old = self.get(args[1])
        n = 0 if old is None else string2ll(old)
        if n is None:
            return NOT_INTEGER
        if not LLONG_MIN <= n + by <= LLONG_MAX:
            return OVERFLOW
        self.data[args[1]] = n + by
        return integer(n + by)

    def dbsize(self, args):
        return integer(sum(self.get(k) is not None for k in list(self.data)))

    def flush(self, args):
        if len(args) > 2 or (len(args) == 2 and args[1].upper() not in (b'ASYNC', b'SYNC')):
            return SYNTAX
        self.data.clear()
        self.expires.clear()
        return OK

    def select(self, args):
        db = string2ll(args[1])
        if db is None:
            return NOT_INTEGER
        return OK if db == 0 else error(b'DB index is out of range')

    def quit(self, args):
        return OK                     # the server closes the connection after it

    def command(self, args):
        sub = args[1].lower() if len(args) > 1 else None
        if sub is None or sub == b'docs':
            return b'*0\r\n'          # no command docs or table: clients do without
        if sub == b'count':
            return integer(len(COMMANDS))
        if sub == b'list':
            return array(sorted(COMMANDS))
        if sub == b'info':
            return b'*%d\r\n' % (len(args) - 2) + b'*-1\r\n' * (len(args) - 2)
        return unknown_subcommand(args)

    def config(self, args):
        if args[1].lower() != b'get':
            return unknown_subcommand(args)
        if len(args) < 3:
            return error(b"wrong number of arguments for 'config|get' command")
        found = {}
        for pattern in args[2:]:
            pattern = pattern.lower().decode('latin-1')
            for k, v in CONFIG.items():
                if fnmatch.fnmatchcase(k.decode(), pattern):
                    found[k] = v
        return b'*%d\r\n' % (2 * len(found)) + b''.join(
            bulk(k) + bulk(v) for k, v in found.items())


COMMANDS = {                    # name: (method, arity as in Redis: -n means at least n)
    b'ping': (Store.ping, -1), b'echo': (Store.echo, 2), b'get': (Store.get_, 2),
    b'set': (Store.set_, -3), b'del': (Store.del_, -2), b'exists': (Store.exists, -2),
    b'incr': (Store.incrby, 2), b'decr': (Store.incrby, 2), b'incrby': (Store.incrby, 3),
    b'decrby': (Store.incrby, 3), b'dbsize': (Store.dbsize, 1), b'flushdb': (Store.flush, -1),
    b'flushall': (Store.flush, -1), b'select': (Store.select, 2), b'quit': (Store.quit, -1),
    b'command': (Store.command, -1), b'config': (Store.config, -2),
}


def _cstr(s, limit=128):
    """What C's "%.128s" prints of s: up to a NUL, at most `limit` bytes."""
    return s.split(b'\0', 1)[0][:limit]


def unknown_command(args):
    quoted = b''
    for a in args[1:]:
        if len(quoted) >= 128:
            break
        quoted += b"'%s' " % _cstr(a, 128 - len(quoted))
    return error(b"unknown command '%s', with args beginning with: %s" % (_cstr(args[0]), quoted))


def unknown_subcommand(args):
    return error(b"unknown subcommand '%s'. Try %s HELP." % (_cstr(args[1]), args[0].upper()))


class RedisServer(evioloop.Events):
    """Each connection keeps an InputStream (evio's way) in its context."""

    def __init__(self, store=None, *, quiet=True, **kw):
        super().__init__(**kw)
        self.store = Store() if store is None else store
        self.quiet = quiet

    def serving(self, server):
        if not self.quiet:
            print('redis: serving on', ' '.join(format_addr(a) for a in server.addrs),
                  flush=True)

    def opened(self, conn):
        conn.context = evioloop.InputStream()

    def data(self, conn, in_):
        """Answer the complete commands of the input, in one pass over its CRLF-split tokens.

        `*N` and N pairs `$len`, bulk of len bytes (or an inline line with no LF
        or NUL) is a command, PING/GET/SET/INCR run right here on store.data;
        anything else (a bulk holding CRLF, which splits shorter than its len, a
        partial command, an error) goes to parse_command at its offset, and the
        tokens are picked up where it ended: the commands are parse_command's.
        """
        if in_ is None:
            return None
        stream = conn.context
        buf = stream.begin(in_)
        if type(buf) is not bytes:
            buf = bytes(buf)
        if len(buf) > 65536:        # a big bulk still coming in: not split every time
            try:
                if parse_command(buf)[0] is None:
                    stream.end(buf)
                    return b''
            except ProtocolError:
                pass                # (answered below)
        store = self.store
        data, expires = store.data, store.expires
        heads, bulk_heads = _HEADERS, _BULK_HEADS
        out = []
        append = out.append
        toks = buf.split(b'\r\n', _SPLIT)
        tail = toks.pop()                       # not ended by a CRLF (yet)
        done = 0                                # toks[:done]: answered
        ki = kp = 0                             # toks[ki] starts at buf[kp]
        it = iter(toks)
        while True:
            two, four, six = zip(it, it), zip(it, it, it, it), zip(it, it, it, it, it, it)  # noqa: B905
            try:
                for t in it:
                    if t == b'*2':
                        h0, a0, h1, a1 = next(four)
                        if heads[len(a1)] != h1:
                            break
                        if (a0 == b'GET' or a0 == b'get') and h0 == b'$3':
                            v = store.get(a1) if expires else data.get(a1)
                            if v is None:
                                append(NIL)
                            else:
                                try:
                                    out += (bulk_heads[len(v)], v, b'\r\n')
                                except (TypeError, IndexError):     # an int, 4 KiB+
                                    append(bulk(store.get(a1)))
                        elif (a0 == b'INCR' or a0 == b'incr') and h0 == b'$4':
                            try:
                                v = data.get(a1, 0) + 1
                            except TypeError:                       # bytes: not an int yet
                                v = LLONG_MAX + 1
                            if v <= LLONG_MAX and not expires:
                                data[a1] = v
                                append(b':%d\r\n' % v)
                            else:
                                append(store.execute([a0, a1]))
                        elif heads[len(a0)] != h0:
                            break
                        else:
                            append(store.execute([a0, a1]))
                            if len(a0) == 4 and a0.lower() == b'quit':
                                return self._close(stream, out)
                        done += 5
                    elif t == b'*3':
                        h0, a0, h1, a1, h2, a2 = next(six)
                        if heads[len(a1)] != h1 or heads[len(a2)] != h2:
                            break
                        if (a0 == b'SET' or a0 == b'set') and h0 == b'$3':
                            data[a1] = a2
                            if expires:
                                expires.pop(a1, None)
                            append(OK)
                        elif heads[len(a0)] != h0:
                            break
                        else:
                            append(store.execute([a0, a1, a2]))
                            if len(a0) == 4 and a0.lower() == b'quit':
                                return self._close(stream, out)
                        done += 7
                    elif t == b'*1':
                        h0, a0 = next(two)
                        if (a0 == b'PING' or a0 == b'ping') and h0 == b'$4':
                            append(PONG)
                        elif heads[len(a0)] != h0:
                            break
                        else:
                            append(store.execute([a0]))
                            if len(a0) == 4 and a0.lower() == b'quit':
                                return self._close(stream, out)
                        done += 3
                    elif t == b'PING' or t == b'ping':                      # inline
                        append(PONG)
                        done += 1
                    elif (c := _COUNTS.get(t)) is not None:
                        got = list(islice(it, c + c))
                        args = got[1::2]
                        if (len(got) < c + c
                                or list(map(heads.__getitem__, map(len, args))) != got[::2]):
                            break
                        append(store.execute(args))
                        if len(args[0]) == 4 and args[0].lower() == b'quit':
                            return self._close(stream, out)
                        done += c + c + 1
                    elif not t:                                             # an empty line
                        done += 1
                    elif t[0] != 0x2a and 0x0a not in t and 0 not in t:     # inline
                        args = split_args(t) if _QUOTE_OR_ODD_SPACE.search(t) else t.split()
                        if args is None:
                            break
                        if args:
                            append(store.execute(args))
                            if len(args[0]) == 4 and args[0].lower() == b'quit':
                                return self._close(stream, out)
                        done += 1
                    else:
                        break
                else:
                    if len(toks) == _SPLIT and tail:    # the split stopped early: split the rest
                        kp = len(buf) - len(tail)
                        toks = tail.split(b'\r\n', _SPLIT)
                        tail = toks.pop()
                        done = ki = 0
                        it = iter(toks)
                        continue
                    if not tail:
                        if buf is not in_:              # (else the stream kept nothing)
                            stream.end(b'')
                        return b''.join(out)
                    done = len(toks)                    # the tail, to the exact parser
            except (StopIteration, IndexError):         # a partial command, a bulk of 4 KiB+
                pass
            # the exact parser at toks[done]'s offset (counted from the nearer end)
            if done - ki <= len(toks) - done:
                kp += sum(map(len, toks[ki:done])) + 2 * (done - ki)
            else:
                kp = len(buf) - len(tail) - sum(map(len, toks[done:])) - 2 * (len(toks) - done)
            ki = done
            try:
                args, end = parse_command(buf, kp)
            except ProtocolError as err:
                append(err.reply())
                return self._close(stream, out)
            if args is None:
                stream.end(buf[kp:])
                return b''.join(out)
            if args:
                append(store.execute(args))
                if len(args[0]) == 4 and args[0].lower() == b'quit':
                    return self._close(stream, out)
            while kp < end and ki < len(toks):
                kp += len(toks[ki]) + 2
                ki += 1
            if kp != end:           # it ended inside a token (a bare LF, the 2 bytes after a bulk)
                toks = buf[end:].split(b'\r\n', _SPLIT)
                tail = toks.pop()
                ki, kp = 0, end
            done = ki
            it = iter(toks)
            it.__setstate__(done)

    @staticmethod
    def _close(stream, out):
        stream.end(b'')
        return b''.join(out), evioloop.Action.CLOSE


def format_addr(addr):
    """host:port for a (host, port, ...) tuple; anything else as str()."""
    if isinstance(addr, tuple) and len(addr) >= 2:
        host = addr[0]
        return f'[{host}]:{addr[1]}' if ':' in host else f'{host}:{addr[1]}'
    return str(addr)


def main(argv=None):
    p = argparse.ArgumentParser(description='Redis-protocol server on evioloop')
    g = p.add_mutually_exclusive_group()
    g.add_argument('--addr', help='an evio address, e.g. tcp://:6380, tcp-net://127.0.0.1:6380 '
                   '(portable mode) or unix:///tmp/redis.sock (default tcp://127.0.0.1:6380)')
    g.add_argument('--port', type=int, default=6380, help='TCP port on 127.0.0.1 (default 6380)')
    args = p.parse_args(argv)
    try:
        evioloop.serve(RedisServer(quiet=False), args.addr or f'tcp://127.0.0.1:{args.port}')
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == '__main__':
    sys.exit(main())
