"""Parsing and validating a whole thing model from JSON-shaped data.

`parse_model` reads a model in any `Dialect` and raises one `InvalidInput` listing every
broken rule, with field paths in the dialect's own key names
(``properties[0].data_type.specs.min`` here, ``properties[0].dataType.specs.min`` in TSL).
`OUR_DIALECT` is our JSON form (see `qiantang.domain.thingmodel`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TypeVar, cast

from qiantang.domain.errors import InvalidInput
from qiantang.domain.thingmodel import (
    DATA_TYPES,
    DESCRIPTION_MAX,
    NAME_MAX,
    AccessMode,
    CallType,
    Event,
    EventType,
    Param,
    Property,
    Service,
    ThingModel,
)
from qiantang.domain.thingmodel_datatypes import DataTypeParser
from qiantang.domain.thingmodel_input import (
    MAX_ENUM_MEMBERS,
    MAX_FEATURES,
    MAX_PARAMS,
    Dialect,
    ErrorList,
    FeatureHook,
    as_mapping,
    get_list,
    get_str,
    join,
    opt_str,
    type_name,
)

__all__ = ["OUR_DIALECT", "parse_model"]

T = TypeVar("T")


def _read_typed_number(errors: ErrorList, raw: object, path: str) -> int | float | None:
    if isinstance(raw, int | float) and not isinstance(raw, bool):
        return raw
    errors.add(path, "type", f"expected a number, got {type_name(raw)}")
    return None


def _read_our_enum(
    errors: ErrorList, specs: Mapping[str, object], path: str
) -> list[tuple[int, str, object, str]] | None:
    mpath = join(path, "members")
    raw = specs.get("members")
    if raw is None:
        errors.add(mpath, "enum_empty", "an enum needs at least one member")
        return None
    out: list[tuple[int, str, object, str]] = []
    for i, item in enumerate(get_list(errors, specs, "members", path, MAX_ENUM_MEMBERS)):
        ipath = f"{mpath}[{i}]"
        member = as_mapping(errors, item, ipath)
        if member is None:
            continue
        value = member.get("value")
        if isinstance(value, int) and not isinstance(value, bool):
            out.append((value, join(ipath, "value"), member.get("name"), join(ipath, "name")))
        else:
            errors.add(join(ipath, "value"), "enum_value", "an enum value must be an integer")
    return out


def _read_our_bool(
    errors: ErrorList, specs: Mapping[str, object], path: str
) -> tuple[tuple[object, str], tuple[object, str]]:
    return (specs.get("false"), join(path, "false")), (specs.get("true"), join(path, "true"))


def _read_our_struct(
    errors: ErrorList, specs: object, path: str
) -> tuple[Sequence[object], str] | None:
    obj = as_mapping(errors, specs, path)
    if obj is None:
        return None
    return get_list(errors, obj, "fields", path, MAX_PARAMS), join(path, "fields")


OUR_DIALECT = Dialect(
    data_type="data_type",
    access_mode="access_mode",
    call_type="call_type",
    description="description",
    input_data="input_data",
    output_data="output_data",
    unit_name="unit_name",
    read_number=_read_typed_number,
    read_enum=_read_our_enum,
    read_bool=_read_our_bool,
    struct_fields=_read_our_struct,
)
"""Our JSON form: snake_case keys, typed numbers (see `qiantang.domain.thingmodel`)."""


def parse_model(
    data: Mapping[str, object],
    dialect: Dialect,
    hook: FeatureHook | None = None,
    errors: ErrorList | None = None,
) -> ThingModel:
    """Parse and validate a thing model; raises `InvalidInput` listing every broken rule,
    those already in `errors` (found by the caller in the same document) included."""
    if not isinstance(data, Mapping):
        raise InvalidInput.of("", "type", f"expected an object, got {type_name(data)}")
    parser = _FeatureParser(dialect, hook, errors if errors is not None else ErrorList())
    properties = parser.features(data, "properties", parser.property)
    events = parser.features(data, "events", parser.event)
    services = parser.features(data, "services", parser.service)
    if parser.errors:
        raise InvalidInput(parser.errors.errors)
    return ThingModel(properties, events, services)


class _FeatureParser(DataTypeParser):
    """One parse of a whole model: data types plus properties, events and services."""

    def __init__(self, dialect: Dialect, hook: FeatureHook | None, errors: ErrorList) -> None:
        super().__init__(dialect, errors)
        self.hook = hook
        self.seen: dict[str, str] = {}

    def features(
        self,
        data: Mapping[str, object],
        key: str,
        parse_one: Callable[[Mapping[str, object], str], T | None],
    ) -> tuple[T, ...]:
        out: list[T] = []
        for i, item in enumerate(get_list(self.errors, data, key, "", MAX_FEATURES)):
            path = f"{key}[{i}]"
            obj = as_mapping(self.errors, item, path)
            if obj is None or (self.hook is not None and self.hook(key, obj, path, self.errors)):
                continue
            feature = parse_one(obj, path)
            if feature is not None:
                out.append(feature)
        return tuple(out)

    def _choice(
        self, obj: Mapping[str, object], key: str, path: str, choices: tuple[str, ...]
    ) -> str | None:
        raw = obj.get(key)
        if isinstance(raw, str) and raw in choices:
            return raw
        rule = "required" if raw is None else "choice"
        self.errors.add(join(path, key), rule, f"must be one of {', '.join(choices)}")
        return None

    def _bool(self, obj: Mapping[str, object], key: str, path: str) -> bool:
        raw = obj.get(key, False)
        if isinstance(raw, bool):
            return raw
        self.errors.add(join(path, key), "type", f"expected true or false, got {type_name(raw)}")
        return False

    def _common(
        self, obj: Mapping[str, object], path: str
    ) -> tuple[str | None, str | None, bool, str]:
        ident = self.identifier(obj, path, self.seen)
        name = get_str(self.errors, obj, "name", path, NAME_MAX)
        required = self._bool(obj, "required", path)
        desc = opt_str(self.errors, obj, self.d.description, path, DESCRIPTION_MAX)
        return ident, name, required, desc or ""

    def property(self, obj: Mapping[str, object], path: str) -> Property | None:
        ident, name, required, desc = self._common(obj, path)
        mode = self._choice(obj, self.d.access_mode, path, ("r", "rw"))
        dt = self.data_type(obj, path, DATA_TYPES)
        if ident is None or name is None or mode is None or dt is None:
            return None
        return Property(ident, name, cast(AccessMode, mode), dt, required, desc)

    def event(self, obj: Mapping[str, object], path: str) -> Event | None:
        ident, name, required, desc = self._common(obj, path)
        kind = self._choice(obj, "type", path, ("info", "alert", "error"))
        output = self.params(obj, self.d.output_data, path)
        if ident is None or name is None or kind is None:
            return None
        return Event(ident, name, cast(EventType, kind), output, required, desc)

    def service(self, obj: Mapping[str, object], path: str) -> Service | None:
        ident, name, required, desc = self._common(obj, path)
        call = self._choice(obj, self.d.call_type, path, ("sync", "async"))
        inputs = self.params(obj, self.d.input_data, path)
        outputs = self.params(obj, self.d.output_data, path)
        if ident is None or name is None or call is None:
            return None
        return Service(ident, name, cast(CallType, call), inputs, outputs, required, desc)

    def params(self, obj: Mapping[str, object], key: str, path: str) -> tuple[Param, ...]:
        items = get_list(self.errors, obj, key, path, MAX_PARAMS)
        return self.param_list(items, join(path, key), DATA_TYPES)
