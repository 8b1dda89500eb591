"""The registry side of Sparkplug B edge nodes: devices behind a node and births that
extend thing models.

- An edge node is a Qiantang device (normally a gateway); a device a DBIRTH announces is
  the device of that name in the node's topology, else - when the node has a provisioning
  product (``provision_product_id``, the same switch as for ThingsBoard gateways) - the
  device of that name in that product, created if it does not exist and put in the node's
  topology. A device that belongs to another gateway, a name that is not a valid device
  name, or a node without a provisioning product refuses the device (with a reason).
- `extend_model` adds a property for every metric of a birth that the product's model does
  not have yet (names by `qiantang.protocols.sparkplug_naming`), as a new model version.

Blocking registry I/O: call from a worker thread.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from qiantang.domain.errors import InvalidInput
from qiantang.domain.thingmodel import ThingModel
from qiantang.ports.ingress import Identity
from qiantang.protocols.sparkplug_naming import metric_identifier, metric_names, property_json
from qiantang.protocols.sparkplug_records import MetricDefinition
from qiantang.registry.tables import Device, Product, Topology
from qiantang.services.device_auth import DeviceContext
from qiantang.services.devices import validate_device_name
from qiantang.services.provisioning import provision_behind

__all__ = ["SparkplugRegistry", "Target", "node_target"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Target:
    """The Qiantang device a Sparkplug node or device is."""

    device_id: int
    product_id: int
    enterprise_id: int
    name: str


def node_target(identity: Identity) -> Target:
    """The edge node itself: the device its connection authenticated as."""
    context = identity.extra
    assert isinstance(context, DeviceContext)
    return Target(
        identity.device_id, context.product_id, identity.enterprise_id, identity.device_name
    )


class SparkplugRegistry:
    """Finds or provisions the devices behind edge nodes and extends thing models."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions

    def device(self, node: Identity, name: str) -> Target | str:
        """The device `name` behind `node`, or why there is none."""
        try:
            validate_device_name(name, "device_id")
        except InvalidInput as err:
            return f"device id {name!r}: {err.errors[0].message}"
        with self._sessions() as db:
            row = db.execute(
                select(Device)
                .join(Topology, Topology.sub_device_id == Device.id)
                .where(Topology.gateway_id == node.device_id, Device.device_name == name)
            ).first()
            if row is not None:
                return _target(row[0])
            return self._provision(db, node, name)

    def _provision(self, db: Session, node: Identity, name: str) -> Target | str:
        found = provision_behind(db, node.device_id, name)
        if isinstance(found, str):
            return found
        db.commit()
        return _target(found[0])

    def extend_model(self, product_id: int, metrics: Sequence[MetricDefinition]) -> int:
        """Add a property for each metric of a birth the product's model lacks (control
        metrics and types without a thing-model type are left out); returns how many were
        added (0: the model is unchanged)."""
        with self._sessions() as db:
            product = db.get(Product, product_id)
            if product is None:
                return 0
            model = ThingModel.from_dict(product.thing_model)
            known = metric_names(model)
            taken = {p.identifier for p in model.properties}
            taken |= {e.identifier for e in model.events} | {s.identifier for s in model.services}
            added: list[dict[str, object]] = []
            for metric in metrics:
                if metric.control or metric.thing_type is None or metric.name in known:
                    continue
                ident = metric_identifier(metric.name, taken)
                taken.add(ident)
                known[metric.name] = ident
                added.append(property_json(ident, metric.name, metric.thing_type))
            if not added:
                return 0
            data = model.to_dict()
            existing = data["properties"]
            assert isinstance(existing, list)
            data["properties"] = [*existing, *added]
            try:
                ThingModel.from_dict(data)
            except InvalidInput as err:
                log.warning("birth metrics not added to product %s: %s", product_id, err)
                return 0
            product.thing_model = data
            product.thing_model_version += 1
            db.commit()
            log.info(
                "product %s: %d properties added from a Sparkplug birth", product_id, len(added)
            )
            return len(added)


def _target(device: Device) -> Target:
    return Target(device.id, device.product_id, device.enterprise_id, device.device_name)
