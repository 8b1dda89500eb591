"""The `qiantang` command."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer

from qiantang import __version__
from qiantang.cli.demo import demo
from qiantang.cli.gateway import gateway_app

__all__ = ["app"]

app = typer.Typer(help="Qiantang (钱塘): the 1+N industrial internet platform system.")
db_app = typer.Typer(help="Registry database commands.")
admin_app = typer.Typer(help="Administration commands.")
app.add_typer(db_app, name="db")
app.add_typer(admin_app, name="admin")
app.add_typer(gateway_app, name="gateway")
app.command("demo")(demo)

DataDir = Annotated[
    Path | None,
    typer.Option(
        "--data-dir", help="data directory (default QIANTANG_DATA_DIR or ./qiantang-data)"
    ),
]


def _settings(data_dir: Path | None, **extra: object) -> object:
    from qiantang.settings import Settings

    values: dict[str, object] = {k: v for k, v in extra.items() if v is not None}
    if data_dir is not None:
        values["data_dir"] = data_dir
    return Settings(**values)  # type: ignore[arg-type]


@app.command()
def version() -> None:
    """Print the version."""
    typer.echo(__version__)


@app.command()
def serve(
    data_dir: DataDir = None,
    host: Annotated[str | None, typer.Option(help="listen address")] = None,
    port: Annotated[int | None, typer.Option(help="HTTP port")] = None,
) -> None:
    """Run the embedded platform: REST API (OpenAPI at /docs), migrations applied first."""
    import uvicorn

    from qiantang.bootstrap import build_app
    from qiantang.settings import Settings

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    settings = _settings(data_dir, host=host, port=port)
    assert isinstance(settings, Settings)
    application = build_app(settings)
    typer.echo(f"Qiantang {__version__} on http://{settings.host}:{settings.port}/docs")
    uvicorn.run(application, host=settings.host, port=settings.port, log_level="info")


@db_app.command("upgrade")
def db_upgrade(data_dir: DataDir = None) -> None:
    """Apply registry migrations up to the newest."""
    from qiantang.registry.database import make_engine, upgrade
    from qiantang.settings import Settings

    settings = _settings(data_dir)
    assert isinstance(settings, Settings)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    upgrade(make_engine(settings.registry_url()))
    typer.echo("registry is at the newest revision")


@admin_app.command("bootstrap")
def admin_bootstrap(
    data_dir: DataDir = None,
    prefix: Annotated[str, typer.Option(help="base identifier prefix")] = "86.330",
    name: Annotated[str, typer.Option(help="base platform name")] = "浙江省工业互联网基础平台",
    username: Annotated[str, typer.Option(help="first operator's username")] = "operator",
    password: Annotated[
        str, typer.Option(prompt=True, hide_input=True, help="first operator's password")
    ] = "",
) -> None:
    """Create the base platform and its first operator; print an API key once."""
    from qiantang.bootstrap import build_runtime
    from qiantang.domain.errors import QiantangError
    from qiantang.services.admin import bootstrap, is_bootstrapped
    from qiantang.settings import Settings

    settings = _settings(data_dir)
    assert isinstance(settings, Settings)
    runtime = build_runtime(settings)
    with runtime.sessions() as db:
        if is_bootstrapped(db):
            typer.echo("already bootstrapped: nothing done (the first API key was shown then)")
            return
        try:
            result = bootstrap(
                db, prefix=prefix, platform_name=name, username=username, password=password
            )
        except QiantangError as err:
            typer.echo(f"error: {err}", err=True)
            raise typer.Exit(code=1) from err
    typer.echo(f"base platform id {result.platform_id}, prefix {prefix}")
    typer.echo(f"operator {username!r} (user id {result.user_id})")
    typer.echo(f"API key (shown once): {result.api_key}")
