"""Serving the console: the page at `/`, its assets under `/static/...`.

The console is plain files shipped inside the package (no build step, no Node.js at run
time, no CDN): `index.html`, ES modules under `js/`, the stylesheet under `css/`, the
message catalogues under `i18n/` and vendored libraries (ECharts) under `vendor/`. Only
those folders are served, so the Python modules beside them never are.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles

__all__ = ["ASSET_FOLDERS", "WEB_ROOT", "install_console"]

WEB_ROOT = Path(__file__).resolve().parent
ASSET_FOLDERS = ("js", "css", "i18n", "vendor")
_NO_CACHE = {"Cache-Control": "no-cache"}


def install_console(app: FastAPI) -> None:
    """Serve the console at `/` and its assets at `/static/<folder>/...` on `app`."""
    for folder in ASSET_FOLDERS:
        app.mount(
            f"/static/{folder}",
            StaticFiles(directory=WEB_ROOT / folder),
            name=f"console-{folder}",
        )
    index = WEB_ROOT / "index.html"

    @app.get("/", include_in_schema=False)
    def console_index() -> FileResponse:
        """The console's single page (routes live after `#`)."""
        return FileResponse(index, media_type="text/html", headers=_NO_CACHE)

    @app.get("/console", include_in_schema=False)
    def console_alias() -> RedirectResponse:
        """An easy-to-remember address for the console."""
        return RedirectResponse("/", status_code=307)
