"""Rule parsing (errors name the field) and condition evaluation step by step."""

from __future__ import annotations

from typing import Any

import pytest

from qiantang.domain.errors import InvalidInput
from qiantang.domain.expressions import EvaluationError
from qiantang.domain.rules import parse_duration_ms, parse_rule
from qiantang.domain.rules_eval import ConditionEvaluator, ConditionState, Outcome

PROPS = frozenset({"temperature", "pressure", "count"})
EVENTS = {"overTemp": frozenset({"temperature"})}


def evaluator(condition: dict[str, Any]) -> ConditionEvaluator:
    spec = parse_rule(condition, None, properties=PROPS, events=EVENTS)
    return ConditionEvaluator(spec.condition, PROPS)


def fields(err: InvalidInput) -> set[tuple[str, str]]:
    return {(e.field, e.rule) for e in err.errors}


@pytest.mark.parametrize(
    ("raw", "ms"), [("30s", 30_000), ("500ms", 500), ("5m", 300_000), ("1h", 3_600_000), (2, 2000)]
)
def test_durations(raw: object, ms: int) -> None:
    assert parse_duration_ms(raw, "for") == ms


@pytest.mark.parametrize("raw", ["soon", "-1s", "", True, None, "9999h", "0s"])
def test_bad_durations_name_the_field(raw: object) -> None:
    with pytest.raises(InvalidInput) as info:
        parse_duration_ms(raw, "condition.for")
    assert fields(info.value) == {("condition.for", "duration")}


def test_every_broken_field_is_reported() -> None:
    with pytest.raises(InvalidInput) as info:
        parse_rule(
            {"kind": "average", "property": "rpm", "window": "x", "op": "~", "threshold": "hot"},
            {"severity": "doom", "message": {"fr": "chaud"}},
            properties=PROPS,
            events=EVENTS,
        )
    assert fields(info.value) == {
        ("condition.property", "unknown_property"),
        ("condition.window", "duration"),
        ("condition.op", "enum"),
        ("condition.threshold", "number"),
        ("alarm.severity", "enum"),
        ("alarm.message.fr", "language"),
    }


def test_unknown_event_and_unknown_names_are_refused() -> None:
    with pytest.raises(InvalidInput) as info:
        parse_rule({"kind": "event", "identifier": "boom"}, None, properties=PROPS, events=EVENTS)
    assert ("condition.identifier", "unknown_event") in fields(info.value)
    spec = parse_rule(
        {"kind": "event", "identifier": "overTemp", "expression": "temperature > 1.0"},
        None,
        properties=PROPS,
        events=EVENTS,
    )
    assert spec.condition.event_identifier == "overTemp"


def test_templates_skip_the_model_checks() -> None:
    spec = parse_rule({"kind": "expression", "expression": "anything > 1"}, None)
    assert spec.condition.reads == frozenset({"anything"})


def test_expression_for_a_duration_starts_after_it_and_stops_at_once() -> None:
    ev = evaluator({"kind": "expression", "expression": "temperature > 80.0", "for": "1s"})
    st = ConditionState()
    assert ev.on_message(st, 0, 0, {"temperature": 90.0}) is Outcome.NONE
    assert ev.deadline(st) == 1000
    assert ev.tick(st, 999) is Outcome.NONE
    assert ev.tick(st, 1000) is Outcome.START
    assert ev.on_message(st, 1200, 1200, {"temperature": 91.0}) is Outcome.HOLD
    assert ev.on_message(st, 1300, 1300, {"temperature": 10.0}) is Outcome.STOP
    assert ev.deadline(st) is None


def test_a_dip_restarts_the_duration() -> None:
    ev = evaluator({"kind": "expression", "expression": "temperature > 80.0", "for": "1s"})
    st = ConditionState()
    ev.on_message(st, 0, 0, {"temperature": 90.0})
    ev.on_message(st, 500, 500, {"temperature": 70.0})
    ev.on_message(st, 600, 600, {"temperature": 90.0})
    assert ev.tick(st, 1000) is Outcome.NONE
    assert ev.tick(st, 1600) is Outcome.START


def test_count_window_holds_while_enough_breaches_are_inside() -> None:
    ev = evaluator(
        {"kind": "count", "expression": "pressure > 1.0", "window": "10s", "threshold": 3}
    )
    st = ConditionState()
    outcomes = [ev.on_message(st, t, t, {"pressure": 2.0}) for t in (0, 1000, 2000)]
    assert outcomes == [Outcome.NONE, Outcome.NONE, Outcome.START]
    assert ev.on_message(st, 3000, 3000, {"pressure": 0.5}) is Outcome.NONE  # not a breach
    assert ev.tick(st, 10_000) is Outcome.STOP  # the first breach left the window


def test_average_window() -> None:
    ev = evaluator(
        {"kind": "average", "property": "temperature", "window": "3s", "op": ">", "threshold": 50}
    )
    st = ConditionState()
    assert ev.on_message(st, 0, 0, {"temperature": 40.0}) is Outcome.NONE
    assert ev.on_message(st, 1000, 1000, {"temperature": 70.0}) is Outcome.START  # mean 55
    assert ev.on_message(st, 2000, 2000, {"temperature": 10.0}) is Outcome.STOP  # mean 40


def test_rate_of_change_per_second() -> None:
    ev = evaluator(
        {"kind": "rate", "property": "pressure", "per": "1s", "op": ">", "threshold": 0.5}
    )
    st = ConditionState()
    assert ev.on_message(st, 0, 0, {"pressure": 1.0}) is Outcome.NONE
    assert ev.on_message(st, 0, 2000, {"pressure": 1.6}) is Outcome.NONE  # 0.3 per s
    assert ev.on_message(st, 0, 3000, {"pressure": 2.4}) is Outcome.START  # 0.8 per s


def test_no_data_fires_after_the_timeout_and_clears_on_data() -> None:
    ev = evaluator({"kind": "no_data", "timeout": "2s"})
    st = ConditionState()
    ev.on_message(st, 0, 0, {})
    assert ev.deadline(st) == 2000
    assert ev.tick(st, 1999) is Outcome.NONE
    assert ev.tick(st, 2000) is Outcome.START
    assert ev.tick(st, 5000) is Outcome.NONE  # once, not every tick
    assert ev.on_message(st, 6000, 6000, {}) is Outcome.STOP


def test_a_message_without_the_property_is_not_evaluated() -> None:
    ev = evaluator({"kind": "expression", "expression": "temperature > 1.0 && count > 1"})
    assert ev.on_message(ConditionState(), 0, 0, {"temperature": 5.0}) is Outcome.NONE


def test_runtime_failures_surface_as_evaluation_errors() -> None:
    ev = evaluator({"kind": "expression", "expression": "count / (count - count) > 1"})
    with pytest.raises(EvaluationError):
        ev.on_message(ConditionState(), 0, 0, {"count": 3})
    not_bool = evaluator({"kind": "expression", "expression": "count + 1"})
    with pytest.raises(EvaluationError):
        not_bool.on_message(ConditionState(), 0, 0, {"count": 3})
