"""OTA report decoding: rules and fuzzing (only AlinkError may escape)."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qiantang.protocols.alink_ota import decode_inform, decode_progress, encode_upgrade
from qiantang.protocols.alink_topics import AlinkError


def body(params: object) -> bytes:
    return json.dumps({"id": "7", "params": params}).encode()


def test_progress_and_inform() -> None:
    assert decode_progress(body({"step": "95", "desc": "x"})).step == 95
    assert decode_progress(body({"step": -2, "module": "MCU"})).module == "MCU"
    assert decode_inform(body({"version": "1.0.1"})).module == "default"
    pushed = json.loads(
        encode_upgrade("1", size=3, version="v", url="u", sha256="s", md5="m", module="default")
    )
    assert pushed["code"] == "1000" and pushed["data"]["signMethod"] == "SHA256"


@pytest.mark.parametrize("step", [0, 101, -5, "x", True, None, 1.5])
def test_bad_steps(step: object) -> None:
    with pytest.raises(AlinkError) as exc:
        decode_progress(body({"step": step}))
    assert exc.value.field == "params.step"


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
    lambda c: (
        st.lists(c, max_size=3)
        | st.dictionaries(
            st.sampled_from(["step", "desc", "module", "version"]) | st.text(max_size=5),
            c,
            max_size=4,
        )
    ),
    max_leaves=10,
)


@settings(max_examples=10_000, deadline=None)
@given(payload=st.binary(max_size=100) | json_values.map(body))
def test_fuzz_only_alink_errors_escape(payload: bytes) -> None:
    for decoder in (decode_progress, decode_inform):
        try:
            decoder(payload)
        except AlinkError:
            pass
