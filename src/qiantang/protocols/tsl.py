"""Alibaba Cloud IoT TSL (物模型 TSL JSON) import and export.

TSL spells the thing model in camelCase (``accessMode``, ``dataType``, ``unitName``,
``callType``, ``inputData``, ``outputData``, ``desc``) with spec numbers as strings
(``"min": "0"``, ``"step": "0.01"``, ``"length": "255"``, ``"size": "10"``), enum specs as
``{"0": "停机", "1": "运行"}``, bool specs as ``{"0": "关", "1": "开"}``, struct specs as a list
of fields, array specs as ``{"size": "10", "item": {"type": "int"}}`` and date specs as ``{}``.
Import checks the same rules as `ThingModel.from_dict` and reports field paths in TSL terms
(``properties[0].dataType.specs.min``). Spec numbers given as JSON numbers are accepted too.

**The auto-generated features.** Alibaba adds to every exported TSL an event ``post``
(type info, method ``thing.event.property.post``, outputData = every property) and services
``set`` (method ``thing.service.property.set``, inputData = the read-write properties) and
``get`` (method ``thing.service.property.get``, inputData = the property identifiers,
outputData = every property). They are derived from the properties, so import **drops** them
(remembering only which were present and the call type of ``set``/``get`` in
`GeneratedFeatures`) and export **regenerates** them from the model. Import then export is
therefore equal in meaning for any TSL whose generated features agree with its properties,
which is every TSL Alibaba exports. ``post``, ``set`` and ``get`` are reserved identifiers, so
no user feature can clash with them.

The ``method`` of other features is derived too (``thing.event.{id}.post``,
``thing.service.{id}``): import checks it when present and export writes it. The document's
``schema``, its ``profile`` (``productKey`` plus anything else, e.g. ``version``) and unknown
top-level keys (``link``, ``functionBlockId``, ...) are kept in `TslDocument` so that
`TslDocument.to_tsl` gives the document back. Unknown keys inside features are ignored.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from qiantang.domain.errors import InvalidInput
from qiantang.domain.thingmodel import (
    ArrayType,
    BoolType,
    CallType,
    DataType,
    EnumType,
    Event,
    NumberType,
    Param,
    Property,
    Service,
    StructType,
    TextType,
    ThingModel,
)
from qiantang.domain.thingmodel_input import (
    Dialect,
    ErrorList,
    as_mapping,
    check_str,
    join,
    show,
    type_name,
)
from qiantang.domain.thingmodel_parse import parse_model

__all__ = [
    "DEFAULT_SCHEMA",
    "TSL_DIALECT",
    "GeneratedFeatures",
    "TslDocument",
    "export_tsl",
    "import_tsl",
]

DEFAULT_SCHEMA = "https://iotx-tsl.oss-ap-southeast-1.aliyuncs.com/schema.json"
_MODEL_KEYS = frozenset({"schema", "profile", "properties", "events", "services"})
_NUMBER = re.compile(r"-?\d{1,40}(\.\d{1,40})?([eE][+-]?\d{1,4})?")
_INTEGER = re.compile(r"-?\d{1,40}")
_ENUM_KEY = re.compile(r"-?\d{1,10}")
_SHORT_MAX = 512
_EXTRAS_MAX = 64


@dataclass(frozen=True, slots=True)
class GeneratedFeatures:
    """Which of Alibaba's auto-generated features a TSL document has, and their call types
    (None: the service is absent)."""

    post: bool = True
    set_call_type: CallType | None = "async"
    get_call_type: CallType | None = "async"


@dataclass(frozen=True, slots=True)
class TslDocument:
    """An imported TSL document: the model plus what TSL carries besides it."""

    model: ThingModel
    product_key: str
    schema: str = DEFAULT_SCHEMA
    profile: Mapping[str, str] = field(default_factory=dict)
    """Profile entries other than ``productKey`` (e.g. ``version``)."""
    extras: Mapping[str, object] = field(default_factory=dict)
    """Top-level keys other than schema, profile, properties, events and services."""
    generated: GeneratedFeatures = GeneratedFeatures()

    def to_tsl(self) -> dict[str, object]:
        """The document as TSL JSON again (equal in meaning to what was imported)."""
        return export_tsl(
            self.model,
            self.product_key,
            schema=self.schema,
            profile=self.profile,
            extras=self.extras,
            generated=self.generated,
        )


# --- import ---------------------------------------------------------------------------------


def _read_number(errors: ErrorList, raw: object, path: str) -> int | float | None:
    if isinstance(raw, int | float) and not isinstance(raw, bool):
        return raw
    if not isinstance(raw, str):
        errors.add(path, "type", f"expected a number as a string, got {type_name(raw)}")
        return None
    text = raw.strip()
    if _INTEGER.fullmatch(text):
        return int(text)
    if _NUMBER.fullmatch(text):
        return float(text)
    errors.add(path, "number", f"{show(raw)} is not a number")
    return None


def _read_enum(
    errors: ErrorList, specs: Mapping[str, object], path: str
) -> list[tuple[int, str, object, str]]:
    out: list[tuple[int, str, object, str]] = []
    for key, name in specs.items():
        kpath = join(path, str(key)[:40])
        if isinstance(key, str) and _ENUM_KEY.fullmatch(key):
            out.append((int(key), kpath, name, kpath))
        else:
            errors.add(kpath, "enum_value", f"enum key {show(key)} is not an integer")
    return out


def _read_bool(
    errors: ErrorList, specs: Mapping[str, object], path: str
) -> tuple[tuple[object, str], tuple[object, str]]:
    return (specs.get("0"), join(path, "0")), (specs.get("1"), join(path, "1"))


def _read_struct(
    errors: ErrorList, specs: object, path: str
) -> tuple[Sequence[object], str] | None:
    if isinstance(specs, list | tuple):
        return specs, path
    errors.add(path, "type", f"struct specs must be an array of fields, got {type_name(specs)}")
    return None


TSL_DIALECT = Dialect(
    data_type="dataType",
    access_mode="accessMode",
    call_type="callType",
    description="desc",
    input_data="inputData",
    output_data="outputData",
    unit_name="unitName",
    read_number=_read_number,
    read_enum=_read_enum,
    read_bool=_read_bool,
    struct_fields=_read_struct,
)
"""How TSL spells the thing model, for `qiantang.domain.thingmodel_parse.parse_model`."""


class _GeneratedCollector:
    """The parse hook: drops ``post``/``set``/``get``, noting them; checks other methods."""

    def __init__(self) -> None:
        self.post = False
        self.call_types: dict[str, CallType | None] = {"set": None, "get": None}

    def __call__(self, key: str, obj: Mapping[str, object], path: str, errors: ErrorList) -> bool:
        ident = obj.get("identifier")
        if key == "events" and ident == "post":
            self.post = True
            return True
        if key == "services" and (ident == "set" or ident == "get"):
            self.call_types[ident] = self._call_type(obj, path, errors)
            return True
        if key != "properties" and isinstance(ident, str):
            expected = f"thing.event.{ident}.post" if key == "events" else f"thing.service.{ident}"
            method = obj.get("method", expected)
            if method != expected:
                errors.add(join(path, "method"), "method", f"method must be {show(expected)}")
        return False

    @staticmethod
    def _call_type(obj: Mapping[str, object], path: str, errors: ErrorList) -> CallType:
        raw = obj.get("callType", "async")
        if raw == "sync":
            return "sync"
        if raw != "async":
            errors.add(join(path, "callType"), "choice", "must be one of sync, async")
        return "async"

    def features(self) -> GeneratedFeatures:
        return GeneratedFeatures(self.post, self.call_types["set"], self.call_types["get"])


def _profile(errors: ErrorList, doc: Mapping[str, object]) -> tuple[str, dict[str, str]]:
    raw = as_mapping(errors, doc.get("profile"), "profile")
    if raw is None:
        return "", {}
    key = check_str(errors, raw.get("productKey"), "profile.productKey", 64)
    rest: dict[str, str] = {}
    if len(raw) > _EXTRAS_MAX:
        errors.add("profile", "max_items", f"more than {_EXTRAS_MAX} entries")
        return key or "", rest
    for name, value in raw.items():
        if name != "productKey":
            text = check_str(errors, value, join("profile", str(name)[:40]), _SHORT_MAX, 0)
            if text is not None and isinstance(name, str):
                rest[name] = text
    return key or "", rest


def import_tsl(doc: Mapping[str, object]) -> TslDocument:
    """Read a TSL document; raises `InvalidInput` with TSL field paths for every broken rule."""
    if not isinstance(doc, Mapping):
        raise InvalidInput.of("", "type", f"expected an object, got {type_name(doc)}")
    errors = ErrorList()
    raw_schema = doc.get("schema")
    schema = DEFAULT_SCHEMA if raw_schema is None else check_str(errors, raw_schema, "schema", 512)
    product_key, profile = _profile(errors, doc)
    extras = {k: v for k, v in doc.items() if k not in _MODEL_KEYS}
    if len(extras) > _EXTRAS_MAX:
        errors.add("", "max_items", f"more than {_EXTRAS_MAX} unknown top-level keys")
    collector = _GeneratedCollector()
    model = parse_model(doc, TSL_DIALECT, collector, errors)  # raises if any errors
    return TslDocument(
        model, product_key, schema or DEFAULT_SCHEMA, profile, extras, collector.features()
    )


# --- export ---------------------------------------------------------------------------------


def _num(value: int | float) -> str:
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(value)


def _number_specs(dt: NumberType) -> dict[str, object]:
    specs: dict[str, object] = {}
    for key, value in (("min", dt.min), ("max", dt.max), ("step", dt.step)):
        if value is not None:
            specs[key] = _num(value)
    if dt.unit is not None:
        specs["unit"] = dt.unit
    if dt.unit_name is not None:
        specs["unitName"] = dt.unit_name
    return specs


def _specs(dt: DataType) -> object:
    if isinstance(dt, NumberType):
        return _number_specs(dt)
    if isinstance(dt, TextType):
        return {} if dt.length is None else {"length": str(dt.length)}
    if isinstance(dt, EnumType):
        return {str(value): name for value, name in dt.members}
    if isinstance(dt, BoolType):
        return {"0": dt.false_label, "1": dt.true_label}
    if isinstance(dt, StructType):
        return [_param(p) for p in dt.fields]
    if isinstance(dt, ArrayType):
        item: dict[str, object] = {"type": dt.item.type}
        item_specs = _specs(dt.item)
        if item_specs:
            item["specs"] = item_specs
        return {"size": str(dt.size), "item": item}
    return {}


def _data_type(dt: DataType) -> dict[str, object]:
    return {"type": dt.type, "specs": _specs(dt)}


def _param(p: Param | Property) -> dict[str, object]:
    return {"identifier": p.identifier, "name": p.name, "dataType": _data_type(p.data_type)}


def _with_desc(out: dict[str, object], description: str) -> dict[str, object]:
    if description:
        out["desc"] = description
    return out


def _property(p: Property) -> dict[str, object]:
    out = {
        "identifier": p.identifier,
        "name": p.name,
        "accessMode": p.access_mode,
        "required": p.required,
        "dataType": _data_type(p.data_type),
    }
    return _with_desc(out, p.description)


def _event(e: Event) -> dict[str, object]:
    out: dict[str, object] = {
        "identifier": e.identifier,
        "name": e.name,
        "type": e.type,
        "required": e.required,
        "method": f"thing.event.{e.identifier}.post",
        "outputData": [_param(p) for p in e.output_data],
    }
    return _with_desc(out, e.description)


def _service(s: Service) -> dict[str, object]:
    out: dict[str, object] = {
        "identifier": s.identifier,
        "name": s.name,
        "callType": s.call_type,
        "required": s.required,
        "method": f"thing.service.{s.identifier}",
        "inputData": [_param(p) for p in s.input_data],
        "outputData": [_param(p) for p in s.output_data],
    }
    return _with_desc(out, s.description)


def _generated_event(model: ThingModel) -> dict[str, object]:
    return {
        "identifier": "post",
        "name": "post",
        "type": "info",
        "required": True,
        "desc": "属性上报",
        "method": "thing.event.property.post",
        "outputData": [_param(p) for p in model.properties],
    }


def _generated_service(
    model: ThingModel, ident: str, call_type: CallType, desc: str
) -> dict[str, object]:
    if ident == "set":
        inputs: list[object] = [_param(p) for p in model.properties if p.access_mode == "rw"]
        outputs: list[object] = []
    else:
        inputs = [p.identifier for p in model.properties]
        outputs = [_param(p) for p in model.properties]
    return {
        "identifier": ident,
        "name": ident,
        "required": True,
        "callType": call_type,
        "desc": desc,
        "method": f"thing.service.property.{ident}",
        "inputData": inputs,
        "outputData": outputs,
    }


def export_tsl(
    model: ThingModel,
    product_key: str,
    *,
    schema: str = DEFAULT_SCHEMA,
    profile: Mapping[str, str] | None = None,
    extras: Mapping[str, object] | None = None,
    generated: GeneratedFeatures | None = None,
) -> dict[str, object]:
    """`model` as Alibaba TSL JSON for `product_key`, with the ``post`` event and ``set``/``get``
    services regenerated from the properties (all three unless `generated` says otherwise).
    `profile` holds profile entries besides ``productKey`` (default ``{"version": "1.0"}``)."""
    gen = generated if generated is not None else GeneratedFeatures()
    events = [_generated_event(model)] if gen.post else []
    services = []
    if gen.set_call_type is not None:
        services.append(_generated_service(model, "set", gen.set_call_type, "属性设置"))
    if gen.get_call_type is not None:
        services.append(_generated_service(model, "get", gen.get_call_type, "属性获取"))
    out: dict[str, object] = {
        "schema": schema,
        "profile": {
            **(profile if profile is not None else {"version": "1.0"}),
            "productKey": product_key,
        },
    }
    out.update({k: v for k, v in (extras or {}).items() if k not in _MODEL_KEYS})
    out["properties"] = [_property(p) for p in model.properties]
    out["events"] = events + [_event(e) for e in model.events]
    out["services"] = services + [_service(s) for s in model.services]
    return out
