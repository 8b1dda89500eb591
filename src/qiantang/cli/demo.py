"""`qiantang demo`: the experience center. Starts the embedded platform (as `qiantang serve`
does), seeds a province (idempotently: a second run on the same data directory reuses it),
then starts the simulated factories (`python -m qiantang.sim`) and an edge gateway
(`qiantang gateway run`) as child processes. Ctrl-C (or SIGTERM) stops the children first,
then the platform. The running part is `qiantang.cli.demo_run`, imported only here, so other
commands do not load the web stack.
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
from pathlib import Path
from typing import Annotated

import typer

__all__ = ["demo"]

_NEEDED = ("asyncua", "pymodbus", "aiomqtt", "yaml")


def demo(
    devices: Annotated[int, typer.Option(min=1, max=5000, help="simulated devices")] = 200,
    seed: Annotated[int, typer.Option(help="seed of the simulation (same seed, same run)")] = 7,
    data_dir: Annotated[
        Path, typer.Option("--data-dir", help="data directory (reused by the next run)")
    ] = Path("./qiantang-demo"),
    host: Annotated[str | None, typer.Option(help="HTTP listen address")] = None,
    port: Annotated[int | None, typer.Option(help="HTTP port (default 8000)")] = None,
    mqtt_port: Annotated[int | None, typer.Option(help="MQTT port (default 1883)")] = None,
) -> None:
    """Run the demo: a seeded province with simulated factories, behind the web console."""
    missing = [name for name in _NEEDED if importlib.util.find_spec(name) is None]
    if missing:
        typer.echo(
            f"error: the demo needs {', '.join(missing)}: pip install 'qiantang[edge]'", err=True
        )
        raise typer.Exit(code=2)
    from qiantang.bootstrap import build_runtime
    from qiantang.cli.demo_run import DemoRun
    from qiantang.settings import Settings
    from qiantang.sim.seed import seed_province

    logging.basicConfig(
        level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    values: dict[str, object] = {"data_dir": data_dir}
    options = (("host", host), ("port", port), ("mqtt_port", mqtt_port))
    values.update({k: v for k, v in options if v is not None})
    settings = Settings(**values)  # type: ignore[arg-type]
    typer.echo(f"Qiantang demo: data in {settings.data_dir.resolve()}")
    runtime = build_runtime(settings)
    typer.echo("seeding the province ...")
    result = seed_province(
        runtime.sessions,
        runtime.device_secrets,
        devices=devices,
        seed=seed,
        progress=lambda line: typer.echo(f"  {line}"),
    )
    made = "reused from the last run" if result.created == 0 else f"{result.created} records made"
    typer.echo(f"  province ready ({made})")
    code = asyncio.run(DemoRun(runtime, result, settings.data_dir / "demo").main())
    raise typer.Exit(code=code)
