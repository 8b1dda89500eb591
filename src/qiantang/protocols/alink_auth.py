"""Alink MQTT CONNECT signing: parse and verify the clientId / username / password triple.

Per Alibaba Cloud IoT Platform ("Establish MQTT connections", "MQTT connection signature"):

- mqttClientId ``{clientId}|securemode=3,signmethod=hmacsha256[,timestamp=...]|``: extension
  parameters between the bars, comma separated, in any order. ``securemode`` 2 is direct TLS,
  3 direct TCP. ``signmethod`` is ``hmacmd5`` (the default when absent), ``hmacsha1`` or
  ``hmacsha256``. Device SDKs add others (``_v``, ``lan``, ``gw``, ``ext``, ``_ss``, ``pid``,
  ``mid``, ...): they are kept in `AlinkConnect.params` and otherwise ignored. Names are matched
  case-insensitively (some SDKs send ``secureMode``); empty items (a trailing comma) are skipped.
- mqttUsername ``{deviceName}&{productKey}``.
- mqttPassword: hex HMAC, keyed by the device secret, of the parameters clientId, deviceName,
  productKey and timestamp (timestamp only when given) sorted by name, each name followed by
  its value: ``clientId{c}deviceName{d}productKey{p}timestamp{t}``.

Not supported, answered with `InvalidInput` rule ``unsupported``: other secure modes (-2 is
MQTT dynamic registration), ``signmethod=sha256``, and ``authtype=...`` flows (dynamic
registration, ID2, device tokens), which sign different content.

The docs call clientId optional in the signed content, so `verify` also accepts a password
computed without it. The timestamp is not checked for freshness here (Alibaba does not
require one; SDKs ship fixed timestamps); a broker that wants replay limits can read it.
"""

from __future__ import annotations

import hmac
import re
from dataclasses import dataclass, field
from typing import Final

from qiantang.domain.errors import FieldError, InvalidInput

__all__ = ["SIGN_METHODS", "AlinkConnect", "make_credentials", "parse_connect", "sign", "verify"]

SIGN_METHODS: Final[dict[str, str]] = {
    "hmacmd5": "md5",
    "hmacsha1": "sha1",
    "hmacsha256": "sha256",
}
_SECURE_MODES: Final = frozenset((2, 3))
_CLIENT_ID_RE = re.compile(r"[!-{}~]{1,64}")  # printable ASCII without space and "|"
_NAME_RE = re.compile(r"[A-Za-z0-9_\-@.:]{1,64}")
_PARAM_NAME_RE = re.compile(r"[A-Za-z0-9_]{1,32}")
_TIMESTAMP_RE = re.compile(r"0|[1-9][0-9]{0,18}")
_SMALL_INT_RE = re.compile(r"-?[0-9]{1,3}")
_INT64_MAX = 2**63 - 1


@dataclass(frozen=True, slots=True)
class AlinkConnect:
    """A parsed CONNECT: `client_id` is the part before the first ``|``; `params` holds every
    extension parameter as sent (original names), including securemode and signmethod."""

    client_id: str
    product_key: str
    device_name: str
    sign_method: str
    secure_mode: int
    timestamp: int | None
    params: dict[str, str] = field(default_factory=dict)


def _split_params(raw: str, errors: list[FieldError]) -> dict[str, str]:
    params: dict[str, str] = {}
    seen: set[str] = set()
    for item in raw.split(","):
        if not item:
            continue
        name, eq, value = item.partition("=")
        if not eq or _PARAM_NAME_RE.fullmatch(name) is None:
            errors.append(FieldError("client_id", "format", f"bad parameter {item[:40]!r}"))
        elif name.lower() in seen:
            errors.append(FieldError(f"client_id.{name}", "duplicate", "is given twice"))
        else:
            seen.add(name.lower())
            params[name] = value
    return params


def _param(params: dict[str, str], name: str) -> str | None:
    for key, value in params.items():
        if key.lower() == name:
            return value
    return None


def _secure_mode(params: dict[str, str], errors: list[FieldError]) -> int:
    raw = _param(params, "securemode")
    if raw is None:
        errors.append(FieldError("client_id.securemode", "required", "is required"))
        return 0
    number = _SMALL_INT_RE.fullmatch(raw) is not None
    if number and int(raw) in _SECURE_MODES:
        return int(raw)
    rule = "unsupported" if number else "format"
    errors.append(FieldError("client_id.securemode", rule, "must be 2 (TLS) or 3 (TCP)"))
    return 0


def _sign_method(params: dict[str, str], errors: list[FieldError]) -> str:
    raw = _param(params, "signmethod")
    if raw is None:
        return "hmacmd5"
    method = raw.lower()
    if method not in SIGN_METHODS:
        message = "must be hmacmd5, hmacsha1 or hmacsha256"
        errors.append(FieldError("client_id.signmethod", "unsupported", message))
    return method


def _timestamp(params: dict[str, str], errors: list[FieldError]) -> int | None:
    raw = _param(params, "timestamp")
    if raw is None:
        return None
    if _TIMESTAMP_RE.fullmatch(raw) is None or int(raw) > _INT64_MAX:
        message = "must be milliseconds as a plain non-negative integer"
        errors.append(FieldError("client_id.timestamp", "format", message))
        return None
    return int(raw)


def _client_part(mqtt_client_id: str, errors: list[FieldError]) -> tuple[str, dict[str, str]]:
    parts = mqtt_client_id.split("|")
    if len(parts) != 3 or parts[2] != "":
        message = "must be '{clientId}|securemode=...,signmethod=...|'"
        errors.append(FieldError("client_id", "format", message))
        return "", {}
    if _CLIENT_ID_RE.fullmatch(parts[0]) is None:
        message = "clientId must be 1-64 printable ASCII characters without spaces"
        errors.append(FieldError("client_id", "format", message))
    return parts[0], _split_params(parts[1], errors)


def _username(username: str, errors: list[FieldError]) -> tuple[str, str]:
    device_name, amp, product_key = username.partition("&")
    if not amp or "&" in product_key:
        errors.append(FieldError("username", "format", "must be '{deviceName}&{productKey}'"))
        return "", ""
    for name, value in (("device_name", device_name), ("product_key", product_key)):
        if _NAME_RE.fullmatch(value) is None:
            message = "must be 1-64 characters of A-Za-z0-9_-@.:"
            errors.append(FieldError(f"username.{name}", "format", message))
    return device_name, product_key


def parse_connect(client_id: str, username: str) -> AlinkConnect:
    """Parse the MQTT clientId and username of an Alink CONNECT.

    Raises `InvalidInput` listing every broken rule (fields ``client_id``,
    ``client_id.securemode``, ``client_id.signmethod``, ``client_id.timestamp``,
    ``client_id.authtype``, ``username``, ``username.device_name``, ``username.product_key``).
    """
    errors: list[FieldError] = []
    cid, params = _client_part(client_id, errors)
    device_name, product_key = _username(username, errors)
    secure_mode = _secure_mode(params, errors) if cid else 0
    sign_method = _sign_method(params, errors)
    timestamp = _timestamp(params, errors)
    if _param(params, "authtype") is not None:
        message = "authtype flows (registration, ID2, tokens) are not supported"
        errors.append(FieldError("client_id.authtype", "unsupported", message))
    if errors:
        raise InvalidInput(errors)
    return AlinkConnect(cid, product_key, device_name, sign_method, secure_mode, timestamp, params)


def _content(connect: AlinkConnect, with_client_id: bool = True) -> str:
    content = f"deviceName{connect.device_name}productKey{connect.product_key}"
    if with_client_id:
        content = f"clientId{connect.client_id}{content}"
    if connect.timestamp is not None:
        content += f"timestamp{connect.timestamp}"
    return content


def _hmac(connect: AlinkConnect, device_secret: str, with_client_id: bool) -> str:
    digest = SIGN_METHODS.get(connect.sign_method)
    if digest is None:
        raise InvalidInput.of("sign_method", "unsupported", f"{connect.sign_method!r}")
    content = _content(connect, with_client_id).encode()
    return hmac.new(device_secret.encode(), content, digest).hexdigest()


def sign(connect: AlinkConnect, device_secret: str) -> str:
    """The password a device sends: lowercase hex HMAC of the sorted parameters."""
    return _hmac(connect, device_secret, True)


def verify(connect: AlinkConnect, device_secret: str, password: str) -> bool:
    """True when `password` (hex, any case) is the signature of `connect`, in constant time."""
    if not password.isascii():
        return False
    given = password.lower().encode()
    full = hmac.compare_digest(_hmac(connect, device_secret, True).encode(), given)
    short = hmac.compare_digest(_hmac(connect, device_secret, False).encode(), given)
    return full or short


def make_credentials(
    product_key: str,
    device_name: str,
    device_secret: str,
    client_id: str | None = None,
    sign_method: str = "hmacsha256",
    timestamp: int | None = None,
    secure_mode: int = 3,
) -> tuple[str, str, str]:
    """The ``(mqtt_client_id, username, password)`` a device sends; for SDKs, tests, simulators.

    `client_id` defaults to ``{product_key}.{device_name}`` as Alibaba's SDKs do. The result
    goes through `parse_connect`, so invalid inputs raise `InvalidInput`.
    """
    cid = client_id if client_id is not None else f"{product_key}.{device_name}"
    extra = "" if timestamp is None else f",timestamp={timestamp}"
    mqtt_client_id = f"{cid}|securemode={secure_mode},signmethod={sign_method}{extra}|"
    username = f"{device_name}&{product_key}"
    connect = parse_connect(mqtt_client_id, username)
    return mqtt_client_id, username, sign(connect, device_secret)
