"""Hierarchical identifiers ``prefix/suffix``, delegated down the platform tree.

The base prefix (e.g. ``86.330``) is set at bootstrap. A platform's prefix is its parent's
prefix plus ``.{code}``; an enterprise's prefix is its home platform's plus ``.{code}``.
Products are ``{enterprise prefix}/{productKey}``, devices
``{enterprise prefix}/{productKey}/{deviceName}``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from qiantang.domain.errors import InvalidInput

__all__ = ["Identifier", "child_prefix", "parse_identifier", "validate_code", "validate_prefix"]

_SEGMENT = r"[0-9A-Za-z][0-9A-Za-z-]{0,31}"
_CODE = re.compile(rf"^{_SEGMENT}$")
_PREFIX = re.compile(rf"^{_SEGMENT}(\.{_SEGMENT})*$")
MAX_IDENTIFIER = 512


@dataclass(frozen=True, slots=True)
class Identifier:
    """A parsed identifier: the prefix and the (possibly empty) suffix parts."""

    prefix: str
    suffix: tuple[str, ...]

    def __str__(self) -> str:
        return "/".join((self.prefix, *self.suffix))


def validate_code(code: str, field: str = "code") -> str:
    """A code is one prefix segment: letters, digits and hyphens, 1-32, no leading hyphen."""
    if not _CODE.match(code):
        raise InvalidInput.of(
            field, "pattern", "a code is 1-32 letters, digits or hyphens, not starting with '-'"
        )
    return code


def validate_prefix(prefix: str, field: str = "prefix") -> str:
    """A prefix is dot-separated codes, e.g. ``86.330``."""
    if len(prefix) > 128 or not _PREFIX.match(prefix):
        raise InvalidInput.of(field, "pattern", "a prefix is dot-separated codes like 86.330")
    return prefix


def child_prefix(parent_prefix: str, code: str) -> str:
    """The prefix delegated to a child with `code` under `parent_prefix`."""
    return f"{parent_prefix}.{code}"


def parse_identifier(text: str, field: str = "identifier") -> Identifier:
    """Split ``prefix/suffix...``; the prefix must be well formed, suffix parts non-empty."""
    if not text or len(text) > MAX_IDENTIFIER:
        raise InvalidInput.of(field, "length", f"an identifier has 1-{MAX_IDENTIFIER} characters")
    prefix, *suffix = text.split("/")
    validate_prefix(prefix, field)
    if any(not part for part in suffix):
        raise InvalidInput.of(field, "pattern", "identifier parts between '/' must not be empty")
    return Identifier(prefix, tuple(suffix))
