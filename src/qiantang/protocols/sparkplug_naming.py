"""Sparkplug B metric names <-> thing-model properties.

Sparkplug metric names are free text with ``/`` as a folder separator (``Inputs/A``,
``Motor 1/Speed (rpm)``); thing-model identifiers are ``[A-Za-z0-9_]{1,50}`` and not one
of the reserved words. The naming rule (`metric_identifier`):

1. every run of characters other than ASCII letters, digits and ``_`` becomes one ``_``
   (``Inputs/A`` -> ``Inputs_A``, ``Motor 1/Speed (rpm)`` -> ``Motor_1_Speed_rpm``), and
   leading and trailing ``_`` are dropped;
2. an empty result becomes ``m``; one that starts with a digit or is a reserved word gets
   ``m_`` in front (``2nd`` -> ``m_2nd``, ``value`` -> ``m_value``);
3. a result longer than 50 characters, or one already taken by another metric of the same
   model, keeps its first 41 characters and gets ``_`` and 8 hex digits of the SHA-256 of
   the full metric name.

A property created from a birth keeps the metric name in its ``name`` (cut to 40
characters, the thing model's limit) and, whole, in its ``description`` as
``sparkplug:{metric name}``; `metric_names` reads that mapping back from a model, so a
property an operator renamed keeps receiving its metric. Pure functions, no I/O; nothing
here raises on any input.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from typing import Final

from qiantang.domain.thingmodel import (
    DESCRIPTION_MAX,
    IDENTIFIER_MAX,
    NAME_MAX,
    RESERVED_IDENTIFIERS,
    Property,
    ThingModel,
)
from qiantang.protocols.sparkplug_values import ThingType

__all__ = [
    "DESCRIPTION_PREFIX",
    "metric_identifier",
    "metric_names",
    "property_json",
]

DESCRIPTION_PREFIX: Final = "sparkplug:"
_NOT_IDENTIFIER: Final = re.compile(r"[^A-Za-z0-9_]+")
_HASHED_HEAD: Final = IDENTIFIER_MAX - 9  # 41 characters, "_", 8 hex digits


def metric_identifier(name: str, taken: Iterable[str] = ()) -> str:
    """The thing-model identifier for metric `name` (see the module docstring); `taken` are
    identifiers other metrics already use."""
    ident = _NOT_IDENTIFIER.sub("_", name).strip("_") or "m"
    if ident[0].isdigit() or ident in RESERVED_IDENTIFIERS:
        ident = "m_" + ident
    if len(ident) > IDENTIFIER_MAX or ident in set(taken):
        digest = hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:8]
        ident = f"{ident[:_HASHED_HEAD].rstrip('_') or 'm'}_{digest}"
    return ident


def metric_names(model: ThingModel) -> dict[str, str]:
    """Metric name -> property identifier for the properties of `model`: from the
    ``sparkplug:`` description where there is one, else the property's name and its
    identifier both stand for a metric of that name."""
    out: dict[str, str] = {}
    for prop in model.properties:
        out.setdefault(prop.identifier, prop.identifier)
        out.setdefault(prop.name, prop.identifier)
    for prop in model.properties:  # the recorded metric names win over the guesses above
        metric = _recorded(prop)
        if metric is not None:
            out[metric] = prop.identifier
    return out


def _recorded(prop: Property) -> str | None:
    if prop.description.startswith(DESCRIPTION_PREFIX):
        return prop.description[len(DESCRIPTION_PREFIX) :]
    return None


_BOOL_SPECS: Final[Mapping[str, str]] = {"false": "false", "true": "true"}
_ARRAY_SIZE: Final = 512


def property_json(identifier: str, metric: str, thing: ThingType) -> dict[str, object]:
    """The thing-model JSON of a property for `metric` of type `thing` (read-write: every
    Sparkplug metric may be written with NCMD/DCMD)."""
    data_type: dict[str, object] = {"type": thing.type, "specs": {}}
    if thing.type == "bool":
        data_type["specs"] = dict(_BOOL_SPECS)
    elif thing.type == "array":
        item: dict[str, object] = {"type": thing.item or "text", "specs": {}}
        data_type["specs"] = {"size": _ARRAY_SIZE, "item": item}
    name = metric[:NAME_MAX]
    return {
        "identifier": identifier,
        "name": name if name.strip() else identifier,
        "access_mode": "rw",
        "required": False,
        "description": (DESCRIPTION_PREFIX + metric)[:DESCRIPTION_MAX],
        "data_type": data_type,
    }
