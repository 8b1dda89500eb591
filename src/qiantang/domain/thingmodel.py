"""The thing model (物模型): what a product's devices report and accept.

A `ThingModel` holds properties, events and services, each typed by a `DataType`. The shapes
follow Alibaba Cloud IoT TSL: data types int, float, double, text, enum, bool, date, struct
and array; struct fields are scalars only (int, float, double, text, enum, bool, date); array
items are int, float, double, text or struct.

Build models with `ThingModel.from_dict`, which validates the definition and raises one
`InvalidInput` listing every broken rule; `to_dict` gives the same JSON form back::

    {"properties": [{"identifier": "pressure", "name": "排气压力", "access_mode": "r",
                     "required": false, "description": "",
                     "data_type": {"type": "float", "specs": {"min": 0, "max": 1.6,
                                   "step": 0.01, "unit": "MPa", "unit_name": "兆帕"}}}],
     "events": [{"identifier": "overheat", "name": "超温报警", "type": "alert",
                 "required": false, "description": "", "output_data": [<param>...]}],
     "services": [{"identifier": "start", "name": "远程启停", "call_type": "async",
                   "required": false, "description": "",
                   "input_data": [<param>...], "output_data": [<param>...]}]}

A param is ``{"identifier", "name", "data_type"}``. Specs per type: numbers ``min``, ``max``,
``step``, ``unit``, ``unit_name`` (all optional); text ``length``; enum ``members``
(``[{"value": 0, "name": "停机"}]``); bool ``false`` and ``true`` labels; date none; struct
``fields`` (a list of params); array ``size`` and ``item`` (``{"type", "specs"}``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import ClassVar, Literal, TypeAlias

from qiantang.domain.errors import NotFound

__all__ = [
    "ARRAY_ITEM_TYPES",
    "ARRAY_SIZE_MAX",
    "DATA_TYPES",
    "DESCRIPTION_MAX",
    "IDENTIFIER_MAX",
    "NAME_MAX",
    "RESERVED_IDENTIFIERS",
    "STRUCT_FIELD_TYPES",
    "TEXT_LENGTH_MAX",
    "AccessMode",
    "ArrayType",
    "BoolType",
    "CallType",
    "DataType",
    "DateType",
    "EnumType",
    "Event",
    "EventType",
    "NumberType",
    "Param",
    "Property",
    "Service",
    "StructType",
    "TextType",
    "ThingModel",
    "data_type_dict",
]

AccessMode: TypeAlias = Literal["r", "rw"]
CallType: TypeAlias = Literal["sync", "async"]
EventType: TypeAlias = Literal["info", "alert", "error"]

IDENTIFIER_MAX = 50
"""Identifiers: letters, digits and underscores, 1 to 50 characters (Alibaba TSL)."""
NAME_MAX = 40
"""Display names: 1 to 40 characters (the TSL schema's name pattern)."""
DESCRIPTION_MAX = 2048
TEXT_LENGTH_MAX = 10240
"""Largest text `length` (bytes of UTF-8) a model may declare."""
ARRAY_SIZE_MAX = 512
RESERVED_IDENTIFIERS = frozenset({"set", "get", "post", "property", "event", "time", "value"})
"""Alibaba reserves these for the auto-generated ``post`` event and ``set``/``get`` services and
for Alink payload keys; no property, event, service, param or struct field may use them."""

DATA_TYPES = frozenset(
    {"int", "float", "double", "text", "enum", "bool", "date", "struct", "array"}
)
STRUCT_FIELD_TYPES = frozenset({"int", "float", "double", "text", "enum", "bool", "date"})
ARRAY_ITEM_TYPES = frozenset({"int", "float", "double", "text", "struct"})


def _put(out: dict[str, object], key: str, value: object) -> None:
    if value is not None:
        out[key] = value


@dataclass(frozen=True, slots=True)
class NumberType:
    """int, float or double with optional range, step and unit. Bounds of an int are ints."""

    type: Literal["int", "float", "double"]
    min: int | float | None = None
    max: int | float | None = None
    step: int | float | None = None
    unit: str | None = None
    unit_name: str | None = None

    def specs_dict(self) -> dict[str, object]:
        """The specs in our JSON form (absent values left out)."""
        out: dict[str, object] = {}
        _put(out, "min", self.min)
        _put(out, "max", self.max)
        _put(out, "step", self.step)
        _put(out, "unit", self.unit)
        _put(out, "unit_name", self.unit_name)
        return out


@dataclass(frozen=True, slots=True)
class TextType:
    """UTF-8 text; `length` is the most bytes a value may take (None: `TEXT_LENGTH_MAX`)."""

    type: ClassVar[str] = "text"
    length: int | None = None

    def specs_dict(self) -> dict[str, object]:
        """The specs in our JSON form."""
        return {} if self.length is None else {"length": self.length}


@dataclass(frozen=True, slots=True)
class EnumType:
    """An int-valued enumeration; `members` are ``(value, name)`` pairs in declared order."""

    type: ClassVar[str] = "enum"
    members: tuple[tuple[int, str], ...]

    def specs_dict(self) -> dict[str, object]:
        """The specs in our JSON form."""
        return {"members": [{"value": v, "name": n} for v, n in self.members]}


@dataclass(frozen=True, slots=True)
class BoolType:
    """A boolean (Alink sends 0 or 1) with a display label for each value."""

    type: ClassVar[str] = "bool"
    false_label: str
    true_label: str

    def specs_dict(self) -> dict[str, object]:
        """The specs in our JSON form."""
        return {"false": self.false_label, "true": self.true_label}


@dataclass(frozen=True, slots=True)
class DateType:
    """A UTC timestamp in milliseconds (TSL sends it as a string of digits)."""

    type: ClassVar[str] = "date"

    def specs_dict(self) -> dict[str, object]:
        """The specs in our JSON form (none)."""
        return {}


@dataclass(frozen=True, slots=True)
class StructType:
    """A record of named scalar fields."""

    type: ClassVar[str] = "struct"
    fields: tuple[Param, ...]

    def specs_dict(self) -> dict[str, object]:
        """The specs in our JSON form."""
        return {"fields": [f.to_dict() for f in self.fields]}


@dataclass(frozen=True, slots=True)
class ArrayType:
    """A list of at most `size` items of one type (int, float, double, text or struct)."""

    type: ClassVar[str] = "array"
    size: int
    item: DataType

    def specs_dict(self) -> dict[str, object]:
        """The specs in our JSON form."""
        return {"size": self.size, "item": data_type_dict(self.item)}


DataType: TypeAlias = (
    NumberType | TextType | EnumType | BoolType | DateType | StructType | ArrayType
)


def data_type_dict(data_type: DataType) -> dict[str, object]:
    """``{"type": ..., "specs": {...}}`` for a data type."""
    return {"type": data_type.type, "specs": data_type.specs_dict()}


@dataclass(frozen=True, slots=True)
class Param:
    """An event output, a service input or output, or a struct field."""

    identifier: str
    name: str
    data_type: DataType

    def to_dict(self) -> dict[str, object]:
        """Our JSON form."""
        return {
            "identifier": self.identifier,
            "name": self.name,
            "data_type": data_type_dict(self.data_type),
        }


@dataclass(frozen=True, slots=True)
class Property:
    """A device property: read-only (``r``) or settable (``rw``)."""

    identifier: str
    name: str
    access_mode: AccessMode
    data_type: DataType
    required: bool = False
    description: str = ""

    def to_dict(self) -> dict[str, object]:
        """Our JSON form."""
        return {
            "identifier": self.identifier,
            "name": self.name,
            "access_mode": self.access_mode,
            "required": self.required,
            "description": self.description,
            "data_type": data_type_dict(self.data_type),
        }


@dataclass(frozen=True, slots=True)
class Event:
    """An event a device posts, of type info, alert or error, with output params."""

    identifier: str
    name: str
    type: EventType
    output_data: tuple[Param, ...] = ()
    required: bool = False
    description: str = ""

    def to_dict(self) -> dict[str, object]:
        """Our JSON form."""
        return {
            "identifier": self.identifier,
            "name": self.name,
            "type": self.type,
            "required": self.required,
            "description": self.description,
            "output_data": [p.to_dict() for p in self.output_data],
        }


@dataclass(frozen=True, slots=True)
class Service:
    """A service the platform calls on a device, synchronously or asynchronously."""

    identifier: str
    name: str
    call_type: CallType
    input_data: tuple[Param, ...] = ()
    output_data: tuple[Param, ...] = ()
    required: bool = False
    description: str = ""

    def to_dict(self) -> dict[str, object]:
        """Our JSON form."""
        return {
            "identifier": self.identifier,
            "name": self.name,
            "call_type": self.call_type,
            "required": self.required,
            "description": self.description,
            "input_data": [p.to_dict() for p in self.input_data],
            "output_data": [p.to_dict() for p in self.output_data],
        }


@dataclass(frozen=True, slots=True)
class ThingModel:
    """A product's properties, events and services. Identifiers are unique across all three."""

    properties: tuple[Property, ...] = ()
    events: tuple[Event, ...] = ()
    services: tuple[Service, ...] = ()
    _index: dict[str, Property | Event | Service] = field(
        init=False, repr=False, compare=False, hash=False
    )

    def __post_init__(self) -> None:
        index: dict[str, Property | Event | Service] = {}
        features: tuple[Property | Event | Service, ...] = (
            *self.properties,
            *self.events,
            *self.services,
        )
        for feature in features:
            index.setdefault(feature.identifier, feature)
        object.__setattr__(self, "_index", index)

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> ThingModel:
        """Parse and validate our JSON form; raises `InvalidInput` naming every broken rule."""
        from qiantang.domain.thingmodel_parse import OUR_DIALECT, parse_model

        return parse_model(data, OUR_DIALECT)

    def to_dict(self) -> dict[str, object]:
        """Our JSON form; `from_dict` of it gives an equal model."""
        return {
            "properties": [p.to_dict() for p in self.properties],
            "events": [e.to_dict() for e in self.events],
            "services": [s.to_dict() for s in self.services],
        }

    def property(self, identifier: str) -> Property:
        """The property called `identifier`; raises `NotFound` if there is none."""
        found = self._index.get(identifier)
        if not isinstance(found, Property):
            raise NotFound("property", identifier)
        return found

    def event(self, identifier: str) -> Event:
        """The event called `identifier`; raises `NotFound` if there is none."""
        found = self._index.get(identifier)
        if not isinstance(found, Event):
            raise NotFound("event", identifier)
        return found

    def service(self, identifier: str) -> Service:
        """The service called `identifier`; raises `NotFound` if there is none."""
        found = self._index.get(identifier)
        if not isinstance(found, Service):
            raise NotFound("service", identifier)
        return found
