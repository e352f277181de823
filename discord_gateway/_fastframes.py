"""The data-frame fast path: whole server messages parsed straight out of a read.

wsproto parses every frame through several layers (a buffer, a header named
tuple, an ``Opcode`` enum lookup, generators, an incremental UTF-8 decoder
per text message): about 7 us per frame here, more than inflating and
decoding a small gateway message. Almost everything Discord sends is a
complete, unmasked, unfragmented text or binary frame; this module takes
those (and fragmented messages of the same kind) directly out of the read.

wsproto stays the authority for everything else: the upgrade, control
frames (ping, pong, close), the close handshake and every protocol error.
Its view of the stream cannot drift, because the two only hand over at
message boundaries, and wsproto always sees a stream that starts at one:

* the fast path starts on a read only where wsproto is at a message boundary
  with nothing buffered (``boundary()``): at the start of the read, or right
  after the bytes that finish the frame wsproto is streaming (a message
  longer than the previous read), which go to wsproto first;
* it takes whole messages only - every frame of the message complete in this
  read, of the plain shape (FIN or continuation, opcode text/binary/
  continuation, RSV bits clear, unmasked, minimal length encoding, length
  within the cap), text valid UTF-8 - and stops at the first message it does
  not take;
* the rest of the read goes to wsproto (a frame cut by the end of the read
  included: wsproto streams it to the codec as before), and so do later
  reads until wsproto is back at a boundary. Only a data frame's header cut
  by the end of the read is kept back and put in front of the next read:
  wsproto would neither deliver nor refuse anything of it yet.

Chunks and wsproto's bytes are queued in stream order by the connection, and
an error while handling them leaves the rest queued, as wsproto leaves its
unread buffer.

The chunks it yields are those wsproto would yield for the same bytes (one per
frame, text decoded per frame with one incremental decoder per message), so
the codec sees the same calls either way; ``tests/test_fastframes.py`` checks
that on and off give the same events, bytes and errors for any frames in any
split.
"""

from __future__ import annotations

from codecs import getincrementaldecoder
from typing import Any

from wsproto import WSConnection
from wsproto.connection import ConnectionState

__all__ = ("Chunk", "boundary", "cut_binary_frame", "frame", "incomplete_header", "message")

#: One frame's data as wsproto would deliver it: (text?, str or bytes, message finished?).
Chunk = tuple[bool, Any, bool]

_OPEN = ConnectionState.OPEN
_UTF8 = getincrementaldecoder("utf-8")
#: First bytes of plain data frames: FIN or not, RSV clear, continuation/text/binary.
_DATA_FIRST_BYTES = frozenset((0x00, 0x01, 0x02, 0x80, 0x81, 0x82))


def boundary(ws: WSConnection) -> int:
    """Where the fast path may start in the next read, as wsproto stands now.

    0: wsproto is at a message boundary with nothing buffered. ``n > 0``: it
    is inside the last frame of a message (a frame streamed to the codec as
    it arrives) and needs exactly ``n`` more bytes to finish it; after them
    it is at a boundary again. -1: anything else (upgrade, closing, a partial
    header or a control frame buffered, inside a fragmented message, events
    not yet read): the read goes to wsproto.

    Reads wsproto 1.x internals; if a release changes them, the fast path
    simply stays off (wsproto handles everything, as with ``fast_frames=False``).
    """
    conn = ws.connection
    if conn is None:
        return -1
    try:
        if conn._state is not _OPEN or conn._events:
            return -1
        proto: Any = conn._proto
        decoder = proto._frame_decoder
        if decoder.buffer.buffer or proto._parse_more.gi_frame is None:
            return -1  # bytes not parsed yet, or parsing ended (close frame, error)
        header = decoder.header
        if header is None:
            return 0 if proto._message_decoder.opcode is None else -1
        if header.fin and header.opcode < 8:  # a data frame ending its message
            return int(header.payload_len - decoder.payload_consumed)
        return -1
    except AttributeError:  # pragma: no cover - a wsproto release with other internals
        return -1


def incomplete_header(data: bytes, pos: int) -> bool:
    """Whether ``data[pos:]`` is only the start of a data frame's header.

    wsproto would neither deliver nor refuse anything from such bytes before
    the header is complete, so the caller may keep them and put them in front
    of the next read instead of leaving wsproto inside a frame.
    """
    size = len(data) - pos
    if size < 1 or data[pos] not in _DATA_FIRST_BYTES:
        return False
    if size < 2:
        return True
    length = data[pos + 1] & 0x7F
    return (length == 126 and size < 4) or (length == 127 and size < 10)


def cut_binary_frame(data: bytes, pos: int, max_size: int) -> tuple[int, int]:
    """(payload start, frame end) if ``data[pos:]`` is a plain unfragmented binary
    frame cut by the end of the read (its header whole), else (-1, -1).

    wsproto hands such a frame to the codec in pieces, one per read, as its
    bytes arrive; the caller can do exactly the same without it (binary data
    needs no decoding, so no piece can be refused on the way).
    """
    size = len(data)
    if size - pos < 2 or data[pos] != 0x82:
        return -1, -1
    length = data[pos + 1]
    if length < 126:
        start = pos + 2
    elif length == 126:
        start = pos + 4
        if start > size:
            return -1, -1
        length = (data[pos + 2] << 8) | data[pos + 3]
        if length < 126:
            return -1, -1
    elif length == 127:
        start = pos + 10
        if start > size:
            return -1, -1
        length = int.from_bytes(data[pos + 2 : start], "big")
        if length <= 0xFFFF:
            return -1, -1
    else:
        return -1, -1
    end = start + length
    if end <= size or length > max_size:
        return -1, -1
    return start, end


def frame(data: bytes, pos: int, size: int, max_size: int) -> tuple[int, int]:
    """(payload start, end) of the unmasked frame at ``pos``, or (-1, -1) when it is
    not complete in ``data``, masked, not minimally encoded or over ``max_size``."""
    if size - pos < 2:
        return -1, -1
    length = data[pos + 1]
    if length < 126:  # also: mask bit clear
        start = pos + 2
    elif length == 126:
        start = pos + 4
        if start > size:
            return -1, -1
        length = (data[pos + 2] << 8) | data[pos + 3]
        if length < 126:
            return -1, -1
    elif length == 127:
        start = pos + 10
        if start > size:
            return -1, -1
        length = int.from_bytes(data[pos + 2 : start], "big")
        if length <= 0xFFFF:
            return -1, -1
    else:
        return -1, -1  # masked: a server must not mask (wsproto says so)
    end = start + length
    if end > size or length > max_size:
        return -1, -1
    return start, end


def message(data: bytes, pos: int, max_size: int) -> tuple[int, Any, int]:
    """The plain message at ``pos``, taken whole or not at all: ``(kind, what, end)``.

    ``kind`` 1: one text frame, ``what`` its text; 2: one binary frame, ``what``
    its bytes; 0: a fragmented message, ``what`` its chunks (``Chunk``, one per
    frame, as wsproto yields them); -1: not taken (anything not plain, a frame
    or fragment missing, a control frame between fragments, invalid UTF-8):
    from ``pos`` on the bytes are wsproto's. ``end``: where the message ends.

    ``pos`` must be a message boundary of wsproto's (``boundary()``). ``max_size``
    caps one frame's payload (a longer frame goes to wsproto, which streams it
    to the codec and its cap).
    """
    size = len(data)
    if size - pos < 2:
        return -1, None, pos
    first = data[pos]
    if first == 0x81 or first == 0x82:  # FIN, RSV clear, text / binary: the common case
        length = data[pos + 1]
        if length < 126:
            start = pos + 2
        elif length == 126 and size - pos >= 4:  # most gateway messages: 126 to 65535 bytes
            start = pos + 4
            length = (data[pos + 2] << 8) | data[pos + 3]
            if length < 126:
                return -1, None, pos  # not minimally encoded: wsproto refuses it
        else:
            start, end = frame(data, pos, size, max_size)
            if start < 0:
                return -1, None, pos
            length = end - start
        end = start + length
        if end > size or length > max_size:
            return -1, None, pos
        if first == 0x82:
            return 2, data[start:end], end
        try:
            return 1, data[start:end].decode("utf-8"), end
        except UnicodeDecodeError:
            return -1, None, pos  # wsproto closes with 1007
    if first == 0x01 or first == 0x02:  # the first frame of a fragmented message
        return _fragmented(data, pos, size, max_size)
    return -1, None, pos  # control frame, RSV bit, reserved opcode, stray continuation


def _fragmented(data: bytes, pos: int, size: int, max_size: int) -> tuple[int, Any, int]:
    begin = pos
    text = data[pos] == 0x01
    decoder = _UTF8() if text else None
    chunks: list[Chunk] = []
    while True:
        start, end = frame(data, pos, size, max_size)
        if start < 0:
            return -1, None, begin
        finished = data[pos] == 0x80
        payload: Any = data[start:end]
        if decoder is not None:
            try:
                payload = decoder.decode(payload, finished)
            except UnicodeDecodeError:
                return -1, None, begin
        chunks.append((text, payload, finished))
        pos = end
        if finished:
            return 0, chunks, pos
        if size - pos < 1 or data[pos] not in (0x00, 0x80):  # continuation frames only
            return -1, None, begin
