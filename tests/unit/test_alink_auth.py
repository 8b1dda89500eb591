"""Alink MQTT CONNECT signing: parse, sign, verify, make_credentials."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from qiantang.domain.errors import InvalidInput
from qiantang.protocols.alink_auth import (
    AlinkConnect,
    make_credentials,
    parse_connect,
    sign,
    verify,
)

VECTOR_SECRET = "oLyaKqVxtRvjH284LdhqVgVUx1UPy6zq"
VECTOR_PASSWORD = "b2488041f64f425016b467ee1c94959ebd592ad1"
VECTOR_CONTENT = (
    "clientIdSN1928339deviceNamelight1983432productKeya14Xib5kdYdtimestamp1539421321846"
)


def _hex(method: str, secret: str, content: str) -> str:
    digest = {"hmacmd5": hashlib.md5, "hmacsha1": hashlib.sha1, "hmacsha256": hashlib.sha256}
    return hmac.new(secret.encode(), content.encode(), digest[method]).hexdigest()


def test_reference_vector_hmacsha1() -> None:
    connect = parse_connect(
        "SN1928339|securemode=3,signmethod=hmacsha1,timestamp=1539421321846|",
        "light1983432&a14Xib5kdYd",
    )
    assert _hex("hmacsha1", VECTOR_SECRET, VECTOR_CONTENT) == VECTOR_PASSWORD
    assert sign(connect, VECTOR_SECRET) == VECTOR_PASSWORD
    assert verify(connect, VECTOR_SECRET, VECTOR_PASSWORD)
    assert verify(connect, VECTOR_SECRET, VECTOR_PASSWORD.upper())
    assert not verify(connect, VECTOR_SECRET + "x", VECTOR_PASSWORD)


def test_docs_example_password() -> None:
    # Alibaba's worked example prints the hex in upper case with the last four digits masked.
    connect = parse_connect("12345|securemode=3,signmethod=hmacsha1,timestamp=789|", "device&pk")
    assert sign(connect, "secret").upper().startswith("FAFD82A3D602B37FB0FA8B7892F24A477F85")


def test_parse_fields() -> None:
    connect = parse_connect(
        "SN1928339|securemode=3,signmethod=hmacsha1,timestamp=1539421321846|",
        "light1983432&a14Xib5kdYd",
    )
    assert connect == AlinkConnect(
        client_id="SN1928339",
        product_key="a14Xib5kdYd",
        device_name="light1983432",
        sign_method="hmacsha1",
        secure_mode=3,
        timestamp=1539421321846,
        params={"securemode": "3", "signmethod": "hmacsha1", "timestamp": "1539421321846"},
    )


@pytest.mark.parametrize("method", ["hmacmd5", "hmacsha1", "hmacsha256"])
@pytest.mark.parametrize("timestamp", [None, 1700000000123])
def test_sign_methods_with_and_without_timestamp(method: str, timestamp: int | None) -> None:
    extra = "" if timestamp is None else f",timestamp={timestamp}"
    connect = parse_connect(f"c-1|securemode=2,signmethod={method}{extra}|", "dev1&pk1")
    content = "clientIdc-1deviceNamedev1productKeypk1"
    if timestamp is not None:
        content += f"timestamp{timestamp}"
    expected = _hex(method, "s3cret", content)
    assert sign(connect, "s3cret") == expected
    assert verify(connect, "s3cret", expected)
    assert connect.secure_mode == 2
    assert connect.timestamp == timestamp


def test_signmethod_defaults_to_hmacmd5_and_is_case_insensitive() -> None:
    assert parse_connect("c|securemode=3|", "d&p").sign_method == "hmacmd5"
    assert parse_connect("c|securemode=3,signmethod=HmacSHA256|", "d&p").sign_method == (
        "hmacsha256"
    )


def test_timestamp_is_signed() -> None:
    first = parse_connect("c|securemode=3,signmethod=hmacsha256,timestamp=1|", "d&p")
    second = parse_connect("c|securemode=3,signmethod=hmacsha256,timestamp=2|", "d&p")
    assert not verify(second, "k", sign(first, "k"))


def test_password_signed_without_client_id_is_accepted() -> None:
    connect = parse_connect("c9|securemode=3,signmethod=hmacsha1,timestamp=5|", "d&p")
    without_client = _hex("hmacsha1", "k", "deviceNamedproductKeyptimestamp5")
    assert verify(connect, "k", without_client)


@pytest.mark.parametrize("password", ["", "zz", "é" * 40, VECTOR_PASSWORD[:-1]])
def test_verify_rejects_garbage_passwords(password: str) -> None:
    connect = parse_connect("c|securemode=3,signmethod=hmacsha1|", "d&p")
    assert verify(connect, "k", password) is False


def test_sdk_extension_params_are_tolerated() -> None:
    connect = parse_connect(
        "pk.dev|timestamp=2524608000000,_v=sdk-c-3.0.1,secureMode=2,"
        "signmethod=hmacsha256,lan=C,_ss=1,gw=0,ext=0,|",
        "dev&pk",
    )
    assert connect.secure_mode == 2
    assert connect.timestamp == 2524608000000
    assert connect.params["_v"] == "sdk-c-3.0.1"
    assert connect.params["gw"] == "0"


def test_make_credentials_round_trip() -> None:
    client_id, username, password = make_credentials(
        "a1b2c3", "CNC-0042", "topsecret", timestamp=1700000000000, sign_method="hmacsha1"
    )
    assert client_id == "a1b2c3.CNC-0042|securemode=3,signmethod=hmacsha1,timestamp=1700000000000|"
    assert username == "CNC-0042&a1b2c3"
    connect = parse_connect(client_id, username)
    assert verify(connect, "topsecret", password)
    assert not verify(connect, "othersecret", password)


def test_make_credentials_rejects_bad_names() -> None:
    with pytest.raises(InvalidInput):
        make_credentials("pk/1", "dev", "s")


@pytest.mark.parametrize(
    ("client_id", "username", "field", "rule"),
    [
        ("plain-client-id", "d&p", "client_id", "format"),
        ("c|securemode=3,signmethod=hmacsha1", "d&p", "client_id", "format"),
        ("c|securemode=3|extra|", "d&p", "client_id", "format"),
        ("|securemode=3|", "d&p", "client_id", "format"),
        ("has space|securemode=3|", "d&p", "client_id", "format"),
        ("c" * 65 + "|securemode=3|", "d&p", "client_id", "format"),
        ("c|signmethod=hmacsha1|", "d&p", "client_id.securemode", "required"),
        ("c|securemode=-2|", "d&p", "client_id.securemode", "unsupported"),
        ("c|securemode=two|", "d&p", "client_id.securemode", "format"),
        ("c|securemode=3,signmethod=sha256|", "d&p", "client_id.signmethod", "unsupported"),
        ("c|securemode=3,timestamp=12ab|", "d&p", "client_id.timestamp", "format"),
        ("c|securemode=3,timestamp=-5|", "d&p", "client_id.timestamp", "format"),
        ("c|securemode=3,timestamp=99999999999999999999|", "d&p", "client_id.timestamp", "format"),
        ("c|securemode=3,securemode=2|", "d&p", "client_id.securemode", "duplicate"),
        ("c|securemode=3,noequals|", "d&p", "client_id", "format"),
        ("c|securemode=2,authtype=id2|", "d&p", "client_id.authtype", "unsupported"),
        ("c|securemode=3|", "no-ampersand", "username", "format"),
        ("c|securemode=3|", "a&b&c", "username", "format"),
        ("c|securemode=3|", "&pk", "username.device_name", "format"),
        ("c|securemode=3|", "dev&", "username.product_key", "format"),
        ("c|securemode=3|", "dev/x&pk", "username.device_name", "format"),
    ],
)
def test_malformed_connect(client_id: str, username: str, field: str, rule: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_connect(client_id, username)
    assert (field, rule) in {(e.field, e.rule) for e in caught.value.errors}


def test_all_errors_are_reported_together() -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_connect("c|securemode=9,signmethod=md4|", "nope")
    fields = {e.field for e in caught.value.errors}
    assert fields == {"client_id.securemode", "client_id.signmethod", "username"}
