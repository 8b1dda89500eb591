"""Fuzzing the Sparkplug uplink: births, data and deaths - valid, mutated and random bytes on
every kind of topic - run through `SparkplugUplink.handle` with a real (SQLite) registry.

No exception escapes; every point it yields is a property of its device's current thing
model with a value of that property's type; devices a DBIRTH names appear only behind the
node. Hypothesis draws a seed and plain Python builds a batch of messages from it (as the
other fuzz files do), 300 batches.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from random import Random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.orm import Session, sessionmaker

from qiantang.domain.thingmodel import ThingModel
from qiantang.domain.validation import compile_model
from qiantang.ports.ingress import Identity, InboundMessage
from qiantang.protocols import sparkplug_b_pb2 as pb
from qiantang.registry.database import make_engine, make_sessionmaker, upgrade
from qiantang.registry.tables import Device, Enterprise, Platform, Product
from qiantang.services.common import utcnow
from qiantang.services.device_auth import DeviceContext
from qiantang.services.ingest import IngestCore
from qiantang.services.models_cache import ModelCache
from qiantang.services.sparkplug_devices import SparkplugRegistry
from qiantang.services.sparkplug_uplink import SparkplugUplink
from qiantang.services.telemetry_state import DeviceStates, MessageLog

TS = 1_800_000_000_000
GROUP, NODE = "aFuzzGroup1", "FUZZ-NODE"
KINDS = ("NBIRTH", "NDATA", "NDEATH", "DBIRTH", "DDATA", "DDEATH")
DEVICES = ("Dev-0001", "Dev-0002", "x", "Dev/3")
NAMES = ("Inputs/A", "Inputs/B", "Speed", "value", "Node Control/Rebirth", "温度", "bdSeq")


def _row(db: Session, obj: object) -> int:
    db.add(obj)
    db.flush()
    return int(obj.id)  # type: ignore[attr-defined]


@pytest.fixture(scope="module")
def registry(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[sessionmaker[Session], Identity]]:
    engine = make_engine(f"sqlite:///{tmp_path_factory.mktemp('spb') / 'registry.db'}")
    upgrade(engine)
    sessions = make_sessionmaker(engine)
    empty = {"properties": [], "events": [], "services": []}
    now = utcnow()
    with sessions() as db:
        platform = _row(
            db, Platform(kind="base", code="86.1", name="b", prefix="86.1", created_at=now)
        )
        ent = _row(
            db,
            Enterprise(
                name="e",
                credit_code="91330200MA2B00999",
                industry_code="C34",
                region_code="330200",
                home_platform_id=platform,
                code="e1",
                prefix="86.1.1",
                created_at=now,
            ),
        )
        products = [
            _row(
                db,
                Product(
                    enterprise_id=ent,
                    product_key=key,
                    identifier=f"86.1.1/{key}",
                    name=key,
                    thing_model=empty,
                    created_at=now,
                ),
            )
            for key in (GROUP, "aFuzzDevice")
        ]
        node = _row(
            db,
            Device(
                enterprise_id=ent,
                product_id=products[0],
                device_name=NODE,
                identifier="86.1.1/n",
                secret_salt="s",
                is_gateway=True,
                provision_product_id=products[1],
                created_at=now,
            ),
        )
        db.commit()
    identity = Identity(node, GROUP, NODE, ent, DeviceContext(products[0], 1, True, "thingsboard"))
    yield sessions, identity
    engine.dispose()


# (Sparkplug data type, protobuf field, a value) that fit together
FITTING = (
    (3, "int_value", lambda r: r.randrange(-5, 5) & 0xFFFFFFFF),  # Int32
    (4, "long_value", lambda r: r.randrange(2**64)),  # Int64
    (8, "long_value", lambda r: r.randrange(2**64)),  # UInt64 (above 2**63: refused)
    (9, "float_value", lambda r: r.random()),  # Float
    (10, "double_value", lambda r: r.choice((1.5, float("nan"), float("inf"), -0.0))),
    (11, "boolean_value", lambda r: r.random() < 0.5),  # Boolean
    (12, "string_value", lambda r: r.choice(("on", "", "\u2603"))),  # String
    (13, "long_value", lambda r: r.choice((TS, 0))),  # DateTime
    (17, "bytes_value", lambda r: r.randbytes(r.randrange(12))),  # Bytes: no thing type
    (22, "bytes_value", lambda r: r.randbytes(r.randrange(6))),  # Int8Array
)


def _metric(rng: Random, payload: pb.Payload, birth: bool, i: int, types: list[int]) -> None:
    m = payload.metrics.add()
    slot = i if birth or rng.random() < 0.8 else rng.randrange(6)
    if birth:
        types.append(rng.randrange(len(FITTING)))
    kind = types[slot] if slot < len(types) and rng.random() < 0.9 else rng.randrange(len(FITTING))
    datatype, field, value = FITTING[kind]
    if birth or rng.random() < 0.2:
        m.name = NAMES[slot % len(NAMES)] + ("" if slot < len(NAMES) else str(slot))
        m.datatype = datatype
    if not birth or rng.random() < 0.9:
        m.alias = slot
    if rng.random() < 0.1:
        m.timestamp = rng.choice((TS, 0, 2**64 - 1))
    if rng.random() < 0.05:
        m.is_null = True
    else:
        setattr(m, field, value(rng))


def _payload(rng: Random, kind: str, seq: int, types: dict[str, list[int]], topic: str) -> bytes:
    payload = pb.Payload(timestamp=rng.choice((TS, TS + 5, 0)))
    if kind != "NDEATH" and rng.random() < 0.9:
        payload.seq = seq if rng.random() < 0.8 else rng.randrange(300)
    birth = kind.endswith("BIRTH")
    if birth:
        types[topic] = []
    for i in range(rng.randrange(1, 6)):
        _metric(rng, payload, birth, i, types.setdefault(topic, []))
    data = payload.SerializeToString()
    if rng.random() < 0.15:
        data = bytearray(data)
        for _ in range(rng.randrange(1, 4)):
            if data:
                data[rng.randrange(len(data))] = rng.randrange(256)
        data = bytes(data)
    if rng.random() < 0.05:
        data = rng.randbytes(rng.randrange(30))
    return data


def _batch(seed: int, identity: Identity) -> list[InboundMessage]:
    rng = Random(seed)
    out: list[InboundMessage] = []
    types: dict[str, list[int]] = {}  # the data types of each birth, by its device
    for seq in range(rng.randrange(1, 9)):
        kind = rng.choice(KINDS) if seq else "NBIRTH"
        if seq == 1 and rng.random() < 0.7:
            kind = "DBIRTH"
        topic = f"spBv1.0/{GROUP}/{kind}/{NODE}"
        if kind.startswith("D") or rng.random() < 0.05:
            topic += "/" + (DEVICES[0] if rng.random() < 0.7 else rng.choice(DEVICES))
        owner = topic.split("/", 4)[4] if topic.count("/") == 4 else ""
        payload = _payload(rng, kind, seq, types, owner)
        out.append(InboundMessage(identity, "c", topic, payload, 1, TS))
    return out


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 2**32))
def test_handle_never_raises_and_yields_only_valid_points(
    registry: tuple[sessionmaker[Session], Identity], seed: int
) -> None:
    sessions, identity = registry
    models = ModelCache(sessions)
    core = IngestCore(None, models, 10 * 365 * 86_400_000)  # type: ignore[arg-type]
    uplink = SparkplugUplink(
        SparkplugRegistry(sessions),
        core,
        DeviceStates(),
        MessageLog(),
        None,  # type: ignore[arg-type]
    )
    accepted = asyncio.run(uplink.handle(_batch(seed, identity)))
    with sessions() as db:
        for point in accepted.points:
            device = db.get(Device, point.device_id)
            assert device is not None
            product = db.get(Product, device.product_id)
            assert product is not None
            model = ThingModel.from_dict(product.thing_model)
            values, errors = compile_model(model).validate_properties({point.property: point.value})
            assert not errors and point.property in values
            assert device.id == identity.device_id or device.device_name in DEVICES
