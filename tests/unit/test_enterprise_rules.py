"""Credit codes (GB 32100-2015), industry codes (GB/T 4754-2017), region codes, identifiers."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from qiantang.domain.enterprise import (
    CREDIT_CODE_ALPHABET,
    credit_code_check_character,
    validate_credit_code,
    validate_industry_code,
    validate_region_code,
)
from qiantang.domain.errors import InvalidInput
from qiantang.domain.identifiers import parse_identifier, validate_code
from qiantang.domain.platform import PlatformKind, check_move, check_parent, path_ids, path_of


def rule_of(exc: pytest.ExceptionInfo[InvalidInput]) -> tuple[str, str]:
    return exc.value.errors[0].field, exc.value.errors[0].rule


def test_published_example_is_valid_and_one_change_breaks_it() -> None:
    assert validate_credit_code("91350100m000100y43") == "91350100M000100Y43"
    with pytest.raises(InvalidInput) as exc:
        validate_credit_code("91350100M000100Y44")
    assert rule_of(exc) == ("credit_code", "check_character")


@pytest.mark.parametrize(
    ("code", "rule"),
    [("9135010", "length"), ("91350100M000100I43", "alphabet"), ("91350100M000100Y4O", "alphabet")],
)
def test_malformed_codes(code: str, rule: str) -> None:
    with pytest.raises(InvalidInput) as exc:
        validate_credit_code(code)
    assert rule_of(exc) == ("credit_code", rule)


@given(st.text(alphabet=CREDIT_CODE_ALPHABET, min_size=17, max_size=17))
def test_every_body_has_exactly_one_check_character(body: str) -> None:
    good = credit_code_check_character(body)
    assert validate_credit_code(body + good) == body + good
    for wrong in CREDIT_CODE_ALPHABET.replace(good, "")[:5]:
        with pytest.raises(InvalidInput):
            validate_credit_code(body + wrong)


@given(st.text(max_size=30))
def test_credit_code_never_crashes(text: str) -> None:
    try:
        validate_credit_code(text)
    except InvalidInput:
        pass


@pytest.mark.parametrize("code", ["C", "C17", "C171", "C1711", "A01", "T98", "s91"])
def test_industry_codes(code: str) -> None:
    assert validate_industry_code(code) == code.upper()


@pytest.mark.parametrize(
    ("code", "rule"),
    [
        ("C99", "section_division"),
        ("A13", "section_division"),
        ("Z1", "pattern"),
        ("C17111", "pattern"),
        ("", "pattern"),
    ],
)
def test_bad_industry_codes(code: str, rule: str) -> None:
    with pytest.raises(InvalidInput) as exc:
        validate_industry_code(code)
    assert rule_of(exc) == ("industry_code", rule)


def test_region_codes() -> None:
    assert validate_region_code("330603") == "330603"
    for bad in ("33060", "930603", "abcdef"):
        with pytest.raises(InvalidInput):
            validate_region_code(bad)


def test_identifiers() -> None:
    ident = parse_identifier("86.330.1.1001/a1B2c3D4e5F/CNC-0042")
    assert ident.prefix == "86.330.1.1001" and ident.suffix == ("a1B2c3D4e5F", "CNC-0042")
    assert str(ident) == "86.330.1.1001/a1B2c3D4e5F/CNC-0042"
    for bad in ("", "86..330", "86.330//x", ".86", "86.330/"):
        with pytest.raises(InvalidInput):
            parse_identifier(bad)
    with pytest.raises(InvalidInput):
        validate_code("-x")


def test_platform_tree_rules() -> None:
    check_parent(PlatformKind.BASE, None, base_exists=False)
    with pytest.raises(InvalidInput) as exc:
        check_parent(PlatformKind.BASE, None, base_exists=True)
    assert rule_of(exc) == ("kind", "single_base")
    with pytest.raises(InvalidInput) as exc:
        check_parent(PlatformKind.INDUSTRY, None, base_exists=True)
    assert rule_of(exc) == ("parent_id", "required")
    parents = {1: None, 2: 1, 3: 2, 4: 3}
    check_move(3, 1, parents)
    for below in (3, 4):
        with pytest.raises(InvalidInput) as exc:
            check_move(3, below, parents)
        assert rule_of(exc) == ("parent_id", "no_cycle")
    assert path_ids(path_of(path_of(None, 1), 5)) == [1, 5]
