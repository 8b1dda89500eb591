"""Ports: the small `typing.Protocol` interfaces the services depend on.

Each port has an embedded adapter and a scale-out adapter under `qiantang.adapters`, and one
contract test suite under `tests/contract/` that runs against every adapter.
"""

from __future__ import annotations

__all__: list[str] = []
