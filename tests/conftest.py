"""Shared fixtures: a real `qiantang` HTTP server on a free port, and API clients."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from qiantang.api.app import create_app
from qiantang.api.deps import Runtime
from qiantang.bootstrap import build_runtime, telemetry_lifespan
from qiantang.services.admin import bootstrap
from qiantang.settings import Settings

BASE_PREFIX = "86.330"
OPERATOR_PASSWORD = "base-operator-pw"


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    """A running server: its URL, the bootstrap operator's API key and the base id."""

    url: str
    operator_key: str
    base_id: int
    data_dir: Path
    mqtt_port: int
    runtime: Runtime

    def client(self, token: str | None = None) -> httpx.Client:
        """An HTTP client, authenticated with `token` when given."""
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url + "/api/v1", headers=headers, timeout=30)


def _start(data_dir: Path, **overrides: Any) -> Iterator[Server]:
    mqtt_port = free_port()
    settings = Settings(data_dir=data_dir, secret_key="k" * 32, mqtt_port=mqtt_port, **overrides)
    runtime = build_runtime(settings)
    with runtime.sessions() as db:
        result = bootstrap(
            db,
            prefix=BASE_PREFIX,
            platform_name="浙江省工业互联网基础平台",
            username="base-operator",
            password=OPERATOR_PASSWORD,
        )
    port = free_port()
    app = create_app(runtime, lifespan=telemetry_lifespan)
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("server did not start")
        time.sleep(0.02)
    try:
        url = f"http://127.0.0.1:{port}"
        yield Server(url, result.api_key, result.platform_id, data_dir, mqtt_port, runtime)
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A bootstrapped server of its own for each test module."""
    yield from _start(tmp_path_factory.mktemp("qiantang"))
