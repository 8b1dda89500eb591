"""The Sparkplug B codec (Eclipse Sparkplug 3.0): topics, payloads and host messages.

Pure functions, no I/O. The payload schema is Eclipse Tahu's ``sparkplug_b.proto`` (the one
printed in the Sparkplug 3.0 payload chapter), compiled into
`qiantang.protocols.sparkplug_b_pb2` and run by Google's ``protobuf`` package; nothing here
decodes protobuf by hand. The parts:

- `sparkplug_topics`: `parse_topic`, `format_topic`, `state_topic`, `SparkplugError`;
- `sparkplug_values`: `DataType`, wire value <-> Python value, `thing_type`;
- `sparkplug_payload`: `decode_payload` -> `SpbPayload` of `Metric`;
- `sparkplug_commands`: `encode_command`, `encode_rebirth`, `encode_state`, `decode_state`;
- `sparkplug_records`: what a host application makes of messages (`Reading`,
  `StateChange`, `BirthDefinition`, `Rebirth`, ...); the state machine itself is
  `qiantang.services.sparkplug_host.SparkplugHost`.

Every function that reads input raises `SparkplugError` (a `QiantangError`) and nothing
else. This module re-exports the public names of the first four.

Regenerating ``sparkplug_b_pb2.py`` and ``sparkplug_b_pb2.pyi``
--------------------------------------------------------------------
They were generated from ``sparkplug_b/sparkplug_b.proto`` of github.com/eclipse/tahu at
commit 46f25e79f34234e6145d11108660dfd9133ae50d with grpcio-tools 1.75.1 (protoc 31.1, so
the generated code needs protobuf >= 6.31.1) and mypy-protobuf 5.1.0 (for the ``.pyi``)::

    pip install grpcio-tools==1.75.1 mypy-protobuf==5.1.0   # a throwaway venv, its bin on PATH
    python -m grpc_tools.protoc --proto_path=DIR --python_out=src/qiantang/protocols \\
        --mypy_out=src/qiantang/protocols DIR/sparkplug_b.proto
    # then, in both files: put "# ruff: noqa" on the first line, drop the
    # "  # noqa: Y015" comments mypy-protobuf writes, and run ruff format on them

The proto file name stays ``sparkplug_b.proto`` so that the descriptor registered in
protobuf's default pool is identical to the one other Tahu-based modules register.
"""

from __future__ import annotations

from qiantang.protocols.sparkplug_commands import (
    DEVICE_REBIRTH,
    NODE_REBIRTH,
    CommandMetric,
    HostState,
    decode_state,
    encode_command,
    encode_rebirth,
    encode_state,
    encode_value,
)
from qiantang.protocols.sparkplug_payload import (
    DataSetValue,
    Metric,
    MetricValue,
    PropertyValue,
    SpbPayload,
    TemplateParameter,
    TemplateValue,
    decode_payload,
)
from qiantang.protocols.sparkplug_topics import (
    DEVICE_MESSAGE_TYPES,
    NAMESPACE,
    NODE_MESSAGE_TYPES,
    MessageType,
    SparkplugError,
    SpbTopic,
    StateTopic,
    check_id,
    format_topic,
    parse_topic,
    state_topic,
)
from qiantang.protocols.sparkplug_values import DataType, ThingType, thing_type

__all__ = [
    "DEVICE_MESSAGE_TYPES",
    "DEVICE_REBIRTH",
    "NAMESPACE",
    "NODE_MESSAGE_TYPES",
    "NODE_REBIRTH",
    "CommandMetric",
    "DataSetValue",
    "DataType",
    "HostState",
    "MessageType",
    "Metric",
    "MetricValue",
    "PropertyValue",
    "SparkplugError",
    "SpbPayload",
    "SpbTopic",
    "StateTopic",
    "TemplateParameter",
    "TemplateValue",
    "ThingType",
    "check_id",
    "decode_payload",
    "decode_state",
    "encode_command",
    "encode_rebirth",
    "encode_state",
    "encode_value",
    "format_topic",
    "parse_topic",
    "state_topic",
    "thing_type",
]
