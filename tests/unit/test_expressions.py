"""The CEL wrapper: compile errors name the field, runtime errors are `EvaluationError`."""

from __future__ import annotations

import pytest

from qiantang.domain.errors import InvalidInput
from qiantang.domain.expressions import EvaluationError, ExpressionError, compile_expression


def test_threshold_reads_its_names_and_evaluates() -> None:
    expr = compile_expression("temperature > 80 && voltage < 3.5")
    assert expr.names == frozenset({"temperature", "voltage"})
    assert expr.evaluate({"temperature": 90, "voltage": 3.0}) is True
    assert expr.evaluate({"temperature": 70.5, "voltage": 3.0}) is False


def test_arithmetic_gives_a_number() -> None:
    expr = compile_expression("voltage * current * pf / 1000.0")
    assert expr.evaluate({"voltage": 220.0, "current": 10.0, "pf": 0.9}) == pytest.approx(1.98)


def test_nested_attribute_reads_top_level_name() -> None:
    expr = compile_expression('attributes.line == "A" && has(state.rpm)')
    assert expr.names == frozenset({"attributes", "state"})
    assert expr.evaluate({"attributes": {"line": "A"}, "state": {"rpm": 3}}) is True


@pytest.mark.parametrize("text", ["temperature >", "1 +", ")", "a ? b"])
def test_syntax_error_names_the_field(text: str) -> None:
    with pytest.raises(ExpressionError) as info:
        compile_expression(text, field="condition.expression")
    assert isinstance(info.value, InvalidInput)
    assert info.value.errors[0].field == "condition.expression"
    assert info.value.errors[0].rule == "expression"


@pytest.mark.parametrize("text", ["", "   "])
def test_empty_is_refused(text: str) -> None:
    with pytest.raises(ExpressionError):
        compile_expression(text)


def test_unknown_function_is_refused_at_compile_time() -> None:
    with pytest.raises(ExpressionError) as info:
        compile_expression("launch(temperature) > 1")
    assert "launch" in info.value.errors[0].message


def test_core_functions_compile() -> None:
    expr = compile_expression('size(name) > 2 && name.startsWith("cnc") && int(rpm) > 1')
    assert expr.evaluate({"name": "cnc-1", "rpm": 2.5}) is True


@pytest.mark.parametrize(
    ("text", "variables"),
    [
        ("missing > 1", {}),
        ("a / b", {"a": 1, "b": 0}),
        ('a + "x"', {"a": 1}),
        ("a + 2.5", {"a": 1}),
        ("9223372036854775807 + a", {"a": 1}),
    ],
)
def test_runtime_failures_are_evaluation_errors(text: str, variables: dict[str, object]) -> None:
    expr = compile_expression(text)
    with pytest.raises(EvaluationError):
        expr.evaluate(variables)  # type: ignore[arg-type]


def test_int_and_double_compare_across_types() -> None:
    assert compile_expression("a > 1.5").evaluate({"a": 2}) is True
    assert compile_expression("a == 2").evaluate({"a": 2.0}) is True


def test_only_the_names_read_matter() -> None:
    expr = compile_expression("p1 > 1.0")
    variables = {f"p{i}": float(i) for i in range(50)}
    assert expr.evaluate(variables) is False
    assert expr.evaluate({**variables, "p1": 2.0, "device": {"id": 1}}) is True
