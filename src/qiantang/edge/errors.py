"""Errors of the edge gateway, all `QiantangError` subclasses.

Library errors (asyncua, pymodbus, aiomqtt, sqlite3) are translated at the boundary with
``raise ... from err``: nothing past a connector or the uplink sees a library exception.
"""

from __future__ import annotations

from dataclasses import dataclass

from qiantang.domain.errors import QiantangError

__all__ = [
    "ConfigError",
    "ConfigProblem",
    "ConnectorError",
    "EdgeError",
    "UplinkError",
    "WriteRefused",
]


class EdgeError(QiantangError):
    """Root of the gateway's errors."""


@dataclass(frozen=True, slots=True)
class ConfigProblem:
    """One broken rule in a config file: the key path, its line (1-based, 0 when unknown)."""

    path: str
    line: int
    message: str

    def __str__(self) -> str:
        where = f"line {self.line}: " if self.line else ""
        return f"{where}{self.path or '(top level)'}: {self.message}"


class ConfigError(EdgeError):
    """A config file broke one or more rules; every problem names its key path and line."""

    def __init__(self, source: str, problems: list[ConfigProblem]) -> None:
        self.source = source
        self.problems = problems
        lines = "\n".join(
            f"  {source}:{p.line}: {p.path or '(top level)'}: {p.message}" for p in problems
        )
        super().__init__(f"{len(problems)} problem(s) in {source}:\n{lines}")


class ConnectorError(EdgeError):
    """Protocol I/O failed (connect, read, write, call); the message says which and why."""


class WriteRefused(EdgeError):
    """A property set or service call that cannot be carried out (unknown, read-only, bad
    value): answered to the platform with an Alink error code, nothing sent to the machine."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        super().__init__(f"{field}: {message}")


class UplinkError(EdgeError):
    """The platform connection failed or a request was refused or not answered in time."""
