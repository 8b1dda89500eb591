"""MQTT 5 clients on the MQTT 3.1.1 amqtt broker: a per-connection packet translator.

amqtt 0.12 speaks MQTT 3.1.1 only, and some clients speak only MQTT 5 (the ThingsBoard SDK
behind thingsboard-gateway creates its paho client with ``protocol=5`` and no option to
change it). `Mqtt5Translator` rewrites one MQTT 5 connection packet by packet: what the client
sends becomes the MQTT 3.1.1 packets amqtt reads, what amqtt writes becomes MQTT 5 packets.
It is pure (bytes in, bytes out); `qiantang.adapters.broker.mqtt5_streams` puts it between
the socket and amqtt.

What an MQTT 5 client gets, announced in CONNACK where the protocol has a property for it:

- Sessions end with the connection (CONNACK Session Expiry Interval 0 when the client asked
  for more), so amqtt always sees a clean session; an empty client id is assigned one
  (Assigned Client Identifier).
- No topic aliases (Topic Alias Maximum absent, i.e. 0: a client that uses one is
  disconnected with 0x94), no subscription identifiers (0xA1), no shared subscriptions
  (SUBACK 0x9E), no enhanced authentication (CONNACK 0x8C).
- Subscription options: QoS and No Local (trivially kept: the platform never relays a
  client's uplink to subscribers). Retain As Published, Retain Handling 2, and Retain Handling
  1 for a filter already subscribed are refused per filter with SUBACK 0x83.
- The client's Receive Maximum and Maximum Packet Size are enforced on what the broker sends:
  QoS 1/2 deliveries past the window wait for an acknowledgement; a delivery too large for
  the client is dropped and acknowledged to amqtt, as MQTT 5 §3.1.2.11.4 requires.
- UNSUBACK reports 0x11 (no subscription existed) for filters this connection never had.
- Properties on client packets (user properties, message expiry, content type ...) are
  validated and dropped: uplink goes to the platform, which does not relay it.
- A malformed packet ends the connection with DISCONNECT 0x81, a protocol error with 0x82.

Reason codes and packet layouts follow OASIS MQTT 5.0 (2019), sections 2.2.2 and 3.x.
"""

from __future__ import annotations

import secrets
from collections import deque
from dataclasses import dataclass, field
from typing import Final

from qiantang.adapters.broker.mqtt5_wire import (
    MALFORMED,
    PROTOCOL_ERROR,
    USER_PROPERTY,
    Mqtt5Error,
    WireBuffer,
    encode_packet,
    string,
    varint,
)

__all__ = ["Mqtt5Translator", "Translation"]

_IMPLEMENTATION_SPECIFIC: Final = 0x83
_BAD_AUTH_METHOD: Final = 0x8C
_TOPIC_ALIAS_INVALID: Final = 0x94
_SHARED_UNSUPPORTED: Final = 0x9E
_SUB_IDS_UNSUPPORTED: Final = 0xA1
_NO_SUBSCRIPTION: Final = 0x11
# MQTT 3.1.1 CONNACK return codes 0-5 -> MQTT 5 reason codes
_CONNACK_CODES: Final = {0: 0x00, 1: 0x84, 2: 0x85, 3: 0x88, 4: 0x86, 5: 0x87}

_CONNECT_PROPS: Final = frozenset({0x11, 0x21, 0x27, 0x22, 0x19, 0x17, 0x26, 0x15, 0x16})
_WILL_PROPS: Final = frozenset({0x18, 0x01, 0x02, 0x03, 0x08, 0x09, 0x26})
_PUBLISH_PROPS: Final = frozenset({0x01, 0x02, 0x23, 0x08, 0x09, 0x26, 0x03})
_REASON_STRING: Final = 0x1F
_ACK_PROPS: Final = frozenset({_REASON_STRING, USER_PROPERTY})
_SUBSCRIBE_PROPS: Final = frozenset({0x0B, USER_PROPERTY})
_UNSUBSCRIBE_PROPS: Final = frozenset({USER_PROPERTY})
_DISCONNECT_PROPS: Final = frozenset({0x11, _REASON_STRING, USER_PROPERTY, 0x1C})


@dataclass(slots=True)
class Translation:
    """What one packet turns into: bytes for the client, bytes for amqtt, and whether the
    connection ends (``disconnect`` is then the reason code already sent to the client)."""

    to_client: list[bytes] = field(default_factory=list)
    to_broker: list[bytes] = field(default_factory=list)
    disconnect: int | None = None


def _disconnect(code: int) -> bytes:
    return encode_packet(0xE0, bytes((code, 0)))


@dataclass(slots=True)
class _Subscribe:
    filters: list[bytes]
    refused: dict[int, int]  # index in `filters` -> SUBACK reason code


class Mqtt5Translator:
    """One MQTT 5 connection: build it from the CONNECT body, then translate each packet."""

    def __init__(self, connect_body: bytes) -> None:
        self.receive_maximum = 65535
        self.maximum_packet_size: int | None = None
        self._inflight: set[bytes] = set()  # packet ids of QoS 1/2 deliveries not yet acked
        self._held: deque[bytes] = deque()  # deliveries waiting for the Receive Maximum
        self._dropped_qos2: set[bytes] = set()
        self._granted: set[bytes] = set()
        self._subscribes: dict[bytes, _Subscribe] = {}
        self._unsubscribes: dict[bytes, list[bytes]] = {}
        self._connack_props = b""
        self.connect_v311 = self._connect(connect_body)

    # --- CONNECT / CONNACK -----------------------------------------------------------------
    def _connect(self, body: bytes) -> bytes:
        """The MQTT 3.1.1 CONNECT for amqtt; `Mqtt5Error` -> CONNACK with its code."""
        buf = WireBuffer(body)
        buf.binary()
        buf.byte()
        flags = buf.byte()
        keep_alive = buf.take(2)
        if flags & 0x01 or (flags >> 3) & 0x03 == 3 or (not flags & 0x04 and flags & 0x38):
            raise Mqtt5Error(MALFORMED, "CONNECT flags")
        props = buf.properties(_CONNECT_PROPS)
        if 0x15 in props:
            raise Mqtt5Error(_BAD_AUTH_METHOD, "enhanced authentication is not supported")
        if props.get(0x21) == 0 or props.get(0x27) == 0:
            raise Mqtt5Error(PROTOCOL_ERROR, "Receive Maximum and Maximum Packet Size are > 0")
        if any(props.get(p, 0) not in (0, 1) for p in (0x17, 0x19)):
            raise Mqtt5Error(PROTOCOL_ERROR, "request flags are 0 or 1")
        self.receive_maximum = int(props.get(0x21, 65535))
        self.maximum_packet_size = int(props[0x27]) if 0x27 in props else None
        client_id = buf.string()
        extra = b""
        if not client_id:
            client_id = b"mqtt5-" + secrets.token_hex(12).encode()
            extra += b"\x12" + string(client_id)
        if props.get(0x11, 0):
            extra += b"\x11\x00\x00\x00\x00"  # the session ends with the connection
        payload = string(client_id)
        if flags & 0x04:
            buf.properties(_WILL_PROPS)
            payload += string(buf.string()) + string(buf.binary())
        if flags & 0x80:
            payload += string(buf.string())
        if flags & 0x40:
            payload += string(buf.binary())
        if buf.pos != len(body):
            raise Mqtt5Error(MALFORMED, "bytes after the CONNECT payload")
        # no subscription identifiers (0x29), no shared subscriptions (0x2A)
        self._connack_props = extra + b"\x29\x00\x2a\x00"
        header = string(b"MQTT") + bytes((4, flags | 0x02)) + keep_alive
        return encode_packet(0x10, header + payload)

    @staticmethod
    def refusal(code: int) -> bytes:
        """The CONNACK refusing a CONNECT that failed to translate."""
        return encode_packet(0x20, bytes((0, code, 0)))

    def _connack(self, body: bytes) -> Translation:
        buf = WireBuffer(body)
        flags, rc = buf.byte(), buf.byte()
        code = _CONNACK_CODES.get(rc, 0x80)
        props = self._connack_props if code == 0 else b""
        out = bytes((flags & 0x01 if code == 0 else 0, code)) + varint(len(props)) + props
        return Translation(to_client=[encode_packet(0x20, out)])

    # --- client -> broker ---------------------------------------------------------------------
    def from_client(self, header: int, body: bytes) -> Translation:
        """Translate one packet from the client; a fatal one yields a DISCONNECT."""
        try:
            return self._from_client(header, body)
        except Mqtt5Error as err:
            return Translation(to_client=[_disconnect(err.code)], disconnect=err.code)

    def _from_client(self, header: int, body: bytes) -> Translation:
        kind = header >> 4
        if kind == 3:
            return self._publish_in(header, body)
        if header in (0x40, 0x50, 0x62, 0x70):
            return self._ack_in(header, body)
        if header == 0x82:
            return self._subscribe(body)
        if header == 0xA2:
            return self._unsubscribe(body)
        if header == 0xC0 and not body:
            return Translation(to_broker=[b"\xc0\x00"])
        if header == 0xE0:
            if len(body) > 1:
                WireBuffer(body, 1).properties(_DISCONNECT_PROPS)
            return Translation(to_broker=[b"\xe0\x00"])
        raise Mqtt5Error(PROTOCOL_ERROR, f"unexpected packet 0x{header:02X} from a client")

    def _publish_in(self, header: int, body: bytes) -> Translation:
        qos = (header >> 1) & 0x03
        if qos == 3 or (qos == 0 and header & 0x08):
            raise Mqtt5Error(MALFORMED, "PUBLISH QoS")
        buf = WireBuffer(body)
        topic = buf.string()
        if qos and buf.int16() == 0:
            raise Mqtt5Error(PROTOCOL_ERROR, "packet identifier 0")
        head_end = buf.pos
        if 0x23 in buf.properties(_PUBLISH_PROPS):
            raise Mqtt5Error(_TOPIC_ALIAS_INVALID, "topic aliases are not accepted")
        if not topic:
            raise Mqtt5Error(PROTOCOL_ERROR, "a PUBLISH names its topic")
        return Translation(to_broker=[encode_packet(header, body[:head_end] + buf.rest())])

    def _ack_in(self, header: int, body: bytes) -> Translation:
        buf = WireBuffer(body)
        pid = buf.take(2)
        reason = buf.byte() if len(body) > 2 else 0
        if len(body) > 3:
            buf.properties(_ACK_PROPS)
        out = Translation(to_broker=[bytes((header, 2)) + pid])
        if header in (0x40, 0x70) or (header == 0x50 and reason >= 0x80):
            self._inflight.discard(pid)
            self._release(out)
        return out

    def _subscribe(self, body: bytes) -> Translation:
        buf = WireBuffer(body)
        pid = buf.take(2)
        if 0x0B in buf.properties(_SUBSCRIBE_PROPS):
            raise Mqtt5Error(_SUB_IDS_UNSUPPORTED, "subscription identifiers are not supported")
        filters: list[bytes] = []
        refused: dict[int, int] = {}
        forwarded = b""
        while buf.pos < len(body):
            topic_filter, options = buf.string(), buf.byte()
            code = self._option_refusal(topic_filter, options)
            if code is None:
                forwarded += string(topic_filter) + bytes((options & 0x03,))
            else:
                refused[len(filters)] = code
            filters.append(topic_filter)
        if not filters:
            raise Mqtt5Error(PROTOCOL_ERROR, "a SUBSCRIBE has at least one filter")
        entry = _Subscribe(filters, refused)
        if not forwarded:
            return Translation(to_client=[self._suback(pid, entry, b"")])
        self._subscribes[pid] = entry
        return Translation(to_broker=[encode_packet(0x82, pid + forwarded)])

    def _option_refusal(self, topic_filter: bytes, options: int) -> int | None:
        if options & 0xC0 or options & 0x03 == 3:
            raise Mqtt5Error(MALFORMED, "subscription options")
        handling = (options >> 4) & 0x03
        if handling == 3:
            raise Mqtt5Error(PROTOCOL_ERROR, "Retain Handling 3")
        if topic_filter.startswith(b"$share/"):
            return _SHARED_UNSUPPORTED
        if options & 0x08 or handling == 2 or (handling == 1 and topic_filter in self._granted):
            return _IMPLEMENTATION_SPECIFIC
        return None

    def _suback(self, pid: bytes, entry: _Subscribe, granted: bytes) -> bytes:
        codes = bytearray()
        from_broker = iter(granted)
        for index, topic_filter in enumerate(entry.filters):
            code = entry.refused.get(index)
            if code is None:
                code = next(from_broker, 0x80)
                if code < 0x80:
                    self._granted.add(topic_filter)
            codes.append(code)
        return encode_packet(0x90, pid + b"\x00" + bytes(codes))

    def _unsubscribe(self, body: bytes) -> Translation:
        buf = WireBuffer(body)
        pid = buf.take(2)
        buf.properties(_UNSUBSCRIBE_PROPS)
        filters: list[bytes] = []
        while buf.pos < len(body):
            filters.append(buf.string())
        if not filters:
            raise Mqtt5Error(PROTOCOL_ERROR, "an UNSUBSCRIBE has at least one filter")
        self._unsubscribes[pid] = filters
        return Translation(to_broker=[encode_packet(0xA2, pid + b"".join(map(string, filters)))])

    # --- broker -> client -----------------------------------------------------------------------
    def from_broker(self, header: int, body: bytes) -> Translation:
        """Translate one packet amqtt wrote for the client."""
        kind = header >> 4
        if kind == 3:
            return self._publish_out(header, body)
        if header == 0x20:
            return self._connack(body)
        if header == 0x62 and body[:2] in self._dropped_qos2:
            self._dropped_qos2.discard(body[:2])
            return Translation(to_broker=[b"\x70\x02" + body[:2]])
        if header == 0x90:
            entry = self._subscribes.pop(body[:2], _Subscribe([], {}))
            return Translation(to_client=[self._suback(body[:2], entry, body[2:])])
        if header == 0xB0:
            codes = bytearray()
            for topic_filter in self._unsubscribes.pop(body[:2], []):
                codes.append(0 if topic_filter in self._granted else _NO_SUBSCRIPTION)
                self._granted.discard(topic_filter)
            return Translation(to_client=[encode_packet(0xB0, body[:2] + b"\x00" + codes)])
        # PUBACK, PUBREC, PUBREL, PUBCOMP (MQTT 5 accepts the 2-byte form), PINGRESP
        return Translation(to_client=[encode_packet(header, body)])

    def _publish_out(self, header: int, body: bytes) -> Translation:
        qos = (header >> 1) & 0x03
        buf = WireBuffer(body)
        buf.binary()
        pid = buf.take(2) if qos else b""
        packet = encode_packet(header, body[: buf.pos] + b"\x00" + body[buf.pos :])
        if self.maximum_packet_size is not None and len(packet) > self.maximum_packet_size:
            if qos == 1:
                return Translation(to_broker=[b"\x40\x02" + pid])
            if qos == 2:
                self._dropped_qos2.add(pid)
                return Translation(to_broker=[b"\x50\x02" + pid])
            return Translation()
        if not qos:
            return Translation(to_client=[packet])
        if len(self._inflight) >= self.receive_maximum:
            self._held.append(packet)
            return Translation()
        self._inflight.add(pid)
        return Translation(to_client=[packet])

    def _release(self, out: Translation) -> None:
        while self._held and len(self._inflight) < self.receive_maximum:
            packet = self._held.popleft()
            self._inflight.add(_publish_pid(packet))
            out.to_client.append(packet)


def _publish_pid(packet: bytes) -> bytes:
    buf = WireBuffer(packet, 1)
    buf.varint()
    buf.binary()
    return buf.take(2)
