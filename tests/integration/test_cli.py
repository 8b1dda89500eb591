"""The `qiantang` command as a user runs it: help everywhere, migrations, bootstrap, serve."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import free_port

COMMANDS = [
    [],
    ["serve"],
    ["db"],
    ["db", "upgrade"],
    ["admin"],
    ["admin", "bootstrap"],
    ["version"],
]


def qiantang(*args: str, data_dir: Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "QIANTANG_DATA_DIR": str(data_dir)}
    return subprocess.run(
        [sys.executable, "-m", "qiantang.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        check=False,
    )


@pytest.mark.parametrize("command", COMMANDS, ids=[" ".join(c) or "root" for c in COMMANDS])
def test_help_on_every_command(command: list[str], tmp_path: Path) -> None:
    result = qiantang(*command, "--help", data_dir=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "Usage" in result.stdout


def test_db_upgrade_and_bootstrap_once(tmp_path: Path) -> None:
    assert qiantang("db", "upgrade", data_dir=tmp_path).returncode == 0
    assert (tmp_path / "registry.db").exists()
    first = qiantang("admin", "bootstrap", "--password", "change-me-now", data_dir=tmp_path)
    assert first.returncode == 0, first.stderr
    assert "API key (shown once): qtk_" in first.stdout
    second = qiantang("admin", "bootstrap", "--password", "change-me-now", data_dir=tmp_path)
    assert second.returncode == 0
    assert "already bootstrapped" in second.stdout
    assert "qtk_" not in second.stdout
    key_file = tmp_path / "secret.key"
    assert key_file.exists() and (key_file.stat().st_mode & 0o077) == 0


def test_serve_answers_and_stops(tmp_path: Path) -> None:
    boot = qiantang("admin", "bootstrap", "--password", "change-me-now", data_dir=tmp_path)
    key = boot.stdout.split("API key (shown once): ")[1].strip()
    port = free_port()
    env = {**os.environ, "QIANTANG_DATA_DIR": str(tmp_path)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "qiantang.cli", "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(url + "/healthz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None, "serve exited early"
            assert time.monotonic() < deadline, "serve did not answer in 60 s"
            time.sleep(0.1)
        assert httpx.get(url + "/docs").status_code == 200
        assert "/api/v1/platforms" in httpx.get(url + "/openapi.json").json()["paths"]
        me = httpx.get(url + "/api/v1/me", headers={"Authorization": f"Bearer {key}"})
        assert me.status_code == 200 and me.json()["username"] == "operator"
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=20)
    # uvicorn shuts down cleanly on SIGTERM, then re-raises the signal as its exit status
    assert proc.returncode in (0, -15)
    assert b"Finished server process" in out
