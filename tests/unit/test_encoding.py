"""encoding: canonical JSON, the wire escaping, strict parsing, base64, time, ECDSA forms."""

import json
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trustkit.encoding import (
    MAX_SAFE_INT,
    b64decode,
    b64encode,
    canonical_json,
    der_to_raw_ecdsa,
    envelope_bytes,
    format_expires,
    loads_strict,
    parse_expires,
    raw_to_der_ecdsa,
    wire_escape,
)
from trustkit.errors import EncodingError

# Strings notary can sign: no lone surrogates, no control characters (§2.3).
signable_text = st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc")))
json_scalars = st.one_of(st.none(), st.booleans(), st.integers(-MAX_SAFE_INT, MAX_SAFE_INT), signable_text)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(signable_text, inner, max_size=4)),
    max_leaves=20,
)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ({"b": 1, "a": [True, None, "x"]}, b'{"a":[true,null,"x"],"b":1}'),
        ('quote" back\\', b'"quote\\" back\\\\"'),
        ("a<b>&c", b'"a<b>&c"'),  # canonical form keeps these raw (§2.1)
        ("tab\tnl\n", b'"tab\tnl\n"'),  # control characters are not escaped in canonical mode
        ("é\u2028", '"é\u2028"'.encode()),
        ({"é": 1, "z": 2, "a": 3}, '{"a":3,"z":2,"é":1}'.encode()),  # UTF-8 byte order
        ([], b"[]"),
        ({}, b"{}"),
    ],
)
def test_canonical_json_matches_notary(value, expected):
    assert canonical_json(value) == expected


def test_canonical_json_refuses_floats_and_surrogates():
    with pytest.raises(EncodingError):
        canonical_json({"a": 1.5})
    with pytest.raises(EncodingError, match="surrogate"):
        canonical_json("\ud800")


def test_wire_escape_is_go_html_escaping():
    escaped = b'"a\\u003cb\\u003e\\u0026c\\u2028\\u2029' + "é".encode() + b'"'
    assert wire_escape('"a<b>&c\u2028\u2029é"'.encode()) == escaped


def test_envelope_layout():
    body = envelope_bytes(b'{"a":"<"}', [{"keyid": "k", "method": "ecdsa", "sig": "c2ln"}])
    assert body == b'{"signed":{"a":"\\u003c"},"signatures":[{"keyid":"k","method":"ecdsa","sig":"c2ln"}]}'
    assert envelope_bytes(b"{}", []) == b'{"signed":{},"signatures":[]}'


@given(json_values)
def test_canonical_json_is_stable_and_parses_back(value):
    once = canonical_json(value)
    assert json.loads(once) == value
    # Reordering keys never changes the canonical form.
    assert canonical_json(json.loads(once)) == once


@given(json_values)
def test_wire_form_parses_to_the_same_value(value):
    assert json.loads(wire_escape(canonical_json(value))) == value


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b'{"a":1,"a":2}', "duplicate key"),
        (b'{"version":1,"Version":2}', "differ only in case"),
        (b'{"a":NaN}', "NaN"),
        (b'{"a":Infinity}', "Infinity"),
        (b'{"a":-Infinity}', "Infinity"),
        (b'{"a":1.5}', "not an integer"),
        (b'{"a":1e2}', "not an integer"),
        (b'{"a":' + b"9" * 5000 + b"}", "too large"),
        (b'{"a":9007199254740993}', "too large"),
        (b"[" * 100_000 + b"]" * 100_000, "nested"),
        (b"[" * 70 + b"]" * 70, "nested more than"),
        (b'{"a":1} x', "extra data"),
        (b"\xef\xbb\xbf{}", "byte-order mark"),
        (b'{"a":"\xff"}', "UTF-8"),
        (b'{"a":"\x01"}', "not valid JSON"),
        (b"", "not valid JSON"),
        (b'{"a":', "not valid JSON"),
    ],
)
def test_loads_strict_refuses(data, message):
    with pytest.raises(EncodingError, match=message):
        loads_strict(data)


def test_loads_strict_size_cap():
    with pytest.raises(EncodingError, match="limit is 10"):
        loads_strict(b"[" + b"1," * 10 + b"1]", max_size=10)


@given(st.binary())
def test_base64_round_trip(data):
    assert b64decode(b64encode(data)) == data


@pytest.mark.parametrize("text", ["abc", "a b=", "YQ", "YQ===", "!!!!", "\u00e9AAA"])
def test_base64_strict(text):
    with pytest.raises(EncodingError):
        b64decode(text)


@given(st.integers(1, 2**256 - 1), st.integers(1, 2**256 - 1))
def test_der_raw_ecdsa_round_trip(r, s):
    from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

    der = encode_dss_signature(r, s)
    raw = der_to_raw_ecdsa(der, 32)
    assert len(raw) == 64  # always padded, even when r or s has leading zeros
    assert raw_to_der_ecdsa(raw) == der


def test_der_to_raw_refuses_oversized_and_garbage():
    from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

    with pytest.raises(EncodingError):
        der_to_raw_ecdsa(encode_dss_signature(2**300, 1), 32)
    with pytest.raises(EncodingError):
        der_to_raw_ecdsa(b"\x30\x00garbage", 32)


@pytest.mark.parametrize(
    ("moment", "text"),
    [
        (datetime(2026, 12, 10, 16, 53, 13, 955098, tzinfo=UTC), "2026-12-10T16:53:13.955098Z"),
        (datetime(2026, 12, 10, 16, 53, 13, 950000, tzinfo=UTC), "2026-12-10T16:53:13.95Z"),
        (datetime(2026, 12, 10, 16, 53, 13, tzinfo=UTC), "2026-12-10T16:53:13Z"),
        (datetime(2026, 12, 10, 11, 53, 13, tzinfo=timezone(timedelta(hours=-5))), "2026-12-10T16:53:13Z"),
    ],
)
def test_format_expires_is_go_rfc3339nano_utc(moment, text):
    assert format_expires(moment) == text


def test_parse_expires_handles_nanoseconds_and_offsets():
    assert parse_expires("2116-07-03T17:56:36.027379879-05:00") == datetime(2116, 7, 3, 22, 56, 36, 27379, tzinfo=UTC)
    for bad in ("2026-13-01T00:00:00Z", "2026-12-10 16:53:13Z", "2026-12-10T16:53:13", "", 5):
        with pytest.raises(EncodingError):
            parse_expires(bad)  # type: ignore[arg-type]  # 5: a non-string from a JSON document


@given(st.datetimes(min_value=datetime(1970, 1, 1), max_value=datetime(9999, 1, 1), timezones=st.just(UTC)))
def test_expires_round_trip(moment):
    text = format_expires(moment)
    assert parse_expires(text) == moment
