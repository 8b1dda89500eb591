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

from qiantang.domain.rule_actions import ActionSpec, parse_actions
from qiantang.domain.rules import RuleSpec, parse_rule
from qiantang.domain.rules_eval import ConditionEvaluator, ConditionState
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


@dataclass(slots=True)
class _Bucket:
    """The rules of one product (or one device)."""

    data: list[CompiledRule] = field(default_factory=list)
    always: list[CompiledRule] = field(default_factory=list)
    events: list[CompiledRule] = field(default_factory=list)
    reads: frozenset[str] = frozenset()  # everything the data rules read

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

    def for_message(
        self, product_id: int, device_id: int, names: Mapping[str, object]
    ) -> list[CompiledRule]:
        """Rules to run for a message carrying `names`: those reading one of them, and the
        no-data rules (any message resets them)."""
        out: list[CompiledRule] = []
        for bucket in (self._products.get(product_id), self._devices.get(device_id)):
            if bucket is None:
                continue
            out.extend(bucket.always)
            out.extend(bucket.matching(names))
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
