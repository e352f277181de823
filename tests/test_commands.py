"""The command builders: doc examples reproduced, one failing case per rule,
and a property: every input is either refused or fits Discord's 4096 bytes."""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from discord_gateway.codec import MAX_SEND_SIZE, json_dumps, json_loads
from discord_gateway.commands import (
    INTENTS_LIMIT,
    default_properties,
    identify_data,
    presence_data,
    request_channel_info_data,
    request_guild_members_data,
    request_soundboard_sounds_data,
    validate_snowflake,
    voice_state_data,
)
from discord_gateway.errors import GatewayError, InvalidCommand

DOCS = Path(__file__).parent / "fixtures" / "docs_examples"


def doc(name: str) -> Any:
    return json.loads((DOCS / name).read_text())["d"]


# -- doc examples, reproduced exactly -------------------------------------------


def test_identify_full_doc_example() -> None:
    expected = doc("identify_full.json")
    built = identify_data(
        token="my_token",
        properties={"os": "linux", "browser": "disco", "device": "disco"},
        compress=True,
        large_threshold=250,
        shard=(0, 1),
        presence={
            "activities": [{"name": "Cards Against Humanity", "type": 0}],
            "status": "dnd",
            "since": 91879201,
            "afk": False,
        },
        intents=5,
    )
    assert built == expected
    # Lists, not tuples: ETF would encode a tuple as an Erlang tuple.
    assert type(built["shard"]) is list


def test_identify_minimal_doc_example() -> None:
    built = identify_data(
        token="my_token",
        intents=513,
        properties={"os": "linux", "browser": "my_library", "device": "my_library"},
    )
    assert built == doc("identify_minimal.json")


def test_update_presence_doc_example_and_key_order() -> None:
    built = presence_data(since=91879201, activities=[{"name": "Save the Oxford Comma", "type": 0}])
    expected = doc("update_presence_op3.json")
    assert built == expected
    assert list(built) == list(expected)


def test_request_guild_members_doc_example() -> None:
    built = request_guild_members_data("41771983444115456", query="", limit=0)
    assert built == doc("request_guild_members.json")
    # snowflakes given as int are sent as str
    assert request_guild_members_data(41771983444115456, query="", limit=0) == built


def test_update_voice_state_doc_example() -> None:
    built = voice_state_data(41771983423143937, "127121515262115840")
    expected = doc("update_voice_state_op4.json")
    assert built == expected
    assert list(built) == list(expected)


def test_request_soundboard_sounds_doc_example() -> None:
    built = request_soundboard_sounds_data([613425648685547541, "81384788765712384"])
    assert built == doc("request_soundboard_sounds_op31.json")


def test_request_channel_info_doc_example() -> None:
    assert request_channel_info_data("613425648685547541") == doc("request_channel_info_op43.json")


# -- snowflakes -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [(1, "1"), ("1", "1"), (2**64 - 1, str(2**64 - 1)), ("0042", "42")],
)
def test_snowflake_accepted(value: object, expected: str) -> None:
    assert validate_snowflake(value) == expected


@pytest.mark.parametrize(
    "value",
    [
        0,
        -1,
        2**64,
        "0",
        "",
        "-5",
        "+5",
        " 5",
        "5 ",
        "1.0",
        "0x10",
        "١٢",
        "9" * 21,
        1.0,
        None,
        True,
        b"5",
        [5],
    ],
)
def test_snowflake_refused(value: object) -> None:
    with pytest.raises(InvalidCommand, match="guild_id"):
        validate_snowflake(value, "guild_id")


def test_invalid_command_is_a_gateway_value_error() -> None:
    with pytest.raises(ValueError):
        validate_snowflake(0)
    with pytest.raises(GatewayError):
        validate_snowflake(0)


# -- IDENTIFY rules -----------------------------------------------------------------


def test_identify_default_properties() -> None:
    built = identify_data(token="t", intents=0)
    assert built["properties"] == {
        "os": sys.platform,
        "browser": "discord-gateway",
        "device": "discord-gateway",
    }
    assert built["properties"] == default_properties()
    # optional fields left as None are omitted
    assert set(built) == {"token", "properties", "intents"}


def test_identify_partial_properties_fall_back_to_defaults() -> None:
    built = identify_data(token="t", intents=0, properties={"browser": "Discord iOS"})
    assert built["properties"] == {
        "os": sys.platform,
        "browser": "Discord iOS",
        "device": "discord-gateway",
    }


def test_identify_deprecated_property_keys_are_renamed_with_a_warning() -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        built = identify_data(
            token="t", intents=0, properties={"$os": "linux", "$browser": "b", "$device": "d"}
        )
    assert built["properties"] == {"os": "linux", "browser": "b", "device": "d"}
    assert [str(w.message) for w in caught] == [
        f"identify property '${name}' is deprecated, use '{name}'"
        for name in ("os", "browser", "device")
    ]
    assert all(w.category is DeprecationWarning for w in caught)
    assert all(w.filename == __file__ for w in caught)  # points at the caller


def test_identify_refuses_a_property_given_twice() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        with pytest.raises(InvalidCommand, match="'os' twice"):
            identify_data(token="t", intents=0, properties={"os": "a", "$os": "b"})


@pytest.mark.parametrize("properties", [{"os": 1}, {1: "x"}, ["os", "linux"]])
def test_identify_refuses_bad_properties(properties: Any) -> None:
    with pytest.raises(InvalidCommand, match="properties"):
        identify_data(token="t", intents=0, properties=properties)


@pytest.mark.parametrize("token", ["", "   ", None, b"token", 5])
def test_identify_refuses_bad_token(token: Any) -> None:
    with pytest.raises(InvalidCommand, match="token must be a non-empty str"):
        identify_data(token=token, intents=0)


def test_identify_error_messages_never_echo_the_token() -> None:
    secret = "MTIz.secret.token"
    with pytest.raises(InvalidCommand) as info:
        identify_data(token=secret, intents=-1)
    assert secret not in str(info.value)


@pytest.mark.parametrize(
    ("intents", "rule"),
    [
        (-1, "intents must be >= 0"),
        (INTENTS_LIMIT, "4013"),
        (1 << 40, "4013"),
        (True, "must be an int"),
        ("513", "must be an int"),
        (513.0, "must be an int"),
    ],
)
def test_identify_refuses_bad_intents(intents: Any, rule: str) -> None:
    with pytest.raises(InvalidCommand, match=rule):
        identify_data(token="t", intents=intents)


def test_identify_accepts_every_known_intent() -> None:
    # DIRECT_MESSAGE_POLLS = 1 << 25 is the highest documented intent.
    everything = INTENTS_LIMIT - 1
    assert identify_data(token="t", intents=everything)["intents"] == everything
    assert identify_data(token="t", intents=1 << 25)["intents"] == 1 << 25


@pytest.mark.parametrize("threshold", [49, 251, 0, True, 100.0, "100"])
def test_identify_refuses_bad_large_threshold(threshold: Any) -> None:
    with pytest.raises(InvalidCommand, match="large_threshold must be an int between 50 and 250"):
        identify_data(token="t", intents=0, large_threshold=threshold)


@pytest.mark.parametrize("threshold", [50, 250])
def test_identify_large_threshold_bounds_are_inclusive(threshold: int) -> None:
    assert identify_data(token="t", intents=0, large_threshold=threshold)["large_threshold"] == (
        threshold
    )


@pytest.mark.parametrize(
    ("shard", "rule"),
    [
        ((1, 1), "0 <= shard_id < num_shards"),
        ((-1, 2), "0 <= shard_id < num_shards"),
        ((0, 0), "0 <= shard_id < num_shards"),
        ((0,), "pair of ints"),
        ((0, 1, 2), "pair of ints"),
        (("0", "1"), "pair of ints"),
        ((True, 2), "pair of ints"),
        ("01", "pair"),
        (0, "pair"),
    ],
)
def test_identify_refuses_bad_shard(shard: Any, rule: str) -> None:
    with pytest.raises(InvalidCommand, match=rule):
        identify_data(token="t", intents=0, shard=shard)


def test_identify_compress_must_be_bool() -> None:
    assert identify_data(token="t", intents=0, compress=False)["compress"] is False
    with pytest.raises(InvalidCommand, match="compress must be a bool"):
        identify_data(token="t", intents=0, compress=1)  # type: ignore[arg-type]


def test_identify_presence_is_validated_like_op3() -> None:
    with pytest.raises(InvalidCommand, match="status must be one of"):
        identify_data(token="t", intents=0, presence={"status": "away"})
    with pytest.raises(InvalidCommand, match="unknown keys"):
        identify_data(token="t", intents=0, presence={"game": {"name": "x"}})
    with pytest.raises(InvalidCommand, match="presence must be a mapping"):
        identify_data(token="t", intents=0, presence=[("status", "idle")])  # type: ignore[arg-type]
    built = identify_data(token="t", intents=0, presence={"status": "idle"})
    assert built["presence"] == {"since": None, "activities": [], "status": "idle", "afk": False}


def test_identify_refuses_oversized_payload() -> None:
    with pytest.raises(InvalidCommand, match="4096"):
        identify_data(token="t" * 5000, intents=0)


# -- PRESENCE_UPDATE rules -----------------------------------------------------------


@pytest.mark.parametrize("status", ["online", "dnd", "idle", "invisible", "offline"])
def test_presence_every_status(status: str) -> None:
    assert presence_data(status=status)["status"] == status


@pytest.mark.parametrize("status", ["away", "Online", "", None])
def test_presence_refuses_unknown_status(status: Any) -> None:
    with pytest.raises(InvalidCommand, match="status must be one of"):
        presence_data(status=status)


@pytest.mark.parametrize(
    ("activity", "rule"),
    [
        ({"name": "x", "type": 0, "details": "d"}, "only set name, state, type and url"),
        ({"name": "x", "type": 0, "assets": {}}, "only set name, state, type and url"),
        ({"type": 0}, "name must be a non-empty str"),
        ({"name": "", "type": 0}, "name must be a non-empty str"),
        ({"name": "x"}, "type must be an activity type int 0..6"),
        ({"name": "x", "type": 7}, "type must be an activity type int 0..6"),
        ({"name": "x", "type": -1}, "type must be an activity type int 0..6"),
        ({"name": "x", "type": True}, "type must be an activity type int 0..6"),
        ({"name": "x", "type": 0, "state": 5}, "state must be a str or None"),
        ({"name": "x", "type": 1, "url": "https://example.com/live"}, "Twitch or YouTube"),
        ({"name": "x", "type": 1, "url": "ftp://twitch.tv/x"}, "Twitch or YouTube"),
        ({"name": "x", "type": 1, "url": "https://twitch.tv.evil.com/x"}, "Twitch or YouTube"),
        ("x", "activities\\[0\\] must be a mapping"),
    ],
)
def test_presence_refuses_bad_activity(activity: Any, rule: str) -> None:
    with pytest.raises(InvalidCommand, match=rule):
        presence_data(activities=[activity])


@pytest.mark.parametrize(
    "url", ["https://twitch.tv/discord", "https://www.youtube.com/watch?v=x", "http://youtube.com/"]
)
def test_presence_streaming_url_twitch_or_youtube(url: str) -> None:
    activity = {"name": "x", "type": 1, "url": url}
    assert presence_data(activities=[activity])["activities"] == [activity]


def test_presence_custom_status_with_state() -> None:
    activity = {"name": "Custom Status", "type": 4, "state": "Working"}
    assert presence_data(activities=[activity])["activities"] == [activity]


@pytest.mark.parametrize("activities", ["Playing", {"name": "x", "type": 0}, 5])
def test_presence_activities_must_be_a_list(activities: Any) -> None:
    with pytest.raises(InvalidCommand, match="activities must be a list"):
        presence_data(activities=activities)


@pytest.mark.parametrize("since", [-1, 1.5, "0", True])
def test_presence_refuses_bad_since(since: Any) -> None:
    with pytest.raises(InvalidCommand, match="since must be None or a Unix time in ms"):
        presence_data(since=since)


def test_presence_afk_must_be_bool() -> None:
    with pytest.raises(InvalidCommand, match="afk must be a bool"):
        presence_data(afk=0)  # type: ignore[arg-type]


# -- VOICE_STATE_UPDATE rules -------------------------------------------------------


def test_voice_state_disconnect_keeps_all_four_keys() -> None:
    built = voice_state_data("1", None, self_mute=True, self_deaf=True)
    assert built == {"guild_id": "1", "channel_id": None, "self_mute": True, "self_deaf": True}


def test_voice_state_refuses_bad_arguments() -> None:
    with pytest.raises(InvalidCommand, match="guild_id"):
        voice_state_data(None, 1)  # type: ignore[arg-type]
    with pytest.raises(InvalidCommand, match="channel_id"):
        voice_state_data(1, 0)
    with pytest.raises(InvalidCommand, match="self_mute must be a bool"):
        voice_state_data(1, 2, self_mute="yes")  # type: ignore[arg-type]
    with pytest.raises(InvalidCommand, match="self_deaf must be a bool"):
        voice_state_data(1, 2, self_deaf=None)  # type: ignore[arg-type]


# -- REQUEST_GUILD_MEMBERS rules ----------------------------------------------------


def test_request_members_needs_exactly_one_of_query_and_user_ids() -> None:
    with pytest.raises(InvalidCommand, match="exactly one of query and user_ids"):
        request_guild_members_data(1)
    with pytest.raises(InvalidCommand, match="exactly one of query and user_ids"):
        request_guild_members_data(1, query="a", limit=1, user_ids=[2])


def test_request_members_limit_required_with_query() -> None:
    with pytest.raises(InvalidCommand, match="limit is required with query"):
        request_guild_members_data(1, query="abc")


@pytest.mark.parametrize("limit", [-1, 101, 1000, True, 1.0])
def test_request_members_limit_range(limit: Any) -> None:
    with pytest.raises(InvalidCommand, match="limit must be an int between 0 and 100"):
        request_guild_members_data(1, query="abc", limit=limit)


def test_request_members_full_example() -> None:
    built = request_guild_members_data("1", query="ab", limit=100, presences=True, nonce="n" * 32)
    assert built == {
        "guild_id": "1",
        "query": "ab",
        "limit": 100,
        "presences": True,
        "nonce": "n" * 32,
    }


def test_request_members_user_ids_single_or_list() -> None:
    assert request_guild_members_data(1, user_ids=5)["user_ids"] == ["5"]
    assert request_guild_members_data(1, user_ids="5")["user_ids"] == ["5"]
    built = request_guild_members_data(1, user_ids=range(1, 101))
    assert built["user_ids"] == [str(i) for i in range(1, 101)]
    assert "limit" not in built and "query" not in built


@pytest.mark.parametrize(
    ("user_ids", "rule"),
    [
        ([], "1 to 100"),
        (range(1, 102), "1 to 100"),
        ([1, 0], r"user_ids\[1\]"),
        ({"1": 1}, "list of snowflakes"),
        (b"12", "list of snowflakes"),
    ],
)
def test_request_members_refuses_bad_user_ids(user_ids: Any, rule: str) -> None:
    with pytest.raises(InvalidCommand, match=rule):
        request_guild_members_data(1, user_ids=user_ids)


def test_request_members_nonce_counts_utf8_bytes() -> None:
    # 8 four-byte characters are 32 bytes: accepted; 9 are 36: refused.
    assert request_guild_members_data(1, user_ids=2, nonce="😀" * 8)["nonce"] == "😀" * 8
    with pytest.raises(InvalidCommand, match="at most 32 bytes of UTF-8, not 36 bytes"):
        request_guild_members_data(1, user_ids=2, nonce="😀" * 9)
    with pytest.raises(InvalidCommand, match="nonce must be a str"):
        request_guild_members_data(1, user_ids=2, nonce=5)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "build",
    [
        lambda: request_guild_members_data(1, user_ids=2, nonce="\udc80"),
        lambda: presence_data(activities=[{"name": "\ud800", "type": 0}]),
        lambda: identify_data(token="t\udfff", intents=0),
    ],
)
def test_text_that_is_not_utf8_is_refused(build: Any) -> None:
    # A lone surrogate cannot be sent as JSON (or ETF): refuse it here.
    with pytest.raises(InvalidCommand, match="cannot be encoded"):
        build()


def test_request_members_refuses_bad_query_and_presences() -> None:
    with pytest.raises(InvalidCommand, match="query must be a str"):
        request_guild_members_data(1, query=5, limit=1)  # type: ignore[arg-type]
    with pytest.raises(InvalidCommand, match="presences must be a bool"):
        request_guild_members_data(1, user_ids=2, presences=1)  # type: ignore[arg-type]


# -- op 31 and op 43 rules ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("guild_ids", "rule"),
    [
        ([], "at least one"),
        ("123", "list of snowflakes"),
        (123, "list of snowflakes"),
        ([1, "x"], r"guild_ids\[1\]"),
    ],
)
def test_soundboard_refuses_bad_guild_ids(guild_ids: Any, rule: str) -> None:
    with pytest.raises(InvalidCommand, match=rule):
        request_soundboard_sounds_data(guild_ids)


def test_soundboard_refuses_more_guilds_than_fit_in_4096_bytes() -> None:
    ids = [2**63 + i for i in range(250)]  # 250 * 22 bytes > 4096
    with pytest.raises(InvalidCommand, match="4096"):
        request_soundboard_sounds_data(ids)


@pytest.mark.parametrize("fields", [[], ["status", "status"], ["topic"], "status", None])
def test_channel_info_refuses_bad_fields(fields: Any) -> None:
    with pytest.raises(InvalidCommand, match="fields must be"):
        request_channel_info_data(1, fields)


def test_channel_info_subset_of_fields() -> None:
    assert request_channel_info_data(1, ["voice_start_time"]) == {
        "guild_id": "1",
        "fields": ["voice_start_time"],
    }


# -- property: refused, or valid JSON under 4096 bytes ---------------------------------

snowflakes = st.one_of(
    st.integers(min_value=-5, max_value=2**64 + 5),
    st.integers(min_value=1, max_value=2**64 - 1).map(str),
    st.text(max_size=22),
)
activities = st.lists(
    st.dictionaries(
        st.sampled_from(["name", "type", "state", "url", "details"]),
        st.one_of(
            st.none(), st.integers(-1, 8), st.text(max_size=300), st.just("https://twitch.tv/x")
        ),
        max_size=5,
    ),
    max_size=20,
)
presence_kwargs = st.fixed_dictionaries(
    {},
    optional={
        "activities": activities,
        "status": st.sampled_from(["online", "dnd", "idle", "invisible", "offline", "away"]),
        "afk": st.one_of(st.booleans(), st.none()),
        "since": st.one_of(st.none(), st.integers(-1, 2**53)),
    },
)


def build_command(draw: st.DrawFn) -> tuple[int, Any]:
    kind = draw(st.sampled_from(["identify", "presence", "voice", "members", "sounds", "info"]))
    if kind == "identify":
        return 2, identify_data(
            token=draw(st.text(max_size=100)),
            intents=draw(st.integers(-1, 2**27)),
            properties=draw(
                st.none()
                | st.dictionaries(
                    st.sampled_from(["os", "browser", "device", "extra"]), st.text(max_size=600)
                )
            ),
            compress=draw(st.none() | st.booleans()),
            large_threshold=draw(st.none() | st.integers(40, 260)),
            shard=draw(st.none() | st.tuples(st.integers(-1, 5), st.integers(0, 5))),
            presence=draw(st.none() | presence_kwargs),
        )
    if kind == "presence":
        kwargs: dict[str, Any] = draw(presence_kwargs)
        return 3, presence_data(**kwargs)
    if kind == "voice":
        return 4, voice_state_data(draw(snowflakes), draw(st.none() | snowflakes))
    if kind == "members":
        return 8, request_guild_members_data(
            draw(snowflakes),
            query=draw(st.none() | st.text(max_size=200)),
            limit=draw(st.none() | st.integers(-1, 101)),
            presences=draw(st.none() | st.booleans()),
            user_ids=draw(st.none() | snowflakes | st.lists(snowflakes, max_size=120)),
            nonce=draw(st.none() | st.text(max_size=40)),
        )
    if kind == "sounds":
        return 31, request_soundboard_sounds_data(draw(st.lists(snowflakes, max_size=300)))
    return 43, request_channel_info_data(
        draw(snowflakes), draw(st.lists(st.sampled_from(["status", "voice_start_time", "x"])))
    )


@st.composite
def commands(draw: st.DrawFn) -> tuple[int, Any] | InvalidCommand:
    try:
        return build_command(draw)
    except InvalidCommand as exc:
        return exc


@given(commands())
def test_every_command_is_refused_or_fits_and_round_trips(result: Any) -> None:
    """Invariant: a builder either raises InvalidCommand or returns data whose
    JSON envelope is at most 4096 bytes and decodes to the same data."""
    if isinstance(result, InvalidCommand):
        assert str(result)  # the message names the rule
        return
    op, data = result
    raw = json_dumps({"op": op, "d": data})
    assert len(raw) <= MAX_SEND_SIZE
    assert json_loads(raw) == {"op": op, "d": data}
