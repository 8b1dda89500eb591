"""Reading thing-model JSON: error collection, small typed getters and the `Dialect`.

One parser serves two spellings of the same model: our JSON form (snake_case keys, typed
numbers) and Alibaba TSL (camelCase keys, numbers as strings, different enum/bool/struct
specs). A `Dialect` names the keys and reads the few specs that differ; every rule is checked
once, in `qiantang.domain.thingmodel_datatypes` and `qiantang.domain.thingmodel_parse`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from qiantang.domain.errors import FieldError

__all__ = [
    "INT32_MAX",
    "INT32_MIN",
    "INT64_MAX",
    "INT64_MIN",
    "MAX_ENUM_MEMBERS",
    "MAX_FEATURES",
    "MAX_PARAMS",
    "UNIT_MAX",
    "BoolReader",
    "Dialect",
    "EnumReader",
    "ErrorList",
    "FeatureHook",
    "NumberReader",
    "StructReader",
    "as_mapping",
    "check_str",
    "get_list",
    "get_str",
    "join",
    "opt_str",
    "show",
    "type_name",
]

MAX_FEATURES = 1024
"""Most properties (and, separately, events and services) one model may define."""
MAX_PARAMS = 256
"""Most params of one event or service direction, or fields of one struct."""
MAX_ENUM_MEMBERS = 1024
UNIT_MAX = 64
INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
INT32_MIN = -(2**31)
INT32_MAX = 2**31 - 1


class ErrorList:
    """The broken rules found so far."""

    __slots__ = ("errors",)

    def __init__(self) -> None:
        self.errors: list[FieldError] = []

    def add(self, field: str, rule: str, message: str) -> None:
        """Record one broken rule."""
        self.errors.append(FieldError(field, rule, message))

    def __len__(self) -> int:
        return len(self.errors)


def join(path: str, key: str) -> str:
    """``path.key``, or ``key`` at the root."""
    return f"{path}.{key}" if path else key


def show(value: object) -> str:
    """A short repr of user input for messages (long input is cut)."""
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def type_name(value: object) -> str:
    """How a JSON value's type reads in a message ("a string", "an object")."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, Mapping):
        return "an object"
    if isinstance(value, list | tuple):
        return "an array"
    return type(value).__name__


def check_str(
    errors: ErrorList, raw: object, path: str, max_len: int, min_len: int = 1
) -> str | None:
    """`raw` if it is a string of `min_len` to `max_len` characters, else record why not."""
    if raw is None and min_len:
        errors.add(path, "required", "is required")
        return None
    if not isinstance(raw, str):
        errors.add(path, "type", f"expected a string, got {type_name(raw)}")
        return None
    if len(raw) > max_len:
        errors.add(path, "max_length", f"longer than {max_len} characters")
        return None
    if len(raw) < min_len or (min_len and not raw.strip()):
        errors.add(path, "required", "must not be empty")
        return None
    return raw


def get_str(
    errors: ErrorList, obj: Mapping[str, object], key: str, path: str, max_len: int
) -> str | None:
    """The required, non-empty string `obj[key]`."""
    raw = obj.get(key)
    if raw is None:
        errors.add(join(path, key), "required", f"{key} is required")
        return None
    return check_str(errors, raw, join(path, key), max_len)


def opt_str(
    errors: ErrorList, obj: Mapping[str, object], key: str, path: str, max_len: int
) -> str | None:
    raw = obj.get(key)
    return None if raw is None else check_str(errors, raw, join(path, key), max_len, 0)


def get_list(
    errors: ErrorList, obj: Mapping[str, object], key: str, path: str, max_items: int
) -> Sequence[object]:
    """The array `obj[key]` (empty when absent); records a wrong type or too many items."""
    raw = obj.get(key)
    if raw is None:
        return ()
    if not isinstance(raw, list | tuple):
        errors.add(join(path, key), "type", f"expected an array, got {type_name(raw)}")
        return ()
    if len(raw) > max_items:
        errors.add(join(path, key), "max_items", f"more than {max_items} items")
        return ()
    return raw


def as_mapping(errors: ErrorList, raw: object, path: str) -> Mapping[str, object] | None:
    """`raw` if it is an object, else record that it is missing or of the wrong type."""
    if isinstance(raw, Mapping):
        return raw
    if raw is None:
        errors.add(path, "required", "is required")
    else:
        errors.add(path, "type", f"expected an object, got {type_name(raw)}")
    return None


NumberReader = Callable[[ErrorList, object, str], int | float | None]
"""Reads a spec number (``min``, ``size``, ...) from its JSON spelling."""
EnumReader = Callable[
    [ErrorList, Mapping[str, object], str], list[tuple[int, str, object, str]] | None
]
"""Reads enum specs into ``(value, path of the value, raw name, path of the name)``."""
BoolReader = Callable[
    [ErrorList, Mapping[str, object], str], tuple[tuple[object, str], tuple[object, str]]
]
"""Reads bool specs into ``((raw false label, path), (raw true label, path))``."""
StructReader = Callable[[ErrorList, object, str], tuple[Sequence[object], str] | None]
"""Finds the raw list of struct fields in the specs, with its path."""
FeatureHook = Callable[[str, Mapping[str, object], str, ErrorList], bool]
"""Called with (list key, raw feature, path, errors) before each feature; True skips it."""


@dataclass(frozen=True, slots=True)
class Dialect:
    """Key names and spec readers of one spelling of the thing model."""

    data_type: str
    access_mode: str
    call_type: str
    description: str
    input_data: str
    output_data: str
    unit_name: str
    read_number: NumberReader
    read_enum: EnumReader
    read_bool: BoolReader
    struct_fields: StructReader
