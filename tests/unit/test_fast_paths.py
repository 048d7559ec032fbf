"""The fast parse paths (``loads_canonical`` in ``Metadata.from_bytes``, ``FileMeta.fast``) are
only shortcuts: for any input they give nothing or exactly what the strict path gives.

Property tests (hypothesis) generate metadata, spell it canonically and otherwise, and mutate it;
each input is parsed twice, with and without the fast path, and the two answers must agree (both
the same metadata, or both refused with trustkit's own error).
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from trustkit.encoding import b64encode, canonical_json, envelope_bytes, loads_canonical
from trustkit.errors import TrustkitError
from trustkit.metadata import FileMeta, Metadata
from trustkit.metadata import envelope as envelope_module
from trustkit.metadata.payload import _common_entries
from trustkit.roles import TARGETS

PROPERTY = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

tags = st.text(alphabet=st.sampled_from("vV1209._-aAbB"), min_size=1, max_size=6)
digests32 = st.binary(min_size=32, max_size=32).map(b64encode)
digests64 = st.binary(min_size=64, max_size=64).map(b64encode)
hash_maps = st.one_of(
    st.fixed_dictionaries({"sha256": digests32}),
    st.fixed_dictionaries({"sha256": digests32, "sha512": digests64}),
    st.dictionaries(
        st.sampled_from(["sha256", "sha512", "SHA256", "md5", ""]),
        st.one_of(digests32, digests64, st.text(max_size=5), st.integers()),
        max_size=3,
    ),
)
json_scalars = st.one_of(st.none(), st.booleans(), st.integers(-(2**60), 2**60), st.text(max_size=4))
file_metas = st.one_of(
    st.fixed_dictionaries({"hashes": hash_maps, "length": st.integers(-2, 2**54)}),
    st.fixed_dictionaries(
        {"hashes": hash_maps, "length": st.integers(0, 99)},
        optional={
            "custom": st.recursive(
                json_scalars,
                lambda inner: st.lists(inner, max_size=2) | st.dictionaries(st.text(max_size=3), inner, max_size=2),
                max_leaves=6,
            )
        },
    ),
    st.dictionaries(st.sampled_from(["hashes", "length", "Length", "custom", "x"]), json_scalars, max_size=3),
)


def targets_document(entries: dict[str, Any], version: int = 1) -> dict[str, Any]:
    return {
        "_type": "Targets",
        "delegations": {"keys": {}, "roles": []},
        "expires": "2030-01-01T00:00:00Z",
        "targets": entries,
        "version": version,
    }


def signed_file(signed: dict[str, Any]) -> bytes:
    """notary's exact layout, with one (unverified) signature: the fast path's input."""
    return envelope_bytes(
        canonical_json(signed, parsed=True), [{"keyid": "ab" * 32, "method": "ecdsa", "sig": b64encode(b"\x01" * 64)}]
    )


def parse(data: bytes, *, fast: bool) -> tuple[str, Any]:
    """("ok", a comparable view of the result) or ("refused", error class name)."""
    original = envelope_module.loads_canonical
    if not fast:
        envelope_module.loads_canonical = lambda _data: None
    try:
        meta = Metadata.from_bytes(data, role=TARGETS)
    except TrustkitError as exc:
        return "refused", type(exc).__name__
    finally:
        envelope_module.loads_canonical = original
    return "ok", (
        meta.signed.to_dict(),
        [s.to_dict() for s in meta.signatures],
        meta.raw,
        meta.signed_bytes,
        meta.signed_dict,
    )


def assert_same(data: bytes) -> None:
    assert parse(data, fast=True) == parse(data, fast=False), data[:300]


# ---- the reported case


def test_tags_that_differ_only_in_case_parse_the_same_on_both_paths() -> None:
    """Docker tags are case-sensitive: V1 and v1 are two tags, as in notary's Go map."""
    entry = {"hashes": {"sha256": b64encode(b"\x11" * 32)}, "length": 10}
    canonical = signed_file(targets_document({"V1": entry, "v1": entry}))
    spaced = canonical.replace(b'"length":10', b'"length": 10')
    fast, strict = parse(canonical, fast=True), parse(spaced, fast=False)
    assert fast[0] == strict[0] == "ok"
    assert set(fast[1][0]["targets"]) == set(strict[1][0]["targets"]) == {"V1", "v1"}


def test_struct_fields_that_differ_only_in_case_are_refused_on_both_paths() -> None:
    """Go reads "Version" into the version field: the exact field set refuses it either way."""
    signed = targets_document({})
    signed["Version"] = 5
    for data in (signed_file(signed), signed_file(signed).replace(b'"version":1', b'"version": 1')):
        assert parse(data, fast=True) == parse(data, fast=False) == ("refused", "MetadataError")


# ---- properties


@PROPERTY
@given(st.dictionaries(tags, file_metas, max_size=6), st.integers(-1, 2**54))
def test_generated_targets_parse_the_same_on_both_paths(entries: dict[str, Any], version: int) -> None:
    assert_same(signed_file(targets_document(entries, version)))


@PROPERTY
@given(st.dictionaries(tags, file_metas, max_size=4), st.data())
@example(entries={"v1": {"hashes": {"sha256": b64encode(b"\0" * 32)}, "length": 1}}, data=None)
def test_mutated_targets_parse_the_same_on_both_paths(entries: dict[str, Any], data: st.DataObject | None) -> None:
    original = signed_file(targets_document(entries))
    mutants = [original]
    if data is not None:
        position = data.draw(st.integers(0, len(original)))
        insert = data.draw(
            st.sampled_from(
                [b" ", b"\n", rb"\u0041", b'"', b",", b"0", b"9" * 17, b"\xff", b"\xed\xa0\x80", "\ufeff".encode()]
            )
        )
        mutants += [
            original[:position] + insert + original[position:],
            original[:position] + original[position + 1 :],
            original.replace(
                b'"version":1',
                data.draw(
                    st.sampled_from(
                        [
                            b'"version":1,"version":2',
                            b'"version":1,"Version":2',
                            b'"version":1.0',
                            b'"version":true',
                            b'"version":12345678901234567890',
                            b'"version":-0',
                        ]
                    )
                ),
            ),
            original.upper() if data.draw(st.booleans()) else original.lower(),
        ]
    for mutant in mutants:
        assert_same(mutant)


@PROPERTY
@given(file_metas)
def test_filemeta_fast_is_none_or_the_strict_result(value: Any) -> None:
    fast = FileMeta.fast(value)
    try:
        strict: FileMeta | None = FileMeta.from_dict(json.loads(json.dumps(value)), "target")
    except TrustkitError:
        strict = None
    if fast is not None:
        assert strict is not None and fast == strict


@pytest.mark.parametrize(
    "value",
    [
        {"hashes": {"sha256": b64encode(b"\x01" * 32)}, "length": True},
        {"hashes": {"sha256": b64encode(b"\x01" * 31) + "A="}, "length": 1},
        {"hashes": {"sha256": b64encode(b"\x01" * 32), "sha512": "x"}, "length": 1},
        {"hashes": {}, "length": 1},
    ],
)
def test_filemeta_fast_declines_what_the_strict_path_must_judge(value: Any) -> None:
    assert FileMeta.fast(value) is None


# ---- the re-encoding the fast path proves canonical form with (orjson) is canonical_json

json_values = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-(2**53) + 1, 2**53 - 1),
        st.text(alphabet=st.characters(exclude_categories=["Cs"]), max_size=6),
    ),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.text(alphabet=st.characters(exclude_categories=["Cs"]), max_size=4), inner, max_size=4)
    ),
    max_leaves=12,
)


@PROPERTY
@given(st.dictionaries(st.text(max_size=4), json_values, max_size=4))
def test_a_canonical_file_takes_the_fast_path_with_canonical_json_as_its_message(signed: dict[str, Any]) -> None:
    """For any value without control characters, the fast path accepts exactly the file
    canonical_json would make and hands back canonical_json's bytes as the signed message; with
    them (which orjson escapes and Go writes raw) it declines, and the strict path decides."""
    message = canonical_json(signed)
    data = envelope_bytes(message, [{"keyid": "k", "method": "ecdsa", "sig": "c2ln"}])
    fast = loads_canonical(data)
    if any(ord(c) < 0x20 for c in message.decode()):
        assert fast is None
    else:
        assert fast is not None and fast[1] == message and fast[0]["signed"] == signed


@pytest.mark.parametrize(
    ("spelling", "why"),
    [
        (b'{"a":1.0}', "a float"),
        (b'{"a":9007199254740992}', "an integer beyond 2^53-1"),
        (b'{"a":-9007199254740992}', "an integer below -(2^53-1)"),
        (b'{"a":' + b"9" * 5000 + b"}", "an integer longer than Python converts"),
        (b'{"a":NaN}', "NaN"),
        (b'{"a":"\\ud800"}', "a lone surrogate"),
        (b'{"a":"\\n"}', "an escaped control character (Go writes it raw)"),
        (b'{"a":"\\u0041"}', "an escape Go does not write"),
        (b'{"a":1,"a":1}', "a duplicate key"),
        (b'{"b":1,"a":1}', "unsorted keys"),
        (b'{"a": 1}', "whitespace"),
        (b'{"a":-0}', "minus zero"),
        (b'{"a":"<"}', "a character Go writes HTML-escaped"),
    ],
)
def test_the_fast_path_declines_what_canonical_json_would_not_write(spelling: bytes, why: str) -> None:
    data = b'{"signed":' + spelling + b',"signatures":[]}'
    assert loads_canonical(data) is None, why


def test_the_fast_path_accepts_the_edge_values() -> None:
    signed = {"a": 2**53 - 1, "b": -(2**53) + 1, "c": '<\u2028&>\\"é\U0001f600\x7f', "d": [True, None, {}], "e": ""}
    data = envelope_bytes(canonical_json(signed), [])
    assert loads_canonical(data) == (json.loads(data), canonical_json(signed))


# ---- the targets map checked as a whole


@PROPERTY
@given(st.dictionaries(tags, file_metas, max_size=5), st.sampled_from([0, 1, 2]))
def test_the_whole_map_check_accepts_what_the_entry_checks_accept(entries: dict[str, Any], uniform: int) -> None:
    """_common_entries gives None or exactly the entries FileMeta.fast gives, all of them."""
    if uniform:  # mostly common-shape maps, else the check would mostly decline at once
        make = {
            1: lambda i: {"sha256": b64encode(bytes([i]) * 32)},
            2: lambda i: {
                "sha256": b64encode(bytes([i]) * 32),
                "sha512": b64encode(bytes([i]) * 64),
            },
        }[uniform]
        entries = {f"t{i}": {"hashes": make(i), "length": i} for i in range(3)} | entries
    whole = _common_entries(json.loads(json.dumps(entries)))
    each = {name: FileMeta.fast(json.loads(json.dumps(meta))) for name, meta in entries.items()}
    if whole is not None:
        assert whole == each
    elif entries and all(meta is not None for meta in each.values()):
        # declined although every entry is common: only a mix of the two shapes may do that
        assert len({len(meta.hashes) for meta in each.values() if meta}) == 2


@pytest.mark.parametrize(
    "bad",
    [
        {"hashes": {"sha256": "=" + "A" * 42 + "A"}, "length": 1},  # "=" at the front
        {"hashes": {"sha256": "A" * 43 + "-"}, "length": 1},  # not the standard alphabet
        {"hashes": {"sha256": "A" * 42 + "é="}, "length": 1},
        {"hashes": {"sha256": "A" * 44}, "length": 1},  # no padding: 33 bytes
        {"hashes": {"sha256": b64encode(b"\1" * 32)}, "length": -1},
        {"hashes": {"sha256": b64encode(b"\1" * 32)}, "length": True},
        {"hashes": {"sha256": b64encode(b"\1" * 32)}, "length": "1"},
        {"hashes": {"sha256": b64encode(b"\1" * 32)}, "Length": 1},
        {"hashes": {"sha512": b64encode(b"\1" * 32)}, "length": 1},
        {"hashes": {"sha256": b64encode(b"\1" * 32), "sha512": "A" * 86 + "=="[:1] + "A"}, "length": 1},
        {"hashes": [], "length": 1},
        [],
    ],
)
def test_one_bad_entry_among_ten_thousand_sends_the_map_to_the_entry_checks(bad: Any) -> None:
    entries = {f"tag{i}": {"hashes": {"sha256": b64encode(i.to_bytes(32, "big"))}, "length": i} for i in range(10_000)}
    assert _common_entries(entries) is not None
    entries["tag5000"] = bad
    assert _common_entries(entries) is None
    data = signed_file(targets_document(entries))
    assert parse(data, fast=True) == parse(data, fast=False) == ("refused", "MetadataError")


def test_an_entry_of_another_valid_shape_is_read_by_the_entry_checks() -> None:
    entries = {f"tag{i}": {"hashes": {"sha256": b64encode(i.to_bytes(32, "big"))}, "length": i} for i in range(100)}
    entries["tag50"] = {"custom": {"a": [1]}, "hashes": {"md5": b64encode(b"\1" * 16)}, "length": 1}
    assert _common_entries(entries) is None
    data = signed_file(targets_document(entries))
    fast = parse(data, fast=True)
    assert fast == parse(data, fast=False) and fast[0] == "ok"
