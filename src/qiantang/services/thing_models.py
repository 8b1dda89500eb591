"""Reading a thing model from a request: our JSON, Alibaba TSL JSON, or a template."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from qiantang.domain.errors import InvalidInput
from qiantang.domain.thingmodel import ThingModel
from qiantang.protocols.tsl import export_tsl, import_tsl

__all__ = ["model_from_request", "stored_model", "tsl_of"]


def model_from_request(
    thing_model: Mapping[str, Any] | None, tsl: Mapping[str, Any] | None
) -> ThingModel | None:
    """The model given as our JSON (`thing_model`) or as TSL JSON (`tsl`), at most one."""
    if thing_model is not None and tsl is not None:
        raise InvalidInput.of("tsl", "one_of", "give thing_model or tsl, not both")
    if thing_model is not None:
        try:
            return ThingModel.from_dict(thing_model)
        except InvalidInput as err:
            raise err.prefixed("thing_model") from err
    if tsl is not None:
        try:
            return import_tsl(tsl).model
        except InvalidInput as err:
            raise err.prefixed("tsl") from err
    return None


def stored_model(data: Mapping[str, Any]) -> ThingModel:
    """A model as the registry keeps it (our JSON, validated when it was stored)."""
    return ThingModel.from_dict(data)


def tsl_of(data: Mapping[str, Any], product_key: str) -> dict[str, object]:
    """The stored model as Alibaba TSL JSON for `product_key`."""
    return export_tsl(stored_model(data), product_key)
