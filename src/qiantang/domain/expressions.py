"""Safe expressions: a thin wrapper over CEL (the Common Expression Language).

Rules, derived properties and action templates are written in CEL
(`temperature > 80 && voltage < 3.5`, `voltage * current * pf / 1000`). CEL is side-effect
free, has no loops or I/O and terminates; it is compiled once by the Rust `cel` package
(`common-expression-language`) and evaluated many times. Python `eval` is never used.

Two error kinds, for two moments:

- `ExpressionError` (an `InvalidInput`) at compile time - a syntax error or a function CEL
  does not have - naming the field the text came from, so an API answers 400 problem+json.
- `EvaluationError` at run time - an undefined variable, a type mismatch (CEL does not
  coerce: `1 + 2.5` is an error, compare with `double(x)`), division by zero, overflow.

`Expression.names` holds the top-level identifiers the text reads (`a.b > 1` reads `a`).
Names bound by a comprehension macro (the `x` in `list.exists(x, x > 1)`) are included too,
because the parser reports them as identifiers.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import cel

from qiantang.domain.errors import FieldError, InvalidInput, QiantangError
from qiantang.domain.telemetry import Value

__all__ = [
    "EvaluationError",
    "Expression",
    "ExpressionError",
    "compile_expression",
]

_MAX_LENGTH = 4096

# Functions of CEL's core library that the Rust runtime implements (macros such as
# has/all/exists/map/filter do not show up as functions). Anything else would only fail
# at run time, so it is refused when the expression is compiled.
_FUNCTIONS = frozenset(
    {
        "size",
        "int",
        "uint",
        "double",
        "string",
        "bytes",
        "bool",
        "timestamp",
        "duration",
        "type",
        "dyn",
        "contains",
        "startsWith",
        "endsWith",
        "matches",
        "getFullYear",
        "getMonth",
        "getDayOfYear",
        "getDayOfMonth",
        "getDate",
        "getDayOfWeek",
        "getHours",
        "getMinutes",
        "getSeconds",
        "getMilliseconds",
    }
)


class ExpressionError(InvalidInput):
    """An expression that does not compile; the error names the field it came from."""


class EvaluationError(QiantangError):
    """An expression failed while evaluating (undefined name, type mismatch, arithmetic)."""


def _is_operator(name: str) -> bool:
    return name.startswith(("_", "!", "-", "@"))


class Expression:
    """A compiled CEL expression, evaluated many times against different variables."""

    __slots__ = ("_names", "_program", "names", "text")

    def __init__(self, text: str, program: cel.Program) -> None:
        self.text = text
        self._program = program
        self._names = tuple(program.variables())
        self.names: frozenset[str] = frozenset(self._names)

    def evaluate(self, variables: Mapping[str, Value]) -> Value:
        """The value of the expression with `variables` bound; raises `EvaluationError`.

        Only the names the expression reads are handed to CEL: the runtime converts every
        variable it is given, so passing a device's 50 properties costs 10-40x one."""
        context: dict[str, Any] = {n: variables[n] for n in self._names if n in variables}
        try:
            result: Value = self._program.execute(context)
        except Exception as err:  # the Rust runtime raises built-in exception types
            raise EvaluationError(f"{self.text!r}: {_first_sentence(err)}") from err
        return result

    def __repr__(self) -> str:
        return f"Expression({self.text!r})"


def _first_sentence(err: Exception) -> str:
    text = str(err).strip() or type(err).__name__
    head = text.split(". ", 1)[0]
    return head.rstrip(".")


def compile_expression(text: str, field: str = "expression") -> Expression:
    """Compile `text`; raises `ExpressionError` naming `field` when it is not valid CEL."""
    if not isinstance(text, str) or not text.strip():
        raise ExpressionError(FieldError(field, "expression", "an expression is required"))
    if len(text) > _MAX_LENGTH:
        raise ExpressionError(
            FieldError(field, "expression", f"longer than {_MAX_LENGTH} characters")
        )
    try:
        program = cel.compile(text)
    except Exception as err:  # ValueError for syntax errors, anything else is as bad
        message = str(err).replace("\n", " ").strip()
        raise ExpressionError(FieldError(field, "expression", message)) from err
    unknown = sorted(
        name for name in program.functions() if not _is_operator(name) and name not in _FUNCTIONS
    )
    if unknown:
        raise ExpressionError(
            FieldError(field, "expression", f"unknown function(s): {', '.join(unknown)}")
        )
    return Expression(text, program)
