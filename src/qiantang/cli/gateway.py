"""`qiantang gateway run|check CONFIG.yaml`: the edge gateway's commands.

Registered in the main CLI as ``app.add_typer(gateway_app, name="gateway")``; also runnable
alone as ``python -m qiantang.cli.gateway``.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from qiantang.edge.config import GatewayConfig

__all__ = ["gateway_app"]

gateway_app = typer.Typer(
    help="The edge gateway: reads machines over OPC UA and Modbus, forwards to a platform."
)
ConfigPath = Annotated[
    Path, typer.Argument(help="gateway config (YAML)", exists=True, dir_okay=False)
]


def _load(config: Path) -> GatewayConfig:
    from qiantang.edge.config_file import load_config
    from qiantang.edge.errors import ConfigError

    try:
        return load_config(config)
    except ConfigError as err:
        typer.echo(str(err), err=True)
        raise typer.Exit(code=2) from err


@gateway_app.command("run")
def run(
    config: ConfigPath,
    log_level: Annotated[str, typer.Option(help="debug, info, warning or error")] = "info",
) -> None:
    """Run the gateway until SIGTERM or Ctrl-C (the outbox is closed cleanly)."""
    from qiantang.edge.gateway import Gateway

    logging.basicConfig(
        level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    logging.getLogger("asyncua").setLevel(logging.WARNING)
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
    loaded = _load(config)

    async def main() -> None:
        task = asyncio.current_task()
        assert task is not None
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, task.cancel)
        try:
            await Gateway(loaded).run()
        except asyncio.CancelledError:
            logging.getLogger(__name__).info("gateway stopped")

    asyncio.run(main())


@gateway_app.command("check")
def check(
    config: ConfigPath,
    timeout: Annotated[float, typer.Option(help="seconds per probe")] = 10.0,
) -> None:
    """Validate a config and probe every endpoint it names; exit 1 if any probe fails."""
    from qiantang.edge.probe import probe_all

    logging.basicConfig(level=logging.ERROR)
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
    loaded = _load(config)
    typer.echo(f"{config}: valid ({len(loaded.devices)} sub-devices)")
    results = asyncio.run(probe_all(loaded, timeout_s=timeout))
    for result in results:
        typer.echo(f"{'ok  ' if result.ok else 'FAIL'} {result.name}: {result.detail}")
    if not all(r.ok for r in results):
        raise typer.Exit(code=1)


if __name__ == "__main__":
    gateway_app()
