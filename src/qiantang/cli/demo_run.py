"""The running demo: the platform (uvicorn) in this process, the simulator and the edge
gateway as child processes in their own sessions, stopped in order on SIGINT or SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import typer
import uvicorn
import yaml

from qiantang.api.app import create_app
from qiantang.api.deps import Runtime
from qiantang.bootstrap import telemetry_lifespan
from qiantang.sim.gateway_config import gateway_config
from qiantang.sim.plan import FleetPlan, write_plan
from qiantang.sim.seed import SeedResult

__all__ = ["DemoRun", "spawn", "stop_child"]

log = logging.getLogger("qiantang.demo")
_CHILD_STOP_S = 15.0


async def _listening(ports: list[int], timeout_s: float = 30.0) -> None:
    """Wait until something accepts connections on each port (the simulator's servers), so
    the gateway does not start by logging every machine as down; give up after
    `timeout_s` (the gateway reconnects on its own)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    for port in ports:
        while loop.time() < deadline:
            try:
                _reader, writer = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                await asyncio.sleep(0.1)
                continue
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
            break


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: the demo stops it after the children."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class DemoRun:
    """The running demo: the platform in this process, the simulator and the gateway as
    children; `main` returns the exit code."""

    def __init__(self, runtime: Runtime, result: SeedResult, work_dir: Path) -> None:
        self.runtime, self.result, self.work_dir = runtime, result, work_dir
        self.children: list[tuple[str, subprocess.Popen[bytes], Path]] = []

    async def main(self) -> int:
        """Serve until SIGINT/SIGTERM (or the platform stops), then stop everything."""
        settings = self.runtime.settings
        app = create_app(self.runtime, lifespan=telemetry_lifespan)
        server = _Server(
            uvicorn.Config(app, host=settings.host, port=settings.port, log_level="warning")
        )
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        serving = asyncio.create_task(server.serve())
        stopping = asyncio.create_task(stop.wait())
        try:
            if not await self._started(server, serving, stopping):
                return 0 if stop.is_set() else 1
            plan = self._start_simulator()
            ports = [plan.opcua_port] if plan.on("opcua") else []
            await _listening(ports + ([plan.modbus_port] if plan.on("modbus") else []))
            self._start_gateway(plan)
            self._banner()
            watch = asyncio.create_task(self._watch_children())
            await asyncio.wait({serving, stopping}, return_when=asyncio.FIRST_COMPLETED)
            watch.cancel()
            typer.echo("stopping the simulator and the gateway ...")
        finally:
            await asyncio.to_thread(self._stop_children)
            server.should_exit = True
            stopping.cancel()
            with contextlib.suppress(BaseException):
                await serving
        typer.echo("demo stopped")
        return 0

    async def _started(
        self, server: _Server, serving: asyncio.Task[None], stopping: asyncio.Task[bool]
    ) -> bool:
        """Wait until uvicorn listens; False if it failed or a stop came first."""
        while not server.started:
            if serving.done():
                typer.echo("error: the platform did not start (is the port in use?)", err=True)
                return False
            if stopping.done():
                return False
            await asyncio.wait({serving, stopping}, timeout=0.05)
        return True

    def _start_simulator(self) -> FleetPlan:
        settings = self.runtime.settings
        self.work_dir.mkdir(parents=True, exist_ok=True)
        plan = FleetPlan(
            mqtt_host="127.0.0.1",
            mqtt_port=settings.mqtt_port,
            devices=self.result.devices,
            opcua_port=_free_port(),
            modbus_port=_free_port(),
        )
        plan_path = self.work_dir / "fleet.json"
        write_plan(plan, plan_path)
        sim_log = self.work_dir / "sim.log"
        self.children.append(
            ("simulator", spawn(["-m", "qiantang.sim", str(plan_path)], sim_log), sim_log)
        )
        return plan

    def _start_gateway(self, plan: FleetPlan) -> None:
        if self.result.gateway is not None and any(d.front != "mqtt" for d in plan.devices):
            config = gateway_config(plan, self.result.gateway, "gateway-outbox.db")
            config_path = self.work_dir / "gateway.yaml"
            config_path.write_text(yaml.safe_dump(config, allow_unicode=True, sort_keys=False))
            config_path.chmod(0o600)
            gw_log = self.work_dir / "gateway.log"
            args = ["-m", "qiantang.cli.gateway", "run", str(config_path), "--log-level", "warning"]
            self.children.append(("gateway", spawn(args, gw_log), gw_log))

    async def _watch_children(self) -> None:
        """Say once if a child ends on its own."""
        reported: set[str] = set()
        while True:
            for name, proc, log_path in self.children:
                if proc.poll() is not None and name not in reported:
                    reported.add(name)
                    typer.echo(
                        f"warning: the {name} exited ({proc.returncode}); see {log_path}", err=True
                    )
            await asyncio.sleep(1.0)

    def _stop_children(self) -> None:
        for name, proc, _ in reversed(self.children):
            stop_child(proc, name)

    def _banner(self) -> None:
        settings = self.runtime.settings
        fronts = {
            f: sum(1 for d in self.result.devices if d.front == f)
            for f in ("mqtt", "opcua", "modbus")
        }
        typer.echo("")
        typer.echo(f"console:  http://{settings.host}:{settings.port}/")
        typer.echo(f"API docs: http://{settings.host}:{settings.port}/docs")
        typer.echo(f"MQTT:     {settings.host}:{settings.mqtt_port}")
        typer.echo(
            f"devices:  {len(self.result.devices)} simulated: {fronts['mqtt']} direct over "
            "Alink MQTT, "
            f"{fronts['opcua']} on OPC UA and {fronts['modbus']} on Modbus behind edge gateway "
            f"{self.result.gateway.device_name if self.result.gateway else '-'}"
        )
        typer.echo("logins (username / password, role at node):")
        for login in self.result.logins:
            typer.echo(f"  {login.username:<16} {login.password}  {login.role} @ {login.where}")
        typer.echo(f"logs: {self.work_dir}/sim.log, gateway.log.  Ctrl-C stops the demo.")


def spawn(args: list[str], log_path: Path) -> subprocess.Popen[bytes]:
    """Start a child in its own session (so a terminal's Ctrl-C reaches only the demo, which
    stops it in order), its output appended to `log_path`."""
    with log_path.open("ab") as out:
        return subprocess.Popen(  # noqa: S603 (our own interpreter and module)
            [sys.executable, *args],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )


def stop_child(proc: subprocess.Popen[bytes], name: str) -> None:
    """SIGTERM, wait, then SIGKILL if it will not go."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=_CHILD_STOP_S)
    except subprocess.TimeoutExpired:
        log.warning("%s did not stop in %.0f s: killing it", name, _CHILD_STOP_S)
        proc.kill()
        proc.wait(timeout=5)
