"""InfluxDB line protocol decoder."""

from __future__ import annotations

import pytest

from qiantang.domain.errors import InvalidInput
from qiantang.protocols.line_protocol import LinePoint, decode_lines

NOW = 1_700_000_000_000


def _one(line: str, precision: str = "ns") -> LinePoint:
    batch = decode_lines(line, precision, now_ms=NOW)  # type: ignore[arg-type]
    assert batch.errors == []
    assert len(batch.points) == 1
    return batch.points[0]


def _rule(line: str) -> tuple[str, str]:
    batch = decode_lines(line, now_ms=NOW)
    assert batch.points == []
    assert len(batch.errors) == 1
    number, error = batch.errors[0]
    assert number == 1
    return error.field, error.rule


def test_docs_example() -> None:
    point = _one('myMeasurement,tag1=value1,tag2=value2 fieldKey="fieldValue" 1556813561098000000')
    assert point == LinePoint(
        "myMeasurement",
        {"tag1": "value1", "tag2": "value2"},
        {"fieldKey": "fieldValue"},
        1556813561098,
        1,
    )


def test_field_types() -> None:
    point = _one(
        "m f=1,g=-1.5,h=1e3,i=-.5E-2,j=12i,k=-9223372036854775808i,"
        'u=18446744073709551615u,s="x",e="",t=t,T=TRUE,f2=False,ff=f 0'
    )
    assert point.fields == {
        "f": 1.0,
        "g": -1.5,
        "h": 1000.0,
        "i": -0.005,
        "j": 12,
        "k": -9223372036854775808,
        "u": 18446744073709551615,
        "s": "x",
        "e": "",
        "t": True,
        "T": True,
        "f2": False,
        "ff": False,
    }
    assert type(point.fields["f"]) is float
    assert type(point.fields["j"]) is int


@pytest.mark.parametrize("word", ["t", "T", "true", "True", "TRUE"])
def test_true_spellings(word: str) -> None:
    assert _one(f"m b={word}").fields == {"b": True}


@pytest.mark.parametrize("word", ["f", "F", "false", "False", "FALSE"])
def test_false_spellings(word: str) -> None:
    assert _one(f"m b={word}").fields == {"b": False}


@pytest.mark.parametrize(
    ("precision", "raw", "ms"),
    [
        ("ns", "1465839830100400200", 1465839830100),
        ("us", "1465839830100400", 1465839830100),
        ("ms", "1465839830100", 1465839830100),
        ("s", "1465839830", 1465839830000),
        ("ns", "-1", -1),
        ("s", "0", 0),
    ],
)
def test_precision(precision: str, raw: str, ms: int) -> None:
    assert _one(f"m f=1 {raw}", precision).ts_ms == ms


def test_missing_timestamp_uses_now() -> None:
    assert _one("m f=1").ts_ms == NOW


def test_escapes_in_names_and_tags() -> None:
    point = _one(r"my\ meas\,x,tag\ key=a\,b\=c\ d,path=C:\dir f\=k\,1=1i 5")
    assert point.measurement == "my meas,x"
    assert point.tags == {"tag key": "a,b=c d", "path": "C:\\dir"}
    assert point.fields == {"f=k,1": 1}


def test_double_backslash_is_one_backslash() -> None:
    point = _one(r"m,t=a\\ f=1")
    assert point.tags == {"t": "a\\"}


def test_string_field_escapes() -> None:
    point = _one(r'm s="he said \"hi\", x=1 \\ and \n stays",n=2i')
    assert point.fields == {"s": 'he said "hi", x=1 \\ and \\n stays', "n": 2}


def test_measurement_may_contain_equals() -> None:
    assert _one("a=b f=1").measurement == "a=b"


def test_comments_blank_lines_and_crlf() -> None:
    body = "# header\n\n   \nm f=1 1\r\n  # indented comment\n\tm g=2i 2\r\n"
    batch = decode_lines(body, now_ms=NOW)
    assert batch.errors == []
    assert [(p.fields, p.line) for p in batch.points] == [({"f": 1.0}, 4), ({"g": 2}, 6)]


def test_trailing_spaces_and_multiple_separating_spaces() -> None:
    assert _one("m  f=1   7   ").fields == {"f": 1.0}
    assert _one("m  f=1   7   ").ts_ms == 0


def test_bad_lines_do_not_abort_the_batch() -> None:
    body = "m f=1 1\nbroken\nm,t=x g=2i 2\nm f=abc\nm f=3 3\n"
    batch = decode_lines(body.encode(), now_ms=NOW)
    assert [p.line for p in batch.points] == [1, 3, 5]
    assert [(n, e.field, e.rule) for n, e in batch.errors] == [
        (2, "fields", "syntax"),
        (4, "fields.f", "type"),
    ]


def test_invalid_utf8_line_is_reported_alone() -> None:
    batch = decode_lines(b"m f=1 1\nm\xff f=2 2\nm f=3 3", now_ms=NOW)
    assert [p.line for p in batch.points] == [1, 3]
    assert [(n, e.rule) for n, e in batch.errors] == [(2, "encoding")]


def test_lone_surrogate_in_str_body_is_reported() -> None:
    batch = decode_lines("m,t=\ud800 f=1", now_ms=NOW)
    assert [(n, e.rule) for n, e in batch.errors] == [(1, "encoding")]


@pytest.mark.parametrize(
    ("line", "field", "rule"),
    [
        ("m", "fields", "syntax"),
        ("m ", "fields", "syntax"),
        (",t=1 f=1", "measurement", "required"),
        ("m,t= f=1", "tags.t", "syntax"),
        ("m,=v f=1", "tags", "syntax"),
        ("m,t f=1", "tags.t", "syntax"),
        ("m f", "fields.f", "syntax"),
        ("m f=", "fields.f", "syntax"),
        ("m f=1,", "fields", "syntax"),
        ("m f=1 x", "timestamp", "syntax"),
        ("m f=1 1.5", "timestamp", "syntax"),
        ("m f=1 1 2", "timestamp", "syntax"),
        ("m f=1 9223372036854775808", "timestamp", "range"),
        ("m f=1 99999999999999999999", "timestamp", "syntax"),
        ('m f="open', "fields.f", "syntax"),
        ("m f=abc", "fields.f", "type"),
        ("m f=1.2.3", "fields.f", "type"),
        ("m f=1.5i", "fields.f", "type"),
        ("m f=-1u", "fields.f", "type"),
        ("m f=nan", "fields.f", "type"),
        ("m f=inf", "fields.f", "type"),
        ("m f=1e999", "fields.f", "finite"),
        ("m f=9223372036854775808i", "fields.f", "range"),
        ("m f=18446744073709551616u", "fields.f", "range"),
        ("m f=" + "9" * 5000 + "i", "fields.f", "range"),
        ("m f=1,f=2", "fields.f", "duplicate"),
        ("m,t=1,t=2 f=1", "tags.t", "duplicate"),
        ("_m f=1", "measurement", "reserved_name"),
        ("m,_t=1 f=1", "tags._t", "reserved_name"),
        ("m _f=1", "fields._f", "reserved_name"),
        ('m f="a"x', "fields", "syntax"),
        ("m f=1\tx", "fields.f", "type"),
        ('m f="' + "x" * 65_537 + '"', "fields.f", "too_long"),
    ],
)
def test_line_errors(line: str, field: str, rule: str) -> None:
    assert _rule(line) == (field, rule)


def test_column_in_message_counts_leading_whitespace() -> None:
    batch = decode_lines("   m f=1 x", now_ms=NOW)
    assert "column 10" in batch.errors[0][1].message


def test_unknown_precision_is_a_request_error() -> None:
    with pytest.raises(InvalidInput) as caught:
        decode_lines("m f=1", "h", now_ms=NOW)  # type: ignore[arg-type]
    assert caught.value.errors[0].field == "precision"


def test_fast_and_full_paths_agree() -> None:
    plain = _one("cpu,host=a,region=b idle=98.5,user=1i,ok=true 1434055562000000000")
    quoted = _one('cpu,host=a,region=b idle=98.5,user=1i,ok=true,s="x" 1434055562000000000')
    assert plain.tags == quoted.tags
    assert plain.fields == {k: v for k, v in quoted.fields.items() if k != "s"}
    assert plain.ts_ms == quoted.ts_ms
