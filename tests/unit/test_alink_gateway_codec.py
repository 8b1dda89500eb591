"""Gateway message decoding: signed sub-device entries, device lists, and fuzzing."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qiantang.protocols.alink_gateway import (
    decode_device_list,
    decode_login,
    decode_logout,
    decode_sub_device_auths,
    make_sub_device_auth,
    verify_sub_device,
)
from qiantang.protocols.alink_topics import AlinkError

DECODERS = [decode_sub_device_auths, decode_login, decode_device_list, decode_logout]


def envelope(params: object) -> bytes:
    return json.dumps({"id": "1", "version": "1.0", "params": params}).encode()


@pytest.mark.parametrize("method", ["hmacSha1", "hmacSha256", "hmacMd5", "HMACSHA256"])
def test_signed_entries_verify_with_the_right_secret_only(method: str) -> None:
    entry = make_sub_device_auth("a1Sub", "dev-1", "s" * 32, "1700000000000", sign_method=method)
    _, _, auths = decode_sub_device_auths(envelope([entry]))
    assert verify_sub_device(auths[0], "s" * 32)
    assert not verify_sub_device(auths[0], "t" * 32)
    _, _, one = decode_login(envelope({k: v for k, v in entry.items() if k != "signmethod"}))
    assert verify_sub_device(one, "s" * 32)


def test_batch_login_and_lists() -> None:
    entry = make_sub_device_auth("a1Sub", "dev-1", "s" * 32, "1")
    assert len(decode_sub_device_auths(envelope({"deviceList": [entry, entry]}))[2]) == 2
    assert decode_device_list(envelope([{"productKey": "a1Sub", "deviceName": "dev-1"}]))[2] == [
        ("a1Sub", "dev-1")
    ]
    assert decode_device_list(envelope({}))[2] == []
    assert decode_logout(envelope({"productKey": "a1Sub", "deviceName": "dev-1"}))[2] == (
        "a1Sub",
        "dev-1",
    )


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ([], "params"),
        ([{"productKey": "a"}], "params[0].deviceName"),
        (
            [
                {
                    "productKey": "a",
                    "deviceName": "b",
                    "clientId": "c",
                    "timestamp": "1",
                    "signmethod": "rsa",
                    "sign": "x",
                }
            ],
            "params[0].signmethod",
        ),
        ([{"productKey": "a b", "deviceName": "b"}], "params[0]"),
        ([{"productKey": "a", "deviceName": "b"}] * 51, "params"),
    ],
)
def test_refusals_name_the_field(params: object, field: str) -> None:
    decoder = decode_device_list if field == "params[0]" else decode_sub_device_auths
    with pytest.raises(AlinkError) as exc:
        decoder(envelope(params))
    assert exc.value.code == 460 and exc.value.field == field


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12),
    lambda c: (
        st.lists(c, max_size=3)
        | st.dictionaries(
            st.sampled_from(
                [
                    "productKey",
                    "deviceName",
                    "clientId",
                    "timestamp",
                    "sign",
                    "signmethod",
                    "signMethod",
                    "deviceList",
                    "x",
                ]
            )
            | st.text(max_size=6),
            c,
            max_size=6,
        )
    ),
    max_leaves=15,
)


@settings(max_examples=10_000, deadline=None)
@given(
    decoder=st.sampled_from(DECODERS),
    payload=st.binary(max_size=120)
    | json_values.map(lambda p: json.dumps({"id": "1", "params": p}).encode()),
)
def test_fuzz_only_alink_errors_escape(decoder: object, payload: bytes) -> None:
    try:
        decoder(payload)  # type: ignore[operator]
    except AlinkError:
        pass
