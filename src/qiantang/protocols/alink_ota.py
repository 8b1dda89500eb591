"""Alink OTA messages: the upgrade push (``/ota/device/upgrade/{pk}/{dn}``, down), progress
reports (``/ota/device/progress/{pk}/{dn}``: step 1-100, or -1 upgrade failed, -2 download
failed, -3 verification failed, -4 flashing failed) and version reports
(``/ota/device/inform/{pk}/{dn}``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

import msgspec

from qiantang.protocols.alink import decode_envelope
from qiantang.protocols.alink_topics import AlinkCode, AlinkError

__all__ = [
    "FAILURE_STEPS",
    "OtaInform",
    "OtaProgress",
    "decode_inform",
    "decode_progress",
    "encode_upgrade",
]

FAILURE_STEPS: Final = {
    -1: "upgrade failed",
    -2: "download failed",
    -3: "verification failed",
    -4: "flashing failed",
}
_ENCODER = msgspec.json.Encoder()


@dataclass(frozen=True, slots=True)
class OtaProgress:
    """A progress report."""

    id: str
    step: int
    desc: str
    module: str


@dataclass(frozen=True, slots=True)
class OtaInform:
    """A version report."""

    id: str
    version: str
    module: str


def _bad(field: str, rule: str, message: str, rid: str) -> AlinkError:
    return AlinkError(AlinkCode.BAD_PARAMS, field, rule, message, rid)


def _params(payload: bytes) -> tuple[str, dict[str, Any]]:
    rid, _, params = decode_envelope(payload)
    if not isinstance(params, dict):
        raise _bad("params", "type", "must be an object", rid)
    return rid, params


def _module(params: dict[str, Any], rid: str) -> str:
    module = params.get("module", "default")
    if not isinstance(module, str) or not 0 < len(module) <= 64:
        raise _bad("params.module", "type", "must be a string of 1-64", rid)
    return module


def decode_progress(payload: bytes) -> OtaProgress:
    """Decode a progress report; `step` may come as a string, as Alibaba's SDKs send it."""
    rid, params = _params(payload)
    raw = params.get("step")
    try:
        step = int(raw) if isinstance(raw, (str, int)) and not isinstance(raw, bool) else None
    except ValueError:
        step = None
    if step is None or not (-4 <= step <= 100) or step == 0:
        raise _bad("params.step", "range", "is 1..100, or -1..-4 for a failure", rid)
    desc = params.get("desc", "")
    if not isinstance(desc, str):
        raise _bad("params.desc", "type", "must be a string", rid)
    return OtaProgress(rid, step, desc[:256], _module(params, rid))


def decode_inform(payload: bytes) -> OtaInform:
    """Decode a version report."""
    rid, params = _params(payload)
    version = params.get("version")
    if not isinstance(version, str) or not 0 < len(version) <= 64:
        raise _bad("params.version", "type", "must be a string of 1-64", rid)
    return OtaInform(rid, version, _module(params, rid))


def encode_upgrade(
    rid: str, *, size: int, version: str, url: str, sha256: str, md5: str, module: str
) -> bytes:
    """The upgrade push, with the download URL and checksums."""
    data = {
        "size": size,
        "version": version,
        "isDiff": 0,
        "url": url,
        "sign": sha256,
        "signMethod": "SHA256",
        "md5": md5,
        "module": module,
        "extData": {},
    }
    return _ENCODER.encode({"code": "1000", "data": data, "id": rid, "message": "success"})
