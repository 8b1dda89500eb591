"""Shadow request decoding: rules and fuzzing (only ShadowError may escape)."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qiantang.protocols.alink_shadow import CLEAR, ShadowError, decode_shadow_request


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b"[1]", 400),
        (b"{", 400),
        (b'{"state": {}}', 401),
        (b'{"method": "boom"}', 406),
        (b'{"method": "update", "version": 2}', 402),
        (b'{"method": "update", "state": {}, "version": 2}', 404),
        (b'{"method": "update", "state": {"reported": 5}, "version": 2}', 400),
        (b'{"method": "update", "state": {"reported": {}}, "version": "2"}', 403),
        (b'{"method": "delete", "state": {}, "version": 2}', 404),
    ],
)
def test_refusals_carry_alibaba_codes(body: bytes, code: int) -> None:
    with pytest.raises(ShadowError) as exc:
        decode_shadow_request(body)
    assert exc.value.code == code


def test_too_many_reported_keys() -> None:
    body = {
        "method": "update",
        "state": {"reported": {f"k{i}": i for i in range(129)}},
        "version": 1,
    }
    with pytest.raises(ShadowError) as exc:
        decode_shadow_request(json.dumps(body).encode())
    assert exc.value.code == 408


def test_valid_requests() -> None:
    get = decode_shadow_request(b'{"method": "get"}')
    assert get.method == "get" and get.version is None
    update = decode_shadow_request(
        b'{"method": "update", "state": {"reported": {"a": 1}, "desired": "null"}, "version": 4}'
    )
    assert update.reported == {"a": 1} and update.desired == CLEAR and update.version == 4
    delete = decode_shadow_request(
        b'{"method": "delete", "state": {"reported": "null"}, "version": 5}'
    )
    assert delete.reported == CLEAR


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
    lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=8), c, max_size=3),
    max_leaves=12,
)
shadow_like = st.fixed_dictionaries(
    {},
    optional={
        "method": st.sampled_from(["update", "get", "delete", "x"]) | json_values,
        "state": st.fixed_dictionaries(
            {}, optional={"reported": json_values, "desired": json_values}
        )
        | json_values,
        "version": st.integers() | json_values,
    },
)


@settings(max_examples=10_000, deadline=None)
@given(st.binary(max_size=200) | shadow_like.map(lambda d: json.dumps(d, allow_nan=True).encode()))
def test_fuzz_only_shadow_errors_escape(payload: bytes) -> None:
    try:
        decode_shadow_request(payload)
    except ShadowError:
        pass
