"""Every decoder failure is a RemoteProtocolError, chained to its cause: JSON
with orjson and with the stdlib (orjson blocked in a subprocess, so the stdlib
branch of ``codec`` is the one really imported), ETF, and memory exhaustion."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from discord_gateway import _etf, codec
from discord_gateway.codec import Codec
from discord_gateway.errors import RemoteProtocolError

ROOT = Path(__file__).resolve().parent.parent
MAX = 16 * 2**20

# (name, "text" or "binary", data): each must be refused by both JSON decoders.
JSON_REFUSED: list[tuple[str, str, Any]] = [
    ("1e6 deep list, text", "text", "[" * 1_000_000),
    ("1e6 deep list, bytes", "binary", b"[" * 1_000_000),
    ("deep and closed", "binary", b"[" * 100_000 + b"]" * 100_000),
    ("deep objects", "text", '{"a":' * 200_000 + "1" + "}" * 200_000),
    ("bad UTF-8", "binary", b'{"a":"\xff\xfe"}'),
    ("truncated UTF-8", "binary", b'{"a":"\xc3'),
    ("an int of 5000 digits", "text", '{"a":' + "9" * 5000 + "}"),
    ("BOM", "text", '\ufeff{"a":1}'),
    ("trailing NUL", "binary", b'{"a":1}\x00'),
    ("empty", "binary", b""),
    ("truncated", "text", '{"a":1'),
]


@pytest.mark.parametrize(("name", "kind", "data"), JSON_REFUSED, ids=[c[0] for c in JSON_REFUSED])
def test_orjson_failures_are_remote_protocol_errors(name: str, kind: str, data: Any) -> None:
    with pytest.raises(RemoteProtocolError, match="malformed JSON") as info:
        getattr(Codec("json", None, MAX), kind)(data, True)
    assert info.value.__cause__ is not None


def test_orjson_refuses_what_the_stdlib_would_accept() -> None:
    pytest.importorskip("orjson")
    for text in ('{"a":"\ud800"}', '{"a":"\\ud800"}', '{"a":1e400}', '{"a":NaN}'):
        with pytest.raises(RemoteProtocolError):
            Codec("json", None, MAX).text(text, True)


STDLIB_SCRIPT = textwrap.dedent(
    """
    import json, sys
    sys.modules["orjson"] = None  # as if the speed extra were not installed
    from discord_gateway import codec
    from discord_gateway.codec import Codec
    from discord_gateway.errors import RemoteProtocolError
    assert "orjson" not in codec.__dict__, "the orjson branch was imported"
    cases = json.loads(sys.stdin.read())
    results = []
    for kind, data in cases:
        if kind == "binary":
            data = bytes.fromhex(data)
        try:
            out = getattr(Codec("json", None, 16 * 2**20), kind)(data, True)
            results.append(["decoded", repr(out)[:60]])
        except RemoteProtocolError as exc:
            results.append(["refused", type(exc.__cause__).__name__])
        except BaseException as exc:
            results.append(["leaked", type(exc).__name__ + ": " + str(exc)[:80]])
    print(json.dumps(results))
    """
)


def run_stdlib(cases: list[tuple[str, Any]]) -> list[list[str]]:
    encoded = [[kind, data.hex() if kind == "binary" else data] for kind, data in cases]
    done = subprocess.run(
        [sys.executable, "-c", STDLIB_SCRIPT],
        input=json.dumps(encoded),
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    results: list[list[str]] = json.loads(done.stdout)
    return results


def test_stdlib_json_failures_are_remote_protocol_errors() -> None:
    # Regression: with the stdlib json, 1e6-deep nesting raised RecursionError.
    results = run_stdlib([(kind, data) for _, kind, data in JSON_REFUSED])
    for (name, _, _), (outcome, detail) in zip(JSON_REFUSED, results, strict=True):
        assert outcome == "refused", f"{name}: {outcome} {detail}"
    causes = {name: detail for (name, _, _), (_, detail) in zip(JSON_REFUSED, results, strict=True)}
    assert causes["1e6 deep list, text"] == "RecursionError"
    assert causes["bad UTF-8"] == "UnicodeDecodeError"


def test_stdlib_json_still_decodes() -> None:
    assert run_stdlib([("text", '{"op":11}'), ("binary", b'{"op":1}')]) == [
        ["decoded", "{'op': 11}"],
        ["decoded", "{'op': 1}"],
    ]


def test_memory_error_while_decoding_json_is_a_remote_protocol_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def exhausted(data: Any) -> Any:
        raise MemoryError

    monkeypatch.setattr(codec, "json_loads", exhausted)
    with pytest.raises(RemoteProtocolError, match="out of memory") as info:
        Codec("json", None, MAX).text('{"op":11}', True)
    assert isinstance(info.value.__cause__, MemoryError)


def test_memory_error_while_decoding_etf_is_a_remote_protocol_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def exhausted(*args: Any) -> Any:
        raise MemoryError

    monkeypatch.setattr(_etf, "_decode", exhausted)
    with pytest.raises(RemoteProtocolError, match="out of memory") as info:
        Codec("etf", None, MAX).binary(b"\x83j", True)
    assert isinstance(info.value.__cause__, MemoryError)


ETF_REFUSED = [
    ("deep tuples", b"\x83" + b"h\x01" * 200_000 + b"j"),
    ("deep maps", b"\x83" + b"t\x00\x00\x00\x01a\x01" * 200_000 + b"j"),
    ("UTF-8 atom, bad UTF-8", b"\x83v\x00\x02\xc3\x28"),
    ("small UTF-8 atom, truncated UTF-8", b"\x83w\x01\xc3"),
    ("float text that is no float", b"\x83c" + b"x" * 31),
    ("float text with NULs inside", b"\x83c" + b"1\x002" + b"\x00" * 28),
    ("big int longer than the data", b"\x83o\xff\xff\xff\xff\x00"),
    ("list longer than the data", b"\x83l\x00\x00\x00\x05a\x01"),
    ("map key that is a map", b"\x83t\x00\x00\x00\x01t\x00\x00\x00\x00a\x01"),
    ("version only", b"\x83"),
    ("empty", b""),
]


@pytest.mark.parametrize(("name", "data"), ETF_REFUSED, ids=[c[0] for c in ETF_REFUSED])
def test_etf_failures_are_remote_protocol_errors(name: str, data: bytes) -> None:
    with pytest.raises(RemoteProtocolError, match="ETF") as info:
        Codec("etf", None, MAX).binary(data, True)
    assert info.value.__cause__ is not None
