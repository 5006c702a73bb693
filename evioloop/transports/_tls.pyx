# cython: language_level=3
"""Layer 3: TLS over the compiled stream transport.

`SSLProtocol` (`TLSProtocol` for loop.py) is CPython's own
`asyncio.sslproto.SSLProtocol` (3.11+), with its data path compiled and
rewritten to copy and raise less. Everything that is not on the data path
(the state machine, handshake and shutdown with their timeouts,
`_fatal_error`, `connection_lost`, waiters, flow-control water marks, extra
info) is the running Python's own code, version for version, so it behaves
exactly as the stock loop's. Certificates, SNI, sessions and hostname checks
are `ssl.SSLObject`'s (`SSLContext.wrap_bio` on two `ssl.MemoryBIO`s):
nothing here touches OpenSSL.

What the compiled data path does differently (none of it observable but
the last point):

* state: the attributes the data path reads (`_state`, the BIOs, the
  backlog, the flow-control flags and marks, ...) are C fields of a base
  class under the stock names (ProtocolFields), which the stock code reads
  and writes as it would its instance dict;

* read: the raw bytes the stream transport received land in the protocol's
  buffer (it is a BufferedProtocol) and go to the incoming BIO in one write;
  records are decrypted straight into the one bytes object handed to
  `data_received` (or into the app's BufferedProtocol buffer), and the loop
  stops when the BIOs say nothing is left instead of waiting for
  SSLWantReadError (an exception per wake-up on the stock path);
* write: the app transport's `write` goes straight to the compiled
  `_write_appdata` (encrypt, read the outgoing BIO once, hand the records to
  the stream transport, whose queue is flushed once per loop step);
* a BufferedProtocol app whose get_buffer() returns a bytearray gets its
  data: the stock protocol reads into `buf[offset:]`, a copy for a
  bytearray, and loses all but the first piece (CPython gh-156275).

Python 3.10's sslproto is the older `_SSLPipe` design: there `TLSProtocol`
is None and the loop keeps the stock protocol.
"""
import sys
import ssl

from cpython.bytes cimport PyBytes_FromStringAndSize, PyBytes_AS_STRING, _PyBytes_Resize
from cpython.memoryview cimport PyMemoryView_FromMemory
from cpython.buffer cimport PyBUF_WRITE
from cpython.object cimport PyObject
from cpython.ref cimport Py_INCREF, Py_XDECREF

from asyncio import constants as _constants
from asyncio import log as _log

cdef object logger = _log.logger
cdef int LOG_THRESHOLD_FOR_CONNLOST_WRITES = _constants.LOG_THRESHOLD_FOR_CONNLOST_WRITES
cdef object SSLObject = ssl.SSLObject
# room for one record's plaintext beyond what the BIOs account for (see
# read_copied)
cdef Py_ssize_t RECORD_MAX = 16 * 1024 + 256

if sys.version_info >= (3, 11):
    from asyncio import sslproto as _sslproto
    _SSLProtocol = _sslproto.SSLProtocol
    _SSLProtocolTransport = _sslproto._SSLProtocolTransport
    _State = _sslproto.SSLProtocolState
    SSLAgainErrors = _sslproto.SSLAgainErrors
    WRAPPED = _State.WRAPPED
    FLUSHING = _State.FLUSHING
    SHUTDOWN = _State.SHUTDOWN
    UNWRAPPED = _State.UNWRAPPED
    DO_HANDSHAKE = _State.DO_HANDSHAKE
else:
    _SSLProtocol = _SSLProtocolTransport = None
    SSLAgainErrors = ()
    WRAPPED = FLUSHING = SHUTDOWN = UNWRAPPED = DO_HANDSHAKE = None


cdef object c_sslobj(sslobj):
    # ssl.SSLObject's read/write/pending are one-line Python wrappers around
    # its `_sslobj` (the _ssl module's object); calling that directly saves
    # a Python frame per call. Only for the exact class: a context's
    # sslobject_class may override them.
    if type(sslobj) is SSLObject:
        return sslobj._sslobj
    return sslobj


cdef class ProtocolFields:
    """The state the data path reads, as C fields under the stock names.

    SSLProtocol derives from this class before the stock one, so its member
    descriptors come first in the MRO: the stock code's `self._state = ...`
    and the data path's `self._state` reach the same C field, and the data
    path reads it without an attribute lookup (a dictionary lookup after a
    type lookup for each name: the largest cost left on this path before).
    Only instance attributes that the stock __init__ sets are fields; the
    stock class attributes (max_size, the handshake and shutdown timeout
    handles) stay where they are. Every field holds any object, as the
    instance dict did.
    """
    cdef public object _state, _loop, _transport, _incoming, _outgoing
    cdef public object _write_backlog, _write_buffer_size, _conn_lost
    cdef public object _app_protocol, _app_protocol_is_buffer
    cdef public object _app_protocol_get_buffer, _app_protocol_buffer_updated
    cdef public object _app_reading_paused, _ssl_reading_paused
    cdef public object _app_writing_paused, _ssl_writing_paused
    cdef public object _incoming_high_water, _incoming_low_water
    cdef public object _outgoing_high_water, _outgoing_low_water
    cdef public object _ssl_buffer, _ssl_buffer_view
    # c_sslobj(self._sslobj), set once the stock __init__ made it
    cdef object sslobj


cdef object read_copied(ProtocolFields self):
    """Decrypt what is available into one bytes object; (data, eof)."""
    cdef Py_ssize_t cap, offset = 0, count
    cdef PyObject *raw
    cdef bint eof = False
    sslobj = self.sslobj
    incoming = self._incoming
    # The plaintext waiting is at most the ciphertext in the incoming BIO,
    # plus what OpenSSL decrypted and did not hand out yet (pending()), plus
    # the part of one record whose start it already took from the BIO.
    cap = incoming.pending + sslobj.pending() + RECORD_MAX
    data = PyBytes_FromStringAndSize(NULL, cap)
    chunks = None
    try:
        while True:
            if offset == cap:
                # more than the bound: keep this one, start another
                if chunks is None:
                    chunks = []
                chunks.append(data)
                cap = incoming.pending + sslobj.pending() + RECORD_MAX
                data = PyBytes_FromStringAndSize(NULL, cap)
                offset = 0
            view = PyMemoryView_FromMemory(PyBytes_AS_STRING(data) + offset, cap - offset,
                                           PyBUF_WRITE)
            try:
                count = sslobj.read(cap - offset, view)
            finally:
                view.release()
            if count <= 0:
                eof = True
                break
            offset += count
            if sslobj.pending() == 0 and incoming.pending == 0:
                break
    except SSLAgainErrors:
        pass
    if offset != cap:
        # shrink in place: `raw` takes over the only reference
        raw = <PyObject *>data
        Py_INCREF(data)
        data = None
        _PyBytes_Resize(&raw, offset)   # on failure: raw is NULL, freed
        data = <object>raw
        Py_XDECREF(raw)
    if chunks is not None:
        chunks.append(data)
        data = b''.join(chunks)
    return data, eof


class _SSLProtocolTransport(_SSLProtocolTransport or object):
    """The app-side transport: stock `_SSLProtocolTransport`, compiled write.

    The stock class names (here and for SSLProtocol): what reprs, logs and
    checks of the class name see is what they see on the stock loop.
    """

    def write(self, data):
        """Write some data bytes to the transport.

        This does not block; it buffers the data and arranges for it
        to be sent out asynchronously.
        """
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f"data: expecting a bytes-like instance, "
                            f"got {type(data).__name__}")
        if not data:
            return
        proto = self._ssl_protocol
        if isinstance(proto, ProtocolFields):    # SSLProtocol: a C type check
            write_one(<ProtocolFields>proto, data)
        else:
            proto._write_appdata((data,))


# -- the data path, as C functions of the (Python) protocol object

cdef int do_read(ProtocolFields self) except -1:
    # SSLProtocol._do_read
    state = self._state
    if state is not WRAPPED and state is not FLUSHING:
        return 0
    try:
        if not self._app_reading_paused:
            if self._app_protocol_is_buffer:
                read_buffered(self)
            else:
                read_copied_step(self)
            if self._write_backlog:
                do_write(self)
            else:
                process_outgoing(self)
        # _control_ssl_reading
        size = self._incoming.pending
        if size >= self._incoming_high_water and not self._ssl_reading_paused:
            self._ssl_reading_paused = True
            self._transport.pause_reading()
        elif size <= self._incoming_low_water and self._ssl_reading_paused:
            self._ssl_reading_paused = False
            self._transport.resume_reading()
    except Exception as ex:
        self._fatal_error(ex, 'Fatal error on SSL protocol')
    return 0


cdef int read_copied_step(ProtocolFields self) except -1:
    # SSLProtocol._do_read__copied
    data, eof = read_copied(self)
    if len(data):
        self._app_protocol.data_received(data)
    if eof:
        # close_notify
        self._call_eof_received()
        self._start_shutdown()
    return 0


cdef int write_appdata(ProtocolFields self, list_of_data) except -1:
    # SSLProtocol._write_appdata
    state = self._state
    if state is FLUSHING or state is SHUTDOWN or state is UNWRAPPED:
        if self._conn_lost >= LOG_THRESHOLD_FOR_CONNLOST_WRITES:
            logger.warning('SSL connection is closed')
        self._conn_lost += 1
        return 0
    backlog = self._write_backlog
    for data in list_of_data:
        backlog.append(data)
        self._write_buffer_size += len(data)
    try:
        if self._state is WRAPPED:     # read again, as stock: list_of_data may be any iterable
            do_write(self)
    except Exception as ex:
        self._fatal_error(ex, 'Fatal error on SSL protocol')
    return 0


cdef int write_one(ProtocolFields self, data) except -1:
    # SSLProtocol._write_appdata((data,)), without the backlog when it is empty
    cdef Py_ssize_t count, data_len
    if self._state is not WRAPPED or self._write_backlog:
        # closed, behind the handshake or behind earlier data: the stock steps
        return write_appdata(self, (data,))
    # Nothing queued: encrypt at once. Going through the backlog would leave
    # it and the buffer size as they are now, so skipping it is invisible.
    try:
        try:
            count = self.sslobj.write(data)
        except SSLAgainErrors:
            count = 0
        except BaseException:
            # as stock: the data stays in the backlog
            self._write_backlog.append(data)
            self._write_buffer_size += len(data)
            raise
        data_len = len(data)
        if count < data_len:
            self._write_backlog.append(data[count:])
            self._write_buffer_size += data_len - count
        process_outgoing(self)
    except Exception as ex:
        self._fatal_error(ex, 'Fatal error on SSL protocol')
    return 0


cdef int do_write(ProtocolFields self) except -1:
    # SSLProtocol._do_write
    cdef Py_ssize_t count, data_len
    backlog = self._write_backlog
    sslobj = self.sslobj
    try:
        while backlog:
            data = backlog[0]
            count = sslobj.write(data)
            data_len = len(data)
            if count < data_len:
                backlog[0] = data[count:]
                self._write_buffer_size -= count
            else:
                del backlog[0]
                self._write_buffer_size -= data_len
    except SSLAgainErrors:
        pass
    process_outgoing(self)
    return 0


cdef int process_outgoing(ProtocolFields self) except -1:
    # SSLProtocol._process_outgoing
    if not self._ssl_writing_paused:
        outgoing = self._outgoing
        if outgoing.pending:
            self._transport.write(outgoing.read())
    size = self._outgoing.pending + self._write_buffer_size
    if self._app_writing_paused:
        if size <= self._outgoing_low_water:
            self._control_app_writing()
    elif size >= self._outgoing_high_water:
        self._control_app_writing()
    return 0


cdef object get_buffer(ProtocolFields self, n):
    # SSLProtocol.get_buffer
    want = n
    if want <= 0 or want > self.max_size:
        want = self.max_size
    if len(self._ssl_buffer) < want:
        self._ssl_buffer = bytearray(want)
        self._ssl_buffer_view = memoryview(self._ssl_buffer)
    return self._ssl_buffer_view


cdef int buffer_updated(ProtocolFields self, Py_ssize_t nbytes) except -1:
    # SSLProtocol.buffer_updated
    self._incoming.write(self._ssl_buffer_view[:nbytes])
    state = self._state
    if state is WRAPPED:
        do_read(self)
    elif state is DO_HANDSHAKE:
        self._do_handshake()
    elif state is FLUSHING:
        self._do_flush()
    elif state is SHUTDOWN:
        self._do_shutdown()
    return 0


cdef int read_buffered(ProtocolFields self) except -1:
    # SSLProtocol._do_read__buffered
    cdef Py_ssize_t offset = 0, count = 1, wants
    sslobj = self.sslobj
    incoming = self._incoming
    buf = self._app_protocol_get_buffer(incoming.pending)
    wants = len(buf)
    try:
        # a memoryview, so that reading at an offset fills `buf` itself
        # (a bytearray's slice would be a copy)
        view = memoryview(buf)
        try:
            count = sslobj.read(wants, view)
            if count > 0:
                offset = count
                while offset < wants:
                    if sslobj.pending() == 0 and incoming.pending == 0:
                        break
                    count = sslobj.read(wants - offset, view[offset:])
                    if count > 0:
                        offset += count
                    else:
                        break
                else:
                    # the app's buffer is full: the rest on the next step
                    self._loop.call_soon(self._do_read)
        finally:
            # the app may resize its bytearray once it has its data
            view.release()
    except SSLAgainErrors:
        pass
    if offset > 0:
        self._app_protocol_buffer_updated(offset)
    if not count:
        # close_notify
        self._call_eof_received()
        self._start_shutdown()
    return 0


class SSLProtocol(ProtocolFields, _SSLProtocol or object):
    """CPython's SSLProtocol with a compiled data path (see the module's doc)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        (<ProtocolFields>self).sslobj = c_sslobj(self._sslobj)

    def _get_app_transport(self):
        if self._app_transport is None:
            if self._app_transport_created:
                raise RuntimeError('Creating _SSLProtocolTransport twice')
            self._app_transport = _SSLProtocolTransport(self._loop, self)
            self._app_transport_created = True
        return self._app_transport

    # -- the raw transport's side (BufferedProtocol)

    def get_buffer(self, n):
        return get_buffer(<ProtocolFields>self, n)

    def buffer_updated(self, nbytes):
        buffer_updated(<ProtocolFields>self, nbytes)

    # -- incoming flow

    def _do_read(self):
        do_read(<ProtocolFields>self)

    def _do_read__buffered(self):
        read_buffered(<ProtocolFields>self)

    def _do_read__copied(self):
        read_copied_step(<ProtocolFields>self)

    # -- outgoing flow

    def _write_appdata(self, list_of_data):
        write_appdata(<ProtocolFields>self, list_of_data)

    def _do_write(self):
        do_write(<ProtocolFields>self)

    def _process_outgoing(self):
        process_outgoing(<ProtocolFields>self)


# what loop.py uses; None on 3.10 (the stock protocol, see the module's doc)
TLSProtocol = SSLProtocol if _SSLProtocol is not None else None
