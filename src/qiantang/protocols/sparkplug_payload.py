"""Sparkplug B payload decoding.

The bytes are parsed by Google's protobuf runtime with classes generated from Eclipse Tahu's
``sparkplug_b.proto`` (`qiantang.protocols.sparkplug_b_pb2`); this module turns the message
into plain values and checks what protobuf cannot: data types, integer ranges, UTF-8,
array and DataSet shapes. `decode_payload` raises `SparkplugError` and nothing else.

A metric that names its data type (births always do) gets its value decoded here. A metric
in a DATA message may leave the type out and rely on the birth: it then keeps the raw wire
value and its protobuf field (`Metric.wire_field`), and `Metric.value_as` (or `typed`)
finishes the job once the caller knows the type.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final, TypeAlias

import msgspec

from qiantang.protocols import sparkplug_b_pb2 as pb
from qiantang.protocols.sparkplug_topics import SparkplugError
from qiantang.protocols.sparkplug_values import (
    ArrayValue,
    DataType,
    Scalar,
    basic_datatype,
    decode_value,
    metric_datatype,
    raw_scalar,
)

__all__ = [
    "DataSetValue",
    "Metric",
    "MetricValue",
    "PropertyValue",
    "SpbPayload",
    "TemplateParameter",
    "TemplateValue",
    "decode_payload",
]

MetricValue: TypeAlias = "Scalar | bytes | ArrayValue | DataSetValue | TemplateValue | None"
PropertyValue: TypeAlias = (
    "Scalar | dict[str, PropertyValue] | list[dict[str, PropertyValue]] | None"
)
_TS_MAX: Final = 2**63 - 1  # timestamps are int64 milliseconds everywhere in the platform
_MESSAGE_FIELDS: Final = {"dataset_value": DataType.DATASET, "template_value": DataType.TEMPLATE}


class DataSetValue(msgspec.Struct, frozen=True):
    """A DataSet: typed columns and rows of cells (None for a cell without a value)."""

    columns: tuple[str, ...]
    types: tuple[DataType, ...]
    rows: tuple[tuple[Scalar | None, ...], ...]


class TemplateParameter(msgspec.Struct, frozen=True):
    """A template parameter: its name, type and value."""

    name: str | None
    datatype: DataType | None
    value: Scalar | None


class TemplateValue(msgspec.Struct, frozen=True):
    """A template definition (`is_definition`) or an instance of `template_ref`."""

    template_ref: str | None
    is_definition: bool
    version: str | None
    metrics: tuple[Metric, ...]
    parameters: tuple[TemplateParameter, ...]


class Metric(msgspec.Struct, frozen=True):
    """One metric of a payload.

    `value` is decoded as `datatype`; when the payload left the data type out, `datatype`
    is None and `value` is the raw wire value of `wire_field` (``int_value``, ...) until
    `typed` is called. A null metric (`is_null`) has the value None.
    """

    name: str | None
    alias: int | None
    datatype: DataType | None
    value: MetricValue
    timestamp: int | None = None
    is_null: bool = False
    is_historical: bool = False
    is_transient: bool = False
    properties: dict[str, PropertyValue] = {}
    wire_field: str | None = None

    def value_as(self, datatype: DataType) -> MetricValue:
        """The value decoded as `datatype` (the type the birth gave this metric); raises
        `SparkplugError` if the payload named another type or the value does not fit."""
        if self.datatype is not None:
            if self.datatype is not datatype:
                raise SparkplugError(
                    "datatype",
                    "datatype_mismatch",
                    f"is {self.datatype.name}, the birth said {datatype.name}",
                )
            return self.value
        if self.is_null:
            return None
        expected = _MESSAGE_FIELDS.get(self.wire_field or "")
        if expected is not None:
            if expected is not datatype:
                raise SparkplugError("value", "value_type", f"{datatype.name} is not a message")
            return self.value
        if isinstance(self.value, int | float | str | bytes):
            return decode_value(datatype, self.wire_field, self.value)
        raise SparkplugError("value", "value_type", f"cannot read as {datatype.name}")

    def typed(self, datatype: DataType) -> Metric:
        """This metric with `datatype` and its value decoded as `value_as` does."""
        if self.datatype is not None and self.datatype is datatype:
            return self
        value = self.value_as(datatype)
        return msgspec.structs.replace(self, datatype=datatype, value=value)


class SpbPayload(msgspec.Struct, frozen=True):
    """A decoded Sparkplug B payload. `seq` is None where the message had none (NDEATH,
    NCMD, DCMD); timestamps are UTC milliseconds."""

    timestamp: int | None
    seq: int | None
    metrics: tuple[Metric, ...]
    uuid: str | None = None
    body: bytes | None = None


def decode_payload(data: bytes) -> SpbPayload:
    """Decode a Sparkplug B payload; raises `SparkplugError` (and nothing else) if it is
    not one."""
    message = pb.Payload()
    try:
        message.ParseFromString(data)
    except Exception as err:  # DecodeError from upb; the pure-Python backend raises more kinds
        raise SparkplugError("payload", "protobuf", "is not a Sparkplug B protobuf") from err
    return SpbPayload(
        _timestamp(message),
        message.seq if message.HasField("seq") else None,
        _metrics(message.metrics, "metrics"),
        _text(message.uuid, "uuid") if message.HasField("uuid") else None,
        message.body if message.HasField("body") else None,
    )


def _timestamp(message: pb.Payload) -> int | None:
    if not message.HasField("timestamp"):
        return None
    if message.timestamp > _TS_MAX:
        raise SparkplugError("timestamp", "timestamp_range", "is beyond the int64 range")
    return message.timestamp


def _text(value: object, field: str) -> str:
    if type(value) is not str:  # protobuf hands out bytes for a proto2 string of bad UTF-8
        raise SparkplugError(field, "utf8", "is not valid UTF-8")
    return value


def _metrics(items: Iterable[pb.Payload.Metric], prefix: str) -> tuple[Metric, ...]:
    out: list[Metric] = []
    for i, m in enumerate(items):
        try:
            out.append(_metric(m))
        except SparkplugError as err:
            raise err.prefixed(f"{prefix}[{i}]") from None
    return tuple(out)


def _metric(m: pb.Payload.Metric) -> Metric:
    datatype = metric_datatype(m.datatype) if m.HasField("datatype") else None
    field = m.WhichOneof("value")
    timestamp = m.timestamp if m.HasField("timestamp") else None
    if timestamp is not None and timestamp > _TS_MAX:
        raise SparkplugError("timestamp", "timestamp_range", "is beyond the int64 range")
    is_null = m.is_null
    return Metric(
        _text(m.name, "name") if m.HasField("name") else None,
        m.alias if m.HasField("alias") else None,
        datatype,
        None if is_null else _metric_value(m, datatype, field),
        timestamp,
        is_null,
        m.is_historical,
        m.is_transient,
        _properties(m.properties, "properties") if m.HasField("properties") else {},
        field,
    )


def _metric_value(
    m: pb.Payload.Metric, datatype: DataType | None, field: str | None
) -> MetricValue:
    if field is None:
        raise SparkplugError("value", "value_missing", "a metric that is not null needs a value")
    expected = _MESSAGE_FIELDS.get(field)
    if expected is not None:
        if datatype is not None and datatype is not expected:
            raise SparkplugError("value", "value_type", f"{datatype.name} is not {field}")
        try:
            if field == "dataset_value":
                return _dataset(m.dataset_value)
            return _template(m.template_value)
        except SparkplugError as err:
            raise err.prefixed("value") from None
    if field == "extension_value":
        raise SparkplugError("value", "unsupported", "extension values are not supported")
    raw = getattr(m, field)
    return raw_scalar(field, raw) if datatype is None else decode_value(datatype, field, raw)


def _scalar(datatype: DataType | None, field: str | None, raw: object) -> Scalar | None:
    """A DataSet cell, template parameter or property value of a basic type."""
    if field is None:
        return None
    if field == "extension_value" or not isinstance(raw, int | float | str | bytes):
        raise SparkplugError("value", "unsupported", "extension values are not supported")
    value = raw_scalar(field, raw) if datatype is None else decode_value(datatype, field, raw)
    if isinstance(value, bytes | list):  # only the array and bytes types give these
        raise SparkplugError("value", "value_type", "must be a scalar")
    return value


def _dataset(ds: pb.Payload.DataSet) -> DataSetValue:
    columns = tuple(_text(c, f"columns[{i}]") for i, c in enumerate(ds.columns))
    types: list[DataType] = []
    for i, t in enumerate(ds.types):
        try:
            types.append(basic_datatype(t))
        except SparkplugError as err:
            raise err.prefixed(f"types[{i}]") from None
    declared = ds.num_of_columns if ds.HasField("num_of_columns") else len(columns)
    if not len(columns) == len(types) == declared:
        raise SparkplugError("columns", "dataset_shape", "columns, types and count disagree")
    rows: list[tuple[Scalar | None, ...]] = []
    for r, row in enumerate(ds.rows):
        if len(row.elements) != len(types):
            raise SparkplugError(f"rows[{r}]", "dataset_shape", f"needs {len(types)} cells")
        cells: list[Scalar | None] = []
        for c, (datatype, cell) in enumerate(zip(types, row.elements, strict=True)):
            field = cell.WhichOneof("value")
            try:
                cells.append(_scalar(datatype, field, getattr(cell, field) if field else None))
            except SparkplugError as err:
                raise err.prefixed(f"rows[{r}][{c}]") from None
        rows.append(tuple(cells))
    return DataSetValue(columns, tuple(types), tuple(rows))


def _template(t: pb.Payload.Template) -> TemplateValue:
    parameters: list[TemplateParameter] = []
    for i, p in enumerate(t.parameters):
        try:
            datatype = basic_datatype(p.type) if p.HasField("type") else None
            field = p.WhichOneof("value")
            value = _scalar(datatype, field, getattr(p, field) if field else None)
            name = _text(p.name, "name") if p.HasField("name") else None
        except SparkplugError as err:
            raise err.prefixed(f"parameters[{i}]") from None
        parameters.append(TemplateParameter(name, datatype, value))
    return TemplateValue(
        _text(t.template_ref, "template_ref") if t.HasField("template_ref") else None,
        t.is_definition,
        _text(t.version, "version") if t.HasField("version") else None,
        _metrics(t.metrics, "metrics"),
        tuple(parameters),
    )


def _properties(ps: pb.Payload.PropertySet, field: str) -> dict[str, PropertyValue]:
    if len(ps.keys) != len(ps.values):
        raise SparkplugError(field, "property_shape", "needs as many keys as values")
    out: dict[str, PropertyValue] = {}
    for key, pv in zip(ps.keys, ps.values, strict=True):
        name = _text(key, field)
        try:
            out[name] = _property_value(pv)
        except SparkplugError as err:
            raise err.prefixed(f"{field}[{name!r}]") from None
    return out


def _property_value(pv: pb.Payload.PropertyValue) -> PropertyValue:
    if pv.is_null:
        return None
    field = pv.WhichOneof("value")
    if field == "propertyset_value":
        return _properties(pv.propertyset_value, "value")
    if field == "propertysets_value":
        return [_properties(s, "value") for s in pv.propertysets_value.propertyset]
    datatype = basic_datatype(pv.type) if pv.HasField("type") else None
    return _scalar(datatype, field, getattr(pv, field) if field else None)
