"""A Sparkplug B edge node built on pysparkplug (PyPI), run by tests/e2e/test_sparkplug.py.

pysparkplug pins paho-mqtt < 2 while Qiantang uses paho-mqtt 2, so this program runs in a
virtual environment of its own (see `tests/e2e/test_sparkplug.py`); it imports nothing
from Qiantang. It uses pysparkplug's MQTT client, topics, metrics and payload classes, and
keeps the edge-node session itself (pysparkplug's ``EdgeNode`` class sends every metric by
name and has no way to skip a sequence number or answer a rebirth request, which the test
needs):

- CONNECT with the access token as username and an NDEATH (with ``bdSeq``) as the will;
  subscribe to its NCMD, DCMD and the host's STATE topics; then NBIRTH (seq 0) and one
  DBIRTH per device, every metric with a name, an alias and a data type;
- NDATA/DDATA by alias only (no names, no data types), seq counting on modulo 256;
- NCMD ``Node Control/Rebirth`` = true: NBIRTH and DBIRTHs again, seq from 0;
- DCMD: the written values are applied and reported back in a DDATA.

Commands, one JSON object a line on stdin: ``{"cmd": "ddata", "device": D, "values":
[[alias, value], ...]}``, ``{"cmd": "ndata", "values": [...]}``, ``{"cmd": "gap"}`` (skip
one seq number before the next message), ``{"cmd": "ddeath", "device": D}``, ``{"cmd":
"death"}`` (NDEATH, then DISCONNECT), ``{"cmd": "exit"}``. Events, one JSON object a
line on stdout: ``connected``, ``born``, ``state``, ``ncmd``, ``dcmd``, ``sent``.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
from typing import Any

import pysparkplug as spb

DT = spb.DataType
NODE_METRICS = (("Properties/Version", 1, DT.STRING, "1.0.3"), ("Temperature", 2, DT.DOUBLE, 30.5))
DEVICE_METRICS = {
    "Boiler-01": (
        ("Inputs/A", 10, DT.DOUBLE, 20.25),
        ("Inputs/B", 11, DT.INT32, -3),
        ("Outputs/Valve", 12, DT.BOOLEAN, False),
    ),
    "Pump-0001": (("Speed", 20, DT.FLOAT, 1450.0),),
}


class EdgeNode:
    """The edge node's session: seq, bdSeq, births, data, deaths and commands."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.group, self.node, self.port = args.group, args.node, args.port
        self.host_id = args.host_id
        self.client = spb.Client(client_id=f"spb-{args.node}", username=args.token)
        self.lock = threading.Lock()  # stdout
        self.session = threading.RLock()  # seq: the main thread and paho's both send
        self.seq = 0
        self.bd_seq = 0
        self.values: dict[str, dict[int, Any]] = {
            d: {alias: v for _, alias, _, v in ms} for d, ms in DEVICE_METRICS.items()
        }
        self.types = {alias: t for ms in DEVICE_METRICS.values() for _, alias, t, _ in ms}
        self.types.update({alias: t for _, alias, t, _ in NODE_METRICS})

    # --- output -----------------------------------------------------------------------------
    def emit(self, event: str, **fields: Any) -> None:
        with self.lock:
            print(json.dumps({"event": event, **fields}), flush=True)

    def publish(self, kind: spb.MessageType, payload: Any, device: str | None = None) -> None:
        topic = spb.Topic(
            message_type=kind, group_id=self.group, edge_node_id=self.node, device_id=device
        )
        births = kind in (spb.MessageType.NBIRTH, spb.MessageType.DBIRTH)
        self.client.publish(
            spb.Message(topic, payload, spb.QoS.AT_MOST_ONCE, False), include_dtypes=births
        )

    def next_seq(self) -> int:
        seq, self.seq = self.seq, (self.seq + 1) % 256
        return seq

    # --- session ----------------------------------------------------------------------------
    def bd_seq_metric(self) -> spb.Metric:
        return spb.Metric(spb.get_current_timestamp(), "bdSeq", DT.INT64, value=self.bd_seq)

    def connect(self) -> None:
        death = spb.NDeath(spb.get_current_timestamp(), self.bd_seq_metric())
        will = spb.Topic(
            message_type=spb.MessageType.NDEATH, group_id=self.group, edge_node_id=self.node
        )
        self.client.set_will(spb.Message(will, death, spb.QoS.AT_MOST_ONCE, False))
        ncmd = spb.Topic(
            message_type=spb.MessageType.NCMD, group_id=self.group, edge_node_id=self.node
        )
        dcmd = spb.Topic(
            message_type=spb.MessageType.DCMD,
            group_id=self.group,
            edge_node_id=self.node,
            device_id=spb.SINGLE_LEVEL_WILDCARD,
        )
        state = spb.Topic(message_type=spb.MessageType.STATE, sparkplug_host_id=self.host_id)
        self.client.subscribe(ncmd, spb.QoS.AT_LEAST_ONCE, self.on_ncmd)
        self.client.subscribe(dcmd, spb.QoS.AT_LEAST_ONCE, self.on_dcmd)
        self.client.subscribe(state, spb.QoS.AT_LEAST_ONCE, self.on_state)
        self.client.connect("127.0.0.1", port=self.port, keepalive=30, callback=self.on_connect)

    def on_connect(self, _client: spb.Client) -> None:
        self.emit("connected")
        self.births()

    def births(self) -> None:
        with self.session:
            self._births()

    def _births(self) -> None:
        now = spb.get_current_timestamp()
        self.seq = 0
        metrics = [spb.Metric(now, n, t, value=v, alias=a) for n, a, t, v in NODE_METRICS]
        metrics.append(self.bd_seq_metric())
        self.publish(spb.MessageType.NBIRTH, spb.NBirth(now, self.next_seq(), tuple(metrics)))
        for device, defs in DEVICE_METRICS.items():
            values = self.values[device]
            ms = tuple(spb.Metric(now, n, t, value=values[a], alias=a) for n, a, t, _ in defs)
            self.publish(spb.MessageType.DBIRTH, spb.DBirth(now, self.next_seq(), ms), device)
        self.emit("born", seq=self.seq)

    def data(self, device: str | None, values: list[list[Any]]) -> None:
        with self.session:
            self._data(device, values)

    def _data(self, device: str | None, values: list[list[Any]]) -> None:
        now = spb.get_current_timestamp()
        metrics = tuple(
            spb.Metric(now, None, self.types[alias], value=value, alias=alias)
            for alias, value in values
        )
        seq = self.next_seq()
        if device is None:
            self.publish(spb.MessageType.NDATA, spb.NData(now, seq, metrics))
        else:
            self.values[device].update({alias: value for alias, value in values})
            self.publish(spb.MessageType.DDATA, spb.DData(now, seq, metrics), device)
        self.emit("sent", seq=seq)

    # --- from the host ----------------------------------------------------------------------
    def on_state(self, _client: spb.Client, message: spb.Message) -> None:
        state = message.payload
        assert isinstance(state, spb.State)
        self.emit("state", online=state.online, timestamp=state.timestamp)

    def on_ncmd(self, _client: spb.Client, message: spb.Message) -> None:
        metrics = [_metric(m) for m in message.payload.metrics]
        self.emit("ncmd", metrics=metrics)
        if any(m["name"] == "Node Control/Rebirth" and m["value"] is True for m in metrics):
            self.births()

    def on_dcmd(self, _client: spb.Client, message: spb.Message) -> None:
        device = message.topic.device_id
        metrics = [_metric(m) for m in message.payload.metrics]
        self.emit("dcmd", device=device, metrics=metrics)
        self.data(device, [[m["alias"], m["value"]] for m in metrics])

    # --- commands ---------------------------------------------------------------------------
    def run(self, command: dict[str, Any]) -> bool:
        with self.session:
            return self._run(command)

    def _run(self, command: dict[str, Any]) -> bool:
        cmd = command["cmd"]
        if cmd in ("ddata", "ndata"):
            self.data(command.get("device"), command["values"])
        elif cmd == "gap":
            self.next_seq()
        elif cmd == "ddeath":
            payload = spb.DDeath(spb.get_current_timestamp(), self.next_seq())
            self.publish(spb.MessageType.DDEATH, payload, command["device"])
            self.emit("sent", seq=payload.seq)
        elif cmd == "death":
            death = spb.NDeath(spb.get_current_timestamp(), self.bd_seq_metric())
            self.publish(spb.MessageType.NDEATH, death)
            self.client.disconnect()
            self.emit("sent", seq=None)
        return cmd != "exit"


def _metric(m: spb.Metric) -> dict[str, Any]:
    return {"name": m.name, "alias": m.alias, "value": m.value}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--token", required=True)
    p.add_argument("--group", required=True)
    p.add_argument("--node", required=True)
    p.add_argument("--host-id", default="qiantang")
    args = p.parse_args()
    node = EdgeNode(args)
    node.connect()
    for line in sys.stdin:  # ends when the test closes stdin
        if line.strip() and not node.run(json.loads(line)):
            break


if __name__ == "__main__":
    main()
