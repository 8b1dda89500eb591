"""Pieces of the rule engine without the server: message splitting, alarm messages, and
the alarm book's one-open-alarm-per-(rule, device) over a real SQLite registry."""

from __future__ import annotations

import asyncio
from pathlib import Path

from sqlalchemy import select

from qiantang.domain.telemetry import Point
from qiantang.registry.database import make_engine, make_sessionmaker, upgrade
from qiantang.registry.tables import Alarm
from qiantang.services.rule_engine_alarms import AlarmBook, Breach, render_message
from qiantang.services.rule_engine_devices import messages_of


def test_one_message_per_device_and_timestamp_without_repeated_properties() -> None:
    points = [
        Point(1, 7, "a", 1.0),
        Point(1, 7, "b", 2.0),
        Point(1, 7, "a", 3.0),  # same device, same ms: a second message
        Point(1, 8, "a", 4.0),
        Point(2, 8, "a", 5.0),
    ]
    assert messages_of(points) == [
        (7, 1, {"a": 1.0, "b": 2.0}),
        (7, 1, {"a": 3.0}),
        (8, 1, {"a": 4.0}),
        (8, 2, {"a": 5.0}),
    ]
    assert messages_of([Point(5, 1, "x", 1), Point(5, 1, "y", 2)]) == [(1, 5, {"x": 1, "y": 2})]
    assert messages_of([]) == []


def test_alarm_messages_take_values_and_leave_unknown_names() -> None:
    values = {"temperature": 95.5, "count": 3.0, "device": {"name": "CNC-1"}}
    assert render_message("{device.name}: {temperature} °C x{count}", values) == "CNC-1: 95.5 °C x3"
    assert render_message("{missing} {device.nope}", values) == "{missing} {device.nope}"


def test_repeats_count_on_one_open_alarm_and_reach_the_registry(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'registry.db'}")
    upgrade(engine)
    sessions = make_sessionmaker(engine)
    book = AlarmBook(sessions)
    book.load()

    def breach(ts: int) -> Breach:
        messages = {"en": "hot {t}"}
        return Breach(1, "hot", 9, 2, 3, "major", messages, ts, {"t": float(ts)})

    async def run() -> None:
        first, raised = book.breach(breach(1))
        assert raised
        for ts in range(2, 1001):
            alarm, raised = book.breach(breach(ts))
            assert alarm is first and not raised
        await book.flush()
        cleared = book.clear(1, 9, 2000)
        assert cleared is first and book.clear(1, 9, 2001) is None
        await book.flush()
        again, raised = book.breach(breach(3000))
        assert raised and again.id != first.id
        await book.flush()

    asyncio.run(run())
    with sessions() as db:
        rows = list(db.scalars(select(Alarm).order_by(Alarm.id)))
    assert [(r.status, r.count, r.last_ms) for r in rows] == [
        ("cleared", 1000, 1000),
        ("active", 1, 3000),
    ]
    assert rows[0].message_en == "hot 1" and rows[0].clear_reason == "rule"
    reopened = AlarmBook(sessions)
    reopened.load()  # after a restart the open alarm is still the one of (rule, device)
    assert list(reopened.open) == [(1, 9)]
