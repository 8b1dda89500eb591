"""MQTT broker adapters of the ingress port (`qiantang.ports.ingress`).

`AmqttIngress` is the embedded default: an amqtt broker inside the process.
"""

from __future__ import annotations

from qiantang.adapters.broker.amqtt_ingress import AmqttIngress, TlsConfig

__all__ = ["AmqttIngress", "TlsConfig"]
