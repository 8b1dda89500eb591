"""Rules as the engine runs them: compiled once, indexed by product and by device.

A `RuleDef` is a registry row read out of its session; `compile_rule` parses it against the
product's thing model into a `CompiledRule` (condition evaluator, alarm, actions, and the
per-device condition states). `RuleIndex` answers, for one device's message, only the rules
of that device's product (or of that device) that read one of the message's properties.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from qiantang.domain.expressions import EvaluationError, ExpressionError, compile_expression
from qiantang.domain.rule_actions import ActionSpec, parse_actions
from qiantang.domain.rules import RuleSpec, parse_rule
from qiantang.domain.rules_eval import ConditionEvaluator, ConditionState
from qiantang.domain.telemetry import Value
from qiantang.domain.thingmodel import ThingModel
from qiantang.registry.tables import Rule
from qiantang.services.rule_engine_alarms import _PLACEHOLDER

__all__ = ["CompiledRule", "RuleDef", "RuleIndex", "compile_rule", "model_names"]


@dataclass(frozen=True, slots=True)
class RuleDef:
    """A rule's stored definition, detached from the registry session."""

    id: int
    enterprise_id: int
    product_id: int
    device_id: int | None
    name: str
    condition: Mapping[str, Any]
    alarm: Mapping[str, Any] | None
    actions: Sequence[Any]
    enabled: bool

    @classmethod
    def of(cls, row: Rule) -> RuleDef:
        """Copy a registry row."""
        return cls(
            row.id,
            row.enterprise_id,
            row.product_id,
            row.device_id,
            row.name,
            dict(row.condition),
            dict(row.alarm) if row.alarm is not None else None,
            list(row.actions),
            row.enabled,
        )


def model_names(model: ThingModel) -> tuple[frozenset[str], dict[str, frozenset[str]]]:
    """Property identifiers, and each event's output params."""
    properties = frozenset(p.identifier for p in model.properties)
    events = {e.identifier: frozenset(p.identifier for p in e.output_data) for e in model.events}
    return properties, events


@dataclass(slots=True)
class CompiledRule:
    """A rule ready to run, with its per-device condition states."""

    definition: RuleDef
    spec: RuleSpec
    evaluator: ConditionEvaluator
    actions: list[ActionSpec]
    keep: tuple[str, ...]
    reads: frozenset[str]  # what the condition reads (computed once)
    states: dict[int, ConditionState] = field(default_factory=dict)
    slot: int | None = None  # its place in its bucket's `CombinedExpressions`, if any

    @property
    def id(self) -> int:
        """The rule id."""
        return self.definition.id

    def kept_values(self, variables: Mapping[str, Any]) -> dict[str, Any]:
        """The values an alarm or action keeps: what the condition and messages name."""
        return {n: variables[n] for n in self.keep if n in variables}


def compile_rule(definition: RuleDef, model: ThingModel) -> CompiledRule:
    """Parse a stored rule against its product's model (raises `InvalidInput`)."""
    properties, events = model_names(model)
    spec = parse_rule(definition.condition, definition.alarm, properties=properties, events=events)
    actions = parse_actions(definition.actions, stored=True, others={"alarm"})
    keep = set(spec.condition.reads)
    if spec.alarm is not None:
        for template in spec.alarm.messages.values():
            keep.update(m.group(1).split(".")[0] for m in _PLACEHOLDER.finditer(template))
    evaluator = ConditionEvaluator(spec.condition, properties)
    reads = spec.condition.reads
    return CompiledRule(definition, spec, evaluator, actions, tuple(sorted(keep)), reads)


class CombinedExpressions:
    """The plain expression conditions of one bucket as one CEL list, evaluated once per
    message instead of once per rule (one call into the runtime, one variables dict)."""

    def __init__(self, rules: Sequence[CompiledRule]) -> None:
        texts = [r.spec.condition.expression.text for r in rules if r.spec.condition.expression]
        self.expression = compile_expression("[" + ", ".join(f"({t})" for t in texts) + "]")
        self.required = frozenset().union(*(r.evaluator.required for r in rules))

    def truths(self, variables: Mapping[str, Value]) -> list[Value] | None:
        """Each rule's value, or None when a name is missing or anything fails (the caller
        then evaluates rule by rule, which finds the culprit)."""
        if self.required.difference(variables):
            return None
        try:
            values = self.expression.evaluate(variables)
        except EvaluationError:
            return None
        return values if isinstance(values, list) else None


def _combine(rules: list[CompiledRule]) -> CombinedExpressions | None:
    plain = [r for r in rules if r.spec.condition.kind == "expression"]
    for rule in rules:
        rule.slot = None
    if len(plain) < 2:
        return None
    try:
        combined = CombinedExpressions(plain)
    except ExpressionError:  # too long together: rule by rule
        return None
    for i, rule in enumerate(plain):
        rule.slot = i
    return combined


@dataclass(slots=True)
class _Bucket:
    """The rules of one product (or one device)."""

    data: list[CompiledRule] = field(default_factory=list)
    always: list[CompiledRule] = field(default_factory=list)
    events: list[CompiledRule] = field(default_factory=list)
    reads: frozenset[str] = frozenset()  # everything the data rules read
    combined: CombinedExpressions | None = None

    def matching(self, names: Mapping[str, object]) -> list[CompiledRule]:
        """The data rules reading one of `names` (set operations in C, no loop per name)."""
        hit = names.keys() & self.reads
        if not hit:
            return []
        if len(hit) == len(self.reads):
            return self.data
        return [r for r in self.data if not r.reads.isdisjoint(hit)]


class RuleIndex:
    """Enabled rules by id, by product and by device."""

    def __init__(self) -> None:
        self.rules: dict[int, CompiledRule] = {}
        self._products: dict[int, _Bucket] = {}
        self._devices: dict[int, _Bucket] = {}
        self.timed: list[CompiledRule] = []

    def _rebuild(self) -> None:
        self._products, self._devices = {}, {}
        for rule in self.rules.values():
            d = rule.definition
            buckets = self._devices if d.device_id is not None else self._products
            bucket = buckets.setdefault(
                d.device_id if d.device_id is not None else d.product_id, _Bucket()
            )
            kind = rule.spec.condition.kind
            if kind == "event":
                bucket.events.append(rule)
            elif kind == "no_data":
                bucket.always.append(rule)
            else:
                bucket.data.append(rule)
                bucket.reads = bucket.reads | rule.reads
        for bucket in (*self._products.values(), *self._devices.values()):
            bucket.combined = _combine(bucket.data)
        self.timed = [r for r in self.rules.values() if r.evaluator.timed]

    def put(self, rule: CompiledRule) -> None:
        """Add or replace a rule."""
        self.rules[rule.id] = rule
        self._rebuild()

    def put_all(self, rules: Iterable[CompiledRule]) -> None:
        """Add many rules at once."""
        for rule in rules:
            self.rules[rule.id] = rule
        self._rebuild()

    def remove(self, rule_id: int) -> CompiledRule | None:
        """Drop a rule (disabled, deleted or broken)."""
        rule = self.rules.pop(rule_id, None)
        if rule is not None:
            self._rebuild()
        return rule

    def buckets(self, product_id: int, device_id: int) -> list[_Bucket]:
        """The rules of the product and those of the device (the engine asks each bucket
        for the rules a message concerns: `matching`, plus `always`)."""
        out = []
        for bucket in (self._products.get(product_id), self._devices.get(device_id)):
            if bucket is not None:
                out.append(bucket)
        return out

    def for_event(self, product_id: int, device_id: int) -> tuple[list[CompiledRule], ...]:
        """Event rules, and no-data rules (an event is data too)."""
        events: list[CompiledRule] = []
        always: list[CompiledRule] = []
        for bucket in (self._products.get(product_id), self._devices.get(device_id)):
            if bucket is not None:
                events.extend(bucket.events)
                always.extend(bucket.always)
        return events, always

    def has_product(self, product_id: int, device_id: int) -> bool:
        """Whether any rule watches the product or the device (fast skip)."""
        return product_id in self._products or device_id in self._devices
