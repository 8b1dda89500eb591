"""Rule action specs: parsing, errors naming actions[i].field, model checks, secret forms."""

from __future__ import annotations

from typing import Any

import pytest

from qiantang.domain.errors import InvalidInput
from qiantang.domain.rule_actions import (
    CallServiceAction,
    DeriveAction,
    SetPropertyAction,
    WebhookAction,
    check_against_model,
    expression_texts,
    parse_actions,
    public_actions,
)
from qiantang.domain.thingmodel import ThingModel
from qiantang.domain.validation import compile_model
from qiantang.services.rule_actions import stored_actions
from qiantang.services.security import DeviceSecrets
from qiantang.services.webhooks import SecretUnavailable, WebhookSecrets

SECRET = "a-long-shared-secret"
F = {"type": "float", "specs": {"min": 0, "max": 1000}}
MODEL = ThingModel.from_dict(
    {
        "properties": [
            {"identifier": "fan", "name": "风扇", "access_mode": "rw", "data_type": F},
            {"identifier": "voltage", "name": "电压", "access_mode": "r", "data_type": F},
            {"identifier": "power_kw", "name": "功率", "access_mode": "r", "data_type": F},
        ],
        "events": [],
        "services": [
            {
                "identifier": "reset",
                "name": "复位",
                "call_type": "async",
                "input_data": [],
                "output_data": [],
            }
        ],
    }
)


def errors_of(raw: Any, **kwargs: Any) -> list[tuple[str, str]]:
    with pytest.raises(InvalidInput) as info:
        parse_actions(raw, **kwargs)
    return [(e.field, e.rule) for e in info.value.errors]


def test_every_action_type_parses() -> None:
    specs = parse_actions(
        [
            {"type": "set_property", "properties": {"fan": 1.5, "x": {"expr": "voltage * 2.0"}}},
            {"type": "call_service", "service": "reset", "on": ["clear"], "device_id": 7},
            {"type": "webhook", "url": "https://ops.example:8443/hook", "secret": SECRET},
            {"type": "derive", "property": "power_kw", "expr": "voltage * current / 1000.0"},
        ]
    )
    assert [type(s) for s in specs] == [
        SetPropertyAction,
        CallServiceAction,
        WebhookAction,
        DeriveAction,
    ]
    assert specs[0].on == ("raise", "fire") and specs[1].on == ("clear",)
    assert isinstance(specs[1], CallServiceAction) and specs[1].device_id == 7
    assert expression_texts(specs[0]) == ["voltage * 2.0"]
    assert expression_texts(specs[3]) == ["voltage * current / 1000.0"]


def test_errors_name_the_action_and_the_rule() -> None:
    raw = [
        {"type": "webhook", "url": "ftp://ops.example/hook", "secret": SECRET},
        {"type": "webhook", "url": "http://user:pw@ops.example/", "secret": "short"},
        {"type": "set_property"},
        {"type": "derive", "property": "power kw", "expr": "voltage *"},
        {"type": "call_service", "service": "reset", "input": {"v": {"expr": "1 +"}}},
        {"type": "launch"},
        "webhook",
        {"type": "webhook", "url": "https://ops.example/", "secret": SECRET, "retries": 3},
        {"type": "derive", "property": "p", "expr": "1.0", "on": ["sometimes"]},
    ]
    assert errors_of(raw) == [
        ("actions[0].url", "scheme"),
        ("actions[1].url", "credentials"),
        ("actions[1].secret", "min_length"),
        ("actions[2].properties", "required"),
        ("actions[3].property", "identifier"),
        ("actions[3].expr", "expression"),
        ("actions[4].input.v.expr", "expression"),
        ("actions[5].type", "action_type"),
        ("actions[6]", "type"),
        ("actions[7].retries", "unknown_field"),
        ("actions[8].on", "transitions"),
    ]


def test_webhook_needs_a_secret_and_a_host() -> None:
    assert errors_of([{"type": "webhook", "url": "https:///x"}]) == [
        ("actions[0].url", "host"),
        ("actions[0].secret", "required"),
    ]
    assert errors_of([{"type": "webhook", "url": "http://h:99999/"}], field="rule.actions")[0] == (
        "rule.actions[0].url",
        "url",
    )


def test_not_a_list_and_too_many() -> None:
    assert errors_of({"type": "derive"}) == [("actions", "type")]
    assert errors_of([{"type": "derive", "property": "p", "expr": "1.0"}] * 21) == [
        ("actions", "max_items")
    ]
    assert parse_actions(None) == []


def test_a_derive_of_what_the_condition_reads_is_refused() -> None:
    raw = [{"type": "derive", "property": "temperature", "expr": "temperature * 2.0"}]
    assert errors_of(raw, reads={"temperature"}) == [("actions[0].property", "self_loop")]
    assert len(parse_actions(raw, reads={"pressure"})) == 1


def test_other_entry_types_are_left_to_the_caller() -> None:
    raw = [
        {"type": "alarm", "severity": "major"},
        {"type": "derive", "property": "p", "expr": "1.0 +"},
    ]
    assert errors_of(raw, others={"alarm"}) == [("actions[1].expr", "expression")]


def test_checked_against_the_thing_model() -> None:
    model = compile_model(MODEL)
    specs = parse_actions(
        [
            {"type": "derive", "property": "energy", "expr": "1.0"},
            {"type": "set_property", "properties": {"voltage": 1.0, "nope": 1}},
            {"type": "call_service", "service": "explode"},
            {"type": "call_service", "service": "explode", "device_id": 3},  # checked when run
            {"type": "derive", "property": "power_kw", "expr": "voltage * 2.0"},
        ]
    )
    with pytest.raises(InvalidInput) as info:
        check_against_model(specs, model)
    assert [(e.field, e.rule) for e in info.value.errors] == [
        ("actions[0].property", "unknown_property"),
        ("actions[1].properties.voltage", "read_only"),
        ("actions[1].properties.nope", "unknown_property"),
        ("actions[2].service", "unknown_service"),
    ]
    check_against_model(specs[3:], model)


def test_secrets_are_sealed_for_storage_and_never_shown() -> None:
    secrets = WebhookSecrets(DeviceSecrets(b"m" * 32))
    specs = parse_actions([{"type": "webhook", "url": "https://ops.example/", "secret": SECRET}])
    stored = stored_actions(specs, secrets)
    assert "secret" not in stored[0] and SECRET not in str(stored)
    again = parse_actions(stored, stored=True)
    assert isinstance(again[0], WebhookAction) and again[0].sealed_secret is not None
    assert secrets.open(again[0].sealed_secret) == SECRET
    shown = public_actions(again)
    assert shown[0]["has_secret"] is True
    assert "secret" not in shown[0] and "sealed_secret" not in shown[0]
    with pytest.raises(SecretUnavailable):
        WebhookSecrets(DeviceSecrets(b"n" * 32)).open(again[0].sealed_secret)
    with pytest.raises(SecretUnavailable):
        secrets.open(again[0].sealed_secret[:-4] + "AAAA")


def test_stored_and_input_forms_do_not_mix() -> None:
    sealed = {"type": "webhook", "url": "https://ops.example/", "sealed_secret": "v1.xxxx"}
    assert errors_of([sealed]) == [
        ("actions[0].sealed_secret", "unknown_field"),
        ("actions[0].secret", "required"),
    ]
    plain = {"type": "webhook", "url": "https://ops.example/", "secret": SECRET}
    assert errors_of([plain], stored=True) == [
        ("actions[0].sealed_secret", "required"),
        ("actions[0].secret", "sealed"),
    ]
