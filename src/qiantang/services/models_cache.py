"""Compiled thing models, one per product, compiled once per model version."""

from __future__ import annotations

from sqlalchemy.orm import Session, sessionmaker

from qiantang.domain.thingmodel import ThingModel
from qiantang.domain.validation import CompiledModel, compile_model
from qiantang.registry.tables import Product

__all__ = ["ModelCache"]


class ModelCache:
    """Product id -> compiled model. The API invalidates an entry when a product's model
    changes; the next message of that product compiles the new version."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions
        self._models: dict[int, CompiledModel] = {}

    def cached(self, product_id: int) -> CompiledModel | None:
        """The compiled model if it is loaded (no I/O)."""
        return self._models.get(product_id)

    def load(self, product_id: int) -> CompiledModel | None:
        """Load and compile from the registry (blocking; call it from a worker thread)."""
        with self._sessions() as db:
            product = db.get(Product, product_id)
            if product is None:
                return None
            compiled = compile_model(ThingModel.from_dict(product.thing_model))
        self._models[product_id] = compiled
        return compiled

    def invalidate(self, product_id: int) -> None:
        """Forget a product's model (it changed or the product is gone)."""
        self._models.pop(product_id, None)
