"""Reading a gateway config file: YAML, checked by the models in `qiantang.edge.config`,
every error reported with its key path and line.

The YAML is composed into nodes first, so each value's line is known (a line map from key
paths to node marks); then built into plain data (duplicate keys are errors, and a value
written ``${NAME}`` is read from the environment variable NAME, so secrets need not sit in
the file); then validated in two passes: the top level, then each device block by the model
its connector kind registered. Relative paths are taken from the file's folder.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from qiantang.edge.config import DeviceConfig, GatewayConfig, RawGatewayConfig
from qiantang.edge.errors import ConfigError, ConfigProblem, EdgeError
from qiantang.edge.registry import ConnectorRegistry, registry

__all__ = ["load_config", "parse_config"]

Key = tuple[str | int, ...]
_SCALARS = yaml.constructor.SafeConstructor()
_ENV_RE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def load_config(path: Path, connectors: ConnectorRegistry = registry) -> GatewayConfig:
    """Read and validate `path`; `ConfigError` lists every problem."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise ConfigError(str(path), [ConfigProblem("", 0, f"cannot read: {err}")]) from err
    return parse_config(text, str(path), path.parent, connectors)


def parse_config(
    text: str, source: str, base_dir: Path, connectors: ConnectorRegistry = registry
) -> GatewayConfig:
    """Validate YAML `text` (named `source` in errors)."""
    lines: dict[Key, int] = {}
    problems: list[ConfigProblem] = []
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        line = mark.line + 1 if mark is not None else 0
        raise ConfigError(source, [ConfigProblem("", line, f"not valid YAML: {err}")]) from err
    if node is None:
        raise ConfigError(source, [ConfigProblem("", 1, "the file is empty")])
    data = _build(node, (), lines, problems)
    if problems:
        raise ConfigError(source, problems)
    try:
        raw = RawGatewayConfig.model_validate(data)
    except ValidationError as err:
        raise ConfigError(source, _problems(err, (), lines)) from err
    devices = _devices(raw.devices, lines, connectors, problems)
    seen = {raw.uplink.key}
    for i, device in enumerate(devices):
        if device.key in seen:
            problems.append(_at(("devices", i), lines, f"{device.key} appears twice"))
        seen.add(device.key)
    if problems:
        raise ConfigError(source, problems)
    outbox = raw.outbox
    if not outbox.path.is_absolute():
        outbox = outbox.model_copy(update={"path": base_dir / outbox.path})
    return GatewayConfig(
        uplink=raw.uplink, outbox=outbox, health=raw.health, devices=tuple(devices)
    )


def _devices(
    blocks: Sequence[dict[str, Any]],
    lines: dict[Key, int],
    connectors: ConnectorRegistry,
    problems: list[ConfigProblem],
) -> list[DeviceConfig]:
    devices: list[DeviceConfig] = []
    for i, block in enumerate(blocks):
        where: Key = ("devices", i)
        connection = block.get("connector")
        kind = connection.get("type") if isinstance(connection, dict) else None
        if not isinstance(kind, str):
            problems.append(_at((*where, "connector", "type"), lines, "is required"))
            continue
        try:
            plugin = connectors.get(kind)
        except EdgeError as err:
            problems.append(_at((*where, "connector", "type"), lines, str(err)))
            continue
        try:
            devices.append(plugin.device_model.model_validate(block))
        except ValidationError as err:
            problems.extend(_problems(err, where, lines))
    return devices


def _build(node: yaml.Node, key: Key, lines: dict[Key, int], problems: list[ConfigProblem]) -> Any:
    lines[key] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        out: dict[str, Any] = {}
        for k_node, v_node in node.value:
            name = str(k_node.value)
            if name in out:
                problems.append(
                    ConfigProblem(_path((*key, name)), k_node.start_mark.line + 1, "is given twice")
                )
            out[name] = _build(v_node, (*key, name), lines, problems)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_build(v, (*key, i), lines, problems) for i, v in enumerate(node.value)]
    value = _SCALARS.construct_object(node)
    if isinstance(value, str) and _ENV_RE.fullmatch(value):
        name = value[2:-1]
        if name not in os.environ:
            problems.append(ConfigProblem(_path(key), lines[key], f"${{{name}}} is not set"))
            return value
        return os.environ[name]
    return value


def _problems(err: ValidationError, prefix: Key, lines: dict[Key, int]) -> list[ConfigProblem]:
    out = []
    for e in err.errors(include_url=False):
        loc: Key = (*prefix, *(part for part in e["loc"] if isinstance(part, str | int)))
        out.append(_at(loc, lines, str(e["msg"])))
    return out


def _at(key: Key, lines: dict[Key, int], message: str) -> ConfigProblem:
    probe = key
    while probe and probe not in lines:  # a missing key: point at its parent
        probe = probe[:-1]
    return ConfigProblem(_path(key), lines.get(probe, 0), message)


def _path(key: Key) -> str:
    text = ""
    for part in key:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text
