"""Enterprise rules: the unified social credit code (GB 32100-2015), the industry code
(GB/T 4754-2017) and the region code (GB/T 2260)."""

from __future__ import annotations

import re

from qiantang.domain.errors import InvalidInput

__all__ = [
    "CREDIT_CODE_ALPHABET",
    "credit_code_check_character",
    "validate_credit_code",
    "validate_industry_code",
    "validate_region_code",
]

#: The 31 characters GB 32100-2015 allows (no I, O, Z, S, V).
CREDIT_CODE_ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"
_VALUE = {c: i for i, c in enumerate(CREDIT_CODE_ALPHABET)}
_WEIGHTS = tuple(pow(3, i, 31) for i in range(17))

# GB/T 4754-2017: each section letter owns a range of two-digit divisions.
_SECTIONS: dict[str, tuple[int, int]] = {
    "A": (1, 5),
    "B": (6, 12),
    "C": (13, 43),
    "D": (44, 46),
    "E": (47, 50),
    "F": (51, 52),
    "G": (53, 60),
    "H": (61, 62),
    "I": (63, 65),
    "J": (66, 69),
    "K": (70, 70),
    "L": (71, 72),
    "M": (73, 75),
    "N": (76, 79),
    "O": (80, 82),
    "P": (83, 83),
    "Q": (84, 85),
    "R": (86, 90),
    "S": (91, 97),
    "T": (98, 98),
}
_INDUSTRY = re.compile(r"^([A-T])(\d{2,4})?$")
_REGION = re.compile(r"^[1-8]\d{5}$")


def credit_code_check_character(first17: str) -> str:
    """The 18th character of a unified social credit code whose first 17 are `first17`."""
    total = sum(_VALUE[c] * w for c, w in zip(first17, _WEIGHTS, strict=True))
    return CREDIT_CODE_ALPHABET[(31 - total % 31) % 31]


def validate_credit_code(code: str, field: str = "credit_code") -> str:
    """Return `code` upper-cased if it is a valid GB 32100-2015 code, else raise InvalidInput."""
    value = code.strip().upper()
    if len(value) != 18:
        raise InvalidInput.of(field, "length", "a unified social credit code has 18 characters")
    bad = [c for c in value if c not in _VALUE]
    if bad:
        raise InvalidInput.of(
            field,
            "alphabet",
            f"character {bad[0]!r} is not allowed in a unified social credit code "
            "(digits and letters except I, O, Z, S, V)",
        )
    expected = credit_code_check_character(value[:17])
    if value[17] != expected:
        raise InvalidInput.of(
            field,
            "check_character",
            f"check character is {value[17]!r} but GB 32100-2015 gives {expected!r}",
        )
    return value


def validate_industry_code(code: str, field: str = "industry_code") -> str:
    """Validate a GB/T 4754-2017 code: a section letter, optionally 2-4 digits in its range."""
    value = code.strip().upper()
    match = _INDUSTRY.match(value)
    if not match:
        raise InvalidInput.of(
            field, "pattern", "an industry code is a section letter A-T and 2 to 4 digits"
        )
    section, digits = match.group(1), match.group(2)
    if digits:
        low, high = _SECTIONS[section]
        if not low <= int(digits[:2]) <= high:
            raise InvalidInput.of(
                field,
                "section_division",
                f"division {digits[:2]} is not in section {section} ({low:02d}-{high:02d})",
            )
    return value


def validate_region_code(code: str, field: str = "region_code") -> str:
    """Validate a six-digit GB/T 2260 administrative division code."""
    value = code.strip()
    if not _REGION.match(value):
        raise InvalidInput.of(field, "pattern", "a region code is six digits (GB/T 2260)")
    return value
