"""``trustkit.reference.tag_sort_key``: natural order for tag and signer names that no signed
name can break (``int()`` refuses more than 4,300 digits)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from trustkit.reference import tag_sort_key

NAMES = st.text(alphabet=st.sampled_from("0123456789.-_av²٣\U0001f600"), max_size=12)


def test_numbers_sort_by_value_and_text_by_code_point():
    names = ["v10", "latest", "²", "1.10.0", "v2", "10", "", "a", "9", "1.9.1"]
    assert sorted(names, key=tag_sort_key) == ["", "1.9.1", "1.10.0", "9", "10", "a", "latest", "v2", "v10", "²"]


def test_leading_zeros_compare_by_value_and_still_keep_names_apart():
    assert sorted(["v10", "v010", "v9", "v01", "v1", "v0", "v00"], key=tag_sort_key) == [
        "v0",
        "v00",
        "v01",
        "v1",
        "v9",
        "v010",
        "v10",
    ]


def test_digit_runs_longer_than_int_accepts():
    huge = "1" * 5000
    names = [f"v{huge}", "v9", f"v{'9' * 4999}", f"v{huge}0", f"v0{huge}"]
    assert sorted(names, key=tag_sort_key) == ["v9", f"v{'9' * 4999}", f"v0{huge}", f"v{huge}", f"v{huge}0"]
    assert tag_sort_key("7" * 1_000_000)  # a megabyte of digits: no limit, no error


@given(st.text(), st.text())
def test_any_two_strings_compare_without_error_and_only_equal_names_tie(a, b):
    ka, kb = tag_sort_key(a), tag_sort_key(b)
    assert (ka < kb) + (ka == kb) + (ka > kb) == 1
    assert (ka == kb) == (a == b)


@given(st.integers(min_value=0, max_value=10**60), st.integers(min_value=0, max_value=10**60), NAMES)
def test_digit_runs_order_like_their_values(x, y, prefix):
    if prefix and prefix[-1].isascii() and prefix[-1].isdigit():
        prefix += "-"
    if x != y:
        assert (tag_sort_key(f"{prefix}{x}") < tag_sort_key(f"{prefix}{y}")) == (x < y)


@given(NAMES, NAMES, NAMES)
def test_the_order_is_transitive(a, b, c):
    ka, kb, kc = sorted(map(tag_sort_key, (a, b, c)))
    assert ka <= kb <= kc and ka <= kc
