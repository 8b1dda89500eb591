"""Making valid (and deliberately broken) unified social credit codes for tests."""

from __future__ import annotations

from qiantang.domain.enterprise import CREDIT_CODE_ALPHABET, credit_code_check_character


def credit_code(body17: str) -> str:
    """`body17` with its GB 32100-2015 check character appended."""
    return body17 + credit_code_check_character(body17)


def broken_credit_code(body17: str) -> str:
    """`body17` with a wrong check character."""
    good = credit_code_check_character(body17)
    wrong = next(c for c in CREDIT_CODE_ALPHABET if c != good)
    return body17 + wrong
