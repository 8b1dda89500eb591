"""Parsing data types and params: the rules on specs, identifiers and struct fields."""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from typing import ClassVar, Literal, TypeAlias, cast

from qiantang.domain.thingmodel import (
    ARRAY_ITEM_TYPES,
    ARRAY_SIZE_MAX,
    DATA_TYPES,
    IDENTIFIER_MAX,
    NAME_MAX,
    RESERVED_IDENTIFIERS,
    STRUCT_FIELD_TYPES,
    TEXT_LENGTH_MAX,
    ArrayType,
    BoolType,
    DataType,
    DateType,
    EnumType,
    NumberType,
    Param,
    StructType,
    TextType,
)
from qiantang.domain.thingmodel_input import (
    INT32_MAX,
    INT32_MIN,
    INT64_MAX,
    INT64_MIN,
    MAX_ENUM_MEMBERS,
    UNIT_MAX,
    Dialect,
    ErrorList,
    as_mapping,
    check_str,
    get_str,
    join,
    opt_str,
    show,
)

__all__ = ["DataTypeParser"]

_IDENTIFIER = re.compile(r"[A-Za-z0-9_]+")
NumberTypeName: TypeAlias = Literal["int", "float", "double"]


class DataTypeParser:
    """Parses data types and params in one dialect, collecting broken rules in `errors`."""

    def __init__(self, dialect: Dialect, errors: ErrorList) -> None:
        self.d = dialect
        self.errors = errors

    def identifier(self, obj: Mapping[str, object], path: str, seen: dict[str, str]) -> str | None:
        """``obj["identifier"]``, checked for syntax, reserved words and duplicates in `seen`
        (which it extends)."""
        ident = get_str(self.errors, obj, "identifier", path, IDENTIFIER_MAX)
        ipath = join(path, "identifier")
        if ident is None:
            return None
        if not _IDENTIFIER.fullmatch(ident):
            self.errors.add(ipath, "identifier_syntax", "use letters, digits and underscores only")
        elif ident in RESERVED_IDENTIFIERS:
            self.errors.add(ipath, "reserved_identifier", f"{ident!r} is reserved")
        elif ident in seen:
            self.errors.add(
                ipath, "duplicate_identifier", f"{ident!r} is already used at {seen[ident]}"
            )
        else:
            seen[ident] = ipath
        return ident

    def param_list(
        self, items: Sequence[object], path: str, allowed: frozenset[str]
    ) -> tuple[Param, ...]:
        """Params (or struct fields) whose data types are among `allowed`."""
        seen: dict[str, str] = {}
        out: list[Param] = []
        for i, item in enumerate(items):
            ipath = f"{path}[{i}]"
            obj = as_mapping(self.errors, item, ipath)
            if obj is None:
                continue
            ident = self.identifier(obj, ipath, seen)
            name = get_str(self.errors, obj, "name", ipath, NAME_MAX)
            dt = self.data_type(obj, ipath, allowed)
            if ident is not None and name is not None and dt is not None:
                out.append(Param(ident, name, dt))
        return tuple(out)

    def data_type(
        self, obj: Mapping[str, object], path: str, allowed: frozenset[str]
    ) -> DataType | None:
        """The data type under the dialect's data-type key of `obj`."""
        dpath = join(path, self.d.data_type)
        raw = as_mapping(self.errors, obj.get(self.d.data_type), dpath)
        return None if raw is None else self.typed(raw, dpath, allowed)

    def typed(
        self, raw: Mapping[str, object], path: str, allowed: frozenset[str]
    ) -> DataType | None:
        """A ``{"type", "specs"}`` object whose type is among `allowed`."""
        kind = raw.get("type")
        tpath = join(path, "type")
        if not isinstance(kind, str) or kind not in DATA_TYPES:
            rule = "required" if kind is None else "unknown_type"
            self.errors.add(tpath, rule, f"unknown data type {show(kind)}")
            return None
        if kind not in allowed:
            self.errors.add(tpath, "type_not_allowed", f"{kind} is not allowed here")
            return None
        specs, spath = raw.get("specs"), join(path, "specs")
        if kind == "struct":
            return self._struct(specs, spath)
        spec_map = {} if specs is None else as_mapping(self.errors, specs, spath)
        if spec_map is None:
            return None
        if kind in ("int", "float", "double"):
            return self._number(cast(NumberTypeName, kind), spec_map, spath)
        return self._SPECS[kind](self, spec_map, spath)

    def _number(
        self, kind: NumberTypeName, specs: Mapping[str, object], path: str
    ) -> NumberType | None:
        integral = kind == "int"
        lo = self._num(specs, "min", path, integral)
        hi = self._num(specs, "max", path, integral)
        step = self._num(specs, "step", path, integral)
        unit = opt_str(self.errors, specs, "unit", path, UNIT_MAX)
        unit_name = opt_str(self.errors, specs, self.d.unit_name, path, UNIT_MAX)
        if lo is not None and hi is not None and lo > hi:
            self.errors.add(join(path, "min"), "min_le_max", f"min {lo} is greater than max {hi}")
        if step is not None:
            self._check_step(step, lo, hi, join(path, "step"))
        return NumberType(kind, lo, hi, step, unit, unit_name)

    def _check_step(
        self, step: int | float, lo: int | float | None, hi: int | float | None, path: str
    ) -> None:
        if step <= 0:
            self.errors.add(path, "step_positive", "step must be greater than 0")
        elif lo is not None and hi is not None and hi > lo and step > hi - lo:
            self.errors.add(path, "step_le_range", "step is larger than max - min")

    def _num(
        self, specs: Mapping[str, object], key: str, path: str, integral: bool
    ) -> int | float | None:
        raw = specs.get(key)
        if raw is None:
            return None
        kpath = join(path, key)
        value = self.d.read_number(self.errors, raw, kpath)
        if value is None:
            return None
        if integral:
            if isinstance(value, float):
                if not value.is_integer():
                    self.errors.add(kpath, "integer", "must be a whole number")
                    return None
                value = int(value)
            if not INT64_MIN <= value <= INT64_MAX:
                self.errors.add(kpath, "range", "outside the 64-bit integer range")
                return None
            return value
        try:
            value = float(value)
        except OverflowError:
            value = math.inf
        if not math.isfinite(value):
            self.errors.add(kpath, "finite", "must be a finite number")
            return None
        return value

    def _bounded_int(
        self, specs: Mapping[str, object], key: str, path: str, top: int
    ) -> int | None:
        value = self._num(specs, key, path, True)
        if value is not None and not 1 <= value <= top:
            rule = "array_size_range" if key == "size" else "length_range"
            self.errors.add(join(path, key), rule, f"{key} must be between 1 and {top}")
            return None
        return cast(int | None, value)

    def _text(self, specs: Mapping[str, object], path: str) -> TextType | None:
        return TextType(self._bounded_int(specs, "length", path, TEXT_LENGTH_MAX))

    def _date(self, specs: Mapping[str, object], path: str) -> DateType:
        return DateType()

    def _enum(self, specs: Mapping[str, object], path: str) -> EnumType | None:
        members = self.d.read_enum(self.errors, specs, path)
        if members is None:
            return None
        if not members:
            self.errors.add(path, "enum_empty", "an enum needs at least one member")
            return None
        if len(members) > MAX_ENUM_MEMBERS:
            self.errors.add(path, "max_items", f"more than {MAX_ENUM_MEMBERS} members")
            return None
        out: dict[int, str] = {}
        for value, vpath, raw_name, npath in members:
            name = check_str(self.errors, raw_name, npath, NAME_MAX)
            if not INT32_MIN <= value <= INT32_MAX:
                self.errors.add(vpath, "enum_value", "an enum value must fit in 32 bits")
            elif value in out:
                self.errors.add(vpath, "duplicate_value", f"enum value {value} appears twice")
            elif name is not None:
                out[value] = name
        return EnumType(tuple(out.items()))

    def _boolean(self, specs: Mapping[str, object], path: str) -> BoolType | None:
        (raw_false, false_path), (raw_true, true_path) = self.d.read_bool(self.errors, specs, path)
        false_label = check_str(self.errors, raw_false, false_path, NAME_MAX)
        true_label = check_str(self.errors, raw_true, true_path, NAME_MAX)
        if false_label is None or true_label is None:
            return None
        return BoolType(false_label, true_label)

    def _struct(self, specs: object, path: str) -> StructType | None:
        found = self.d.struct_fields(self.errors, specs, path)
        if found is None:
            return None
        items, fields_path = found
        if not items:
            self.errors.add(fields_path, "struct_empty", "a struct needs at least one field")
            return None
        return StructType(self.param_list(items, fields_path, STRUCT_FIELD_TYPES))

    def _array(self, specs: Mapping[str, object], path: str) -> ArrayType | None:
        size = self._bounded_int(specs, "size", path, ARRAY_SIZE_MAX)
        if specs.get("size") is None:
            self.errors.add(join(path, "size"), "required", "an array needs a size")
        ipath = join(path, "item")
        raw_item = as_mapping(self.errors, specs.get("item"), ipath)
        item = None if raw_item is None else self.typed(raw_item, ipath, ARRAY_ITEM_TYPES)
        if size is None or item is None:
            return None
        return ArrayType(size, item)

    _SPECS: ClassVar[
        Mapping[str, Callable[[DataTypeParser, Mapping[str, object], str], DataType | None]]
    ] = {
        "text": _text,
        "date": _date,
        "enum": _enum,
        "bool": _boolean,
        "array": _array,
    }
