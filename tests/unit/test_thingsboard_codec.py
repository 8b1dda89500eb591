"""ThingsBoard payload decoding: the four telemetry shapes, both gateway attribute-request
forms, and fuzzing (only ThingsBoardError may escape)."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qiantang.protocols import thingsboard as tb

NOW = 1_700_000_000_000


@pytest.mark.parametrize(
    ("body", "rows"),
    [
        ({"a": 1}, [(NOW, {"a": 1})]),
        ([{"a": 1}, {"b": 2}], [(NOW, {"a": 1}), (NOW, {"b": 2})]),
        ({"ts": 5, "values": {"a": 1}}, [(5, {"a": 1})]),
        (
            [{"ts": 5, "values": {"a": 1}}, {"ts": 6, "values": {"b": "x"}}],
            [(5, {"a": 1}), (6, {"b": "x"})],
        ),
    ],
)
def test_four_telemetry_shapes(body: object, rows: list[tuple[int, dict[str, object]]]) -> None:
    assert tb.decode_telemetry(json.dumps(body).encode(), NOW) == rows


def test_gateway_attribute_request_forms() -> None:
    old = tb.decode_gateway_attribute_request(
        b'{"id": 1, "device": "A", "client": true, "keys": ["x", "y"]}'
    )
    assert old.client_keys == ["x", "y"] and old.shared_keys == []
    shared = tb.decode_gateway_attribute_request(
        b'{"id": 2, "device": "A", "client": false, "key": "s"}'
    )
    assert shared.shared_keys == ["s"] and shared.client_keys == []
    new = tb.decode_gateway_attribute_request(
        b'{"id": 3, "device": "A", "client": ["x"], "shared": ["s"]}'
    )
    assert new.client_keys == ["x"] and new.shared_keys == ["s"]


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        (b"{", "payload"),
        (b'{"ts": "5", "values": {"a": 1}}', "payload.ts"),
        (b'{"a": NaN}', "payload"),  # not JSON
        (b'{"": 1}', "payload."),
        (b"5", "payload"),
        (b'[{"a": 1}, 7]', "payload[1]"),
    ],
)
def test_refusals_name_the_field(payload: bytes, field: str) -> None:
    with pytest.raises(tb.ThingsBoardError) as exc:
        tb.decode_telemetry(payload, NOW)
    assert exc.value.field == field


DECODERS = [
    lambda p: tb.decode_telemetry(p, NOW),
    tb.decode_attributes,
    tb.decode_attribute_request,
    tb.decode_rpc,
    tb.decode_gateway_device,
    lambda p: tb.decode_gateway_telemetry(p, NOW),
    tb.decode_gateway_attributes,
    tb.decode_gateway_attribute_request,
    tb.decode_gateway_rpc_reply,
]
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda c: (
        st.lists(c, max_size=3)
        | st.dictionaries(
            st.sampled_from(
                [
                    "ts",
                    "values",
                    "device",
                    "id",
                    "client",
                    "shared",
                    "key",
                    "keys",
                    "method",
                    "params",
                    "data",
                    "clientKeys",
                ]
            )
            | st.text(max_size=5),
            c,
            max_size=4,
        )
    ),
    max_leaves=12,
)


@settings(max_examples=10_000, deadline=None)
@given(
    index=st.integers(0, len(DECODERS) - 1),
    payload=st.binary(max_size=80)
    | json_values.map(lambda v: json.dumps(v, allow_nan=True).encode()),
)
def test_fuzz_only_thingsboard_errors_escape(index: int, payload: bytes) -> None:
    try:
        DECODERS[index](payload)
    except tb.ThingsBoardError:
        pass
