"""The error hierarchy. Every error the platform raises on purpose is a `QiantangError`.

The HTTP mapping lives in one place (`qiantang.api.problems`); MQTT codecs map the same
errors to Alink reply codes.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "AuthenticationFailed",
    "Conflict",
    "FieldError",
    "InvalidInput",
    "NotFound",
    "PermissionDenied",
    "QiantangError",
    "Unavailable",
]


class QiantangError(Exception):
    """Root of every deliberate Qiantang error."""


@dataclass(frozen=True, slots=True)
class FieldError:
    """One broken rule: `field` is a dotted path (``properties[2].dataType.specs.min``),
    `rule` a short machine-readable name (``min_le_max``), `message` a human sentence."""

    field: str
    rule: str
    message: str

    def as_dict(self) -> dict[str, str]:
        """Plain-dict form used in problem documents and replies."""
        return {"field": self.field, "rule": self.rule, "message": self.message}


class InvalidInput(QiantangError):
    """Input broke one or more rules; nothing was stored."""

    def __init__(self, errors: list[FieldError] | FieldError) -> None:
        self.errors: list[FieldError] = [errors] if isinstance(errors, FieldError) else errors
        super().__init__("; ".join(f"{e.field}: {e.message} ({e.rule})" for e in self.errors))

    @classmethod
    def of(cls, field: str, rule: str, message: str) -> InvalidInput:
        """Shorthand for a single broken rule."""
        return cls(FieldError(field, rule, message))

    def prefixed(self, prefix: str) -> InvalidInput:
        """The same errors with `prefix` put in front of every field path."""
        return InvalidInput(
            [
                FieldError(f"{prefix}.{e.field}" if e.field else prefix, e.rule, e.message)
                for e in self.errors
            ]
        )


class Conflict(InvalidInput):
    """The input is well formed but clashes with stored state (a duplicate, a second base)."""


class NotFound(QiantangError):
    """No such object, or it is outside the caller's reach (the two look the same)."""

    def __init__(self, kind: str, key: object) -> None:
        self.kind = kind
        self.key = key
        super().__init__(f"{kind} {key!r} not found")


class AuthenticationFailed(QiantangError):
    """No credentials, or credentials that do not check out."""


class PermissionDenied(QiantangError):
    """The caller can see the object but may not do this to it."""


class Unavailable(QiantangError):
    """A part the request needs is not running (yet)."""
