"""ETF (Erlang External Term Format, protocol J) in pure Python, validated.

Decoding (:func:`loads`) normalises terms so that dispatch data has the same
shape as with JSON:

* atoms become ``str``, except ``nil`` -> None, ``true``/``false`` -> bool
  (protocol 39: received keys are atoms; all four atom encodings are accepted);
* binaries become ``str`` (UTF-8, undecodable bytes kept with
  ``surrogateescape``); tuples become lists; NIL_EXT is the empty list and
  STRING_EXT (an Erlang charlist) a list of ints;
* SMALL_BIG_EXT/LARGE_BIG_EXT become ``int``, so snowflakes arrive as ints
  (protocol 37).

It refuses, with :class:`RemoteProtocolError`, what erlpack 1.0 silently
accepted or crashed on: data truncated inside its last string (erlpack
returned ``'tru'`` for a cut ``true``), trailing bytes after the term,
improper lists, unhashable map keys, compressed terms (Discord does not send
them: it compresses the transport instead) and nesting deep enough to
exhaust the stack.

It also refuses messages with more terms than :func:`max_terms` allows
(:class:`PayloadTooLarge`): one byte of ETF (NIL_EXT) decodes to an empty
list, 64 bytes of Python objects, so 16 MiB of ETF, itself inflated from 16
KiB of zlib, would cost a gigabyte. Real payloads hold one term per 8-10
bytes (a GUILD_CREATE of 1 MB: about 100,000 terms), so the cap of one term
per 8 bytes of ``max_payload_size`` is never reached by them, and the worst
a message can cost is about 10x ``max_payload_size`` (measured: 154 MiB at
the default 16 MiB, for 2M empty maps; it was 1 GiB for 16M empty lists).

``loads(data, stringify_snowflakes=True)`` turns snowflakes into ``str``, as
JSON delivers them. ETF carries no type for snowflakes, so the rule is by key,
applied at every depth, to ints only (never bools):

1. the value of a map key ``id`` or ending in ``_id``;
2. the int elements of a list under a key ending in ``_ids`` or named in
   :data:`SNOWFLAKE_LIST_KEYS` (``roles``, ``mention_roles``, ...);
3. int map keys (JSON object keys are always strings; protocol 37 notes that
   snowflake map keys such as ``resolved.users`` may arrive either way).

A rule by magnitude (e.g. ``>= 2**32``) was rejected: millisecond timestamps
(``since``, activity ``timestamps``) are that large too and are ints in JSON.

Encoding (:func:`dumps`) writes string keys as BINARY_EXT: atom keys get
4002 (protocol 39). Tuples are sent as lists, like JSON arrays. The output is
byte-for-byte what erlpack produces for the same (tuple-free) payload.
"""

from __future__ import annotations

import struct
from typing import Any

from .errors import PayloadTooLarge, RemoteProtocolError

__all__ = ("SNOWFLAKE_LIST_KEYS", "dumps", "loads", "max_terms", "require")

#: Keys whose list elements are snowflakes without ending in ``_ids``.
SNOWFLAKE_LIST_KEYS = frozenset(
    {"roles", "mention_roles", "exempt_roles", "exempt_channels", "applied_tags"}
)

_VERSION = 131
_U16 = struct.Struct(">H").unpack_from
_U32 = struct.Struct(">I").unpack_from
_I32 = struct.Struct(">i").unpack_from
_F64 = struct.Struct(">d").unpack_from
_ATOMS: dict[str, Any] = {"nil": None, "true": True, "false": False}


def require() -> None:
    """Kept for the Codec's extra check; ETF needs no third-party package now."""


#: Bytes of ``max_payload_size`` per term allowed in one message (module docstring).
BYTES_PER_TERM = 8
#: The least term cap, for small ``max_payload_size`` values (a dense 4 KiB message
#: of small ints holds 2,000 terms).
MIN_TERMS = 1 << 16


def max_terms(max_payload_size: int) -> int:
    """The most terms one message may hold: 2,097,152 at the default 16 MiB."""
    return max(max_payload_size // BYTES_PER_TERM, MIN_TERMS)


_DEFAULT_MAX_TERMS = max_terms(16 * 1024 * 1024)


class _Malformed(Exception):
    pass


class _TooManyTerms(Exception):
    pass


def _binary(data: bytes | bytearray, pos: int, size: int) -> tuple[bytes | bytearray, int]:
    end = pos + size
    if end > len(data):
        raise _Malformed(f"{size}-byte field at offset {pos} runs past the end ({len(data)} bytes)")
    return data[pos:end], end


def _atom(text: str) -> Any:
    return _ATOMS.get(text, text)


class _Decoding:
    """What one :func:`loads` call carries down the recursion."""

    __slots__ = ("snowflakes", "strict", "terms_left")

    def __init__(self, terms_left: int, snowflakes: bool, strict: bool) -> None:
        self.terms_left = terms_left
        self.snowflakes = snowflakes
        self.strict = strict


def _decode(data: bytes | bytearray, pos: int, state: _Decoding) -> tuple[Any, int]:
    # Every term but the outermost is an element of a container, so claiming a
    # container's elements when its length is read counts them all, at one
    # subtraction per container rather than per term.
    tag = data[pos]
    pos += 1
    if tag == 116:  # MAP_EXT
        (arity,) = _U32(data, pos)
        pos += 4
        state.terms_left -= 2 * arity
        if state.terms_left < 0:
            raise _TooManyTerms
        result: dict[Any, Any] = {}
        snowflakes = state.snowflakes
        strict = state.strict
        for _ in range(arity):
            if strict and data[pos] in _ATOM_TAGS:  # protocol 39: a client's atom keys get 4002
                raise _Malformed(f"atom map key at offset {pos}")
            key, pos = _decode(data, pos, state)
            value, pos = _decode(data, pos, state)
            if snowflakes:
                key, value = _stringify(key, value)
            result[key] = value
        return result, pos
    if tag == 109:  # BINARY_EXT
        (size,) = _U32(data, pos)
        raw, pos = _binary(data, pos + 4, size)
        return raw.decode("utf-8", "surrogateescape"), pos
    if tag == 97:  # SMALL_INTEGER_EXT
        return data[pos], pos + 1
    if tag == 119:  # SMALL_ATOM_UTF8_EXT
        raw, pos = _binary(data, pos + 1, data[pos])
        return _atom(raw.decode("utf-8")), pos
    if tag == 108:  # LIST_EXT: elements, then a tail that must be NIL_EXT
        (length,) = _U32(data, pos)
        pos += 4
        state.terms_left -= length
        if state.terms_left < 0:
            raise _TooManyTerms
        items = []
        for _ in range(length):
            item, pos = _decode(data, pos, state)
            items.append(item)
        if data[pos] != 106:
            raise _Malformed(f"improper list (tail tag {data[pos]}) at offset {pos}")
        return items, pos + 1
    if tag == 98:  # INTEGER_EXT
        return _I32(data, pos)[0], pos + 4
    if tag == 110 or tag == 111:  # SMALL_BIG_EXT, LARGE_BIG_EXT
        if tag == 110:
            size = data[pos]
            pos += 1
        else:
            (size,) = _U32(data, pos)
            pos += 4
        sign = data[pos]
        digits, pos = _binary(data, pos + 1, size)
        number = int.from_bytes(digits, "little")  # unsigned magnitude (protocol 37)
        return (-number if sign else number), pos
    if tag == 106:  # NIL_EXT: the empty list (protocol 39)
        return [], pos
    if tag == 118 or tag == 100:  # ATOM_UTF8_EXT, ATOM_EXT (Latin-1)
        (size,) = _U16(data, pos)
        raw, pos = _binary(data, pos + 2, size)
        return _atom(raw.decode("utf-8" if tag == 118 else "latin-1")), pos
    if tag == 115:  # SMALL_ATOM_EXT (Latin-1)
        raw, pos = _binary(data, pos + 1, data[pos])
        return _atom(raw.decode("latin-1")), pos
    if tag == 104 or tag == 105:  # SMALL_TUPLE_EXT, LARGE_TUPLE_EXT -> list
        if tag == 104:
            arity = data[pos]
            pos += 1
        else:
            (arity,) = _U32(data, pos)
            pos += 4
        state.terms_left -= arity
        if state.terms_left < 0:
            raise _TooManyTerms
        elements = []
        for _ in range(arity):
            item, pos = _decode(data, pos, state)
            elements.append(item)
        return elements, pos
    if tag == 70:  # NEW_FLOAT_EXT
        return _F64(data, pos)[0], pos + 8
    if tag == 107:  # STRING_EXT: an Erlang charlist, i.e. a list of small ints
        (size,) = _U16(data, pos)
        raw, pos = _binary(data, pos + 2, size)
        state.terms_left -= size
        if state.terms_left < 0:
            raise _TooManyTerms
        return list(raw), pos
    if tag == 99:  # FLOAT_EXT: 31 bytes of "%.20e" text
        raw, pos = _binary(data, pos, 31)
        return float(raw.rstrip(b"\x00")), pos
    if tag == 80:  # compressed term
        raise _Malformed("compressed ETF terms are not accepted (Discord compresses the transport)")
    raise _Malformed(f"unsupported ETF tag {tag} at offset {pos - 1}")


def _stringify(key: Any, value: Any) -> tuple[Any, Any]:
    if isinstance(key, int) and not isinstance(key, bool):
        return str(key), value
    if not isinstance(key, str):
        return key, value
    if isinstance(value, int):
        if not isinstance(value, bool) and (key == "id" or key.endswith("_id")):
            return key, str(value)
    elif isinstance(value, list) and (key.endswith("_ids") or key in SNOWFLAKE_LIST_KEYS):
        return key, [str(v) if isinstance(v, int) and not isinstance(v, bool) else v for v in value]
    return key, value


_ATOM_TAGS = frozenset({100, 115, 118, 119})


def loads(
    data: bytes | bytearray,
    *,
    stringify_snowflakes: bool = False,
    reject_atom_keys: bool = False,
    max_terms: int = _DEFAULT_MAX_TERMS,
) -> Any:
    """Decode one ETF message (see the module docstring for the normalisation).

    ``reject_atom_keys`` is for the local gateway server, which must refuse a
    client's atom keys as Discord does (protocol 39). A message holding more than
    ``max_terms`` terms raises :class:`PayloadTooLarge`.
    """
    try:
        if not data or data[0] != _VERSION:
            raise _Malformed(f"ETF must start with version byte 131, not {data[:1]!r}")
        state = _Decoding(max_terms - 1, stringify_snowflakes, reject_atom_keys)
        term, end = _decode(data, 1, state)
        if end != len(data):
            raise _Malformed(f"{len(data) - end} trailing bytes after the term")
    except (_Malformed, IndexError, struct.error, UnicodeDecodeError, ValueError) as exc:
        detail = "data ends inside a term" if isinstance(exc, (IndexError, struct.error)) else exc
        raise RemoteProtocolError(f"malformed ETF from the gateway: {detail}") from exc
    except (TypeError, OverflowError) as exc:  # a list or map used as a map key
        raise RemoteProtocolError(f"malformed ETF from the gateway: {exc}") from exc
    except RecursionError as exc:
        raise RemoteProtocolError("malformed ETF from the gateway: nested too deeply") from exc
    except _TooManyTerms:
        raise PayloadTooLarge(
            f"ETF message holds more than {max_terms} terms (lists, maps and their "
            "elements); raise max_payload_size to accept messages this large"
        ) from None
    except MemoryError as exc:
        raise RemoteProtocolError("ETF message too large to decode: out of memory") from exc
    return term


# -- encoding --------------------------------------------------------------------

_NIL = b"s\x03nil"
_TRUE = b"s\x04true"
_FALSE = b"s\x05false"
_P_U32 = struct.Struct(">I").pack
_P_I32 = struct.Struct(">i").pack
_P_F64 = struct.Struct(">d").pack


def _encode(obj: Any, out: bytearray, atom_keys: bool = False) -> None:
    # bool before int: bool is an int subclass.
    if obj is None:
        out += _NIL
    elif obj is True:
        out += _TRUE
    elif obj is False:
        out += _FALSE
    elif isinstance(obj, str):
        raw = obj.encode("utf-8")
        out += b"m" + _P_U32(len(raw)) + raw
    elif isinstance(obj, int):
        if 0 <= obj <= 255:
            out += b"a" + bytes((obj,))
        elif -(2**31) <= obj < 2**31:
            out += b"b" + _P_I32(obj)
        else:
            magnitude = abs(obj)
            size = (magnitude.bit_length() + 7) // 8
            if size > 255:
                raise ValueError(f"integer too large for ETF: {size} bytes")
            out += bytes((110, size, obj < 0)) + magnitude.to_bytes(size, "little")
    elif isinstance(obj, dict):
        out += b"t" + _P_U32(len(obj))
        for key, value in obj.items():
            if atom_keys and isinstance(key, str):
                raw = key.encode("utf-8")
                if len(raw) > 255:
                    raise ValueError(f"atom too long: {key[:20]!r}...")
                out += bytes((119, len(raw))) + raw  # SMALL_ATOM_UTF8_EXT
            else:
                _encode(key, out, atom_keys)
            _encode(value, out, atom_keys)
    elif isinstance(obj, (list, tuple)):
        if obj:
            out += b"l" + _P_U32(len(obj))
            for item in obj:
                _encode(item, out, atom_keys)
        out += b"j"
    elif isinstance(obj, float):
        out += b"F" + _P_F64(obj)
    elif isinstance(obj, (bytes, bytearray)):
        out += b"m" + _P_U32(len(obj)) + obj
    else:
        raise TypeError(f"cannot encode {type(obj).__name__} as ETF")


def dumps(payload: dict[str, Any], *, atom_keys: bool = False) -> bytes:
    """Encode a payload to send. Raises TypeError/ValueError on what ETF cannot hold.

    Clients must send string keys (protocol 39); ``atom_keys=True`` writes map keys
    as atoms the way Discord's own messages do, for the local gateway server.
    """
    out = bytearray(b"\x83")
    _encode(payload, out, atom_keys)
    return bytes(out)
