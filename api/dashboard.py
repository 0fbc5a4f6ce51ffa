"""The browser dashboard (`GET /dashboard`) and its static files (`/static/...`), served by the API
itself: no CDN. `api/static/` holds the page, its script and styles, the vendored Chart.js build
(`vendor/chartjs/`, with its license) and `vendorpulse-client.js`, the script-tag build of the npm
package in `api/client-ts/` (written there by `make client`; not committed).
The page takes its token from `?token=` or a form field and talks to this server's WebSocket route."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

STATIC = Path(__file__).resolve().parent / "static"


def mount_dashboard(app: FastAPI) -> None:
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/dashboard", include_in_schema=False)
    async def dashboard() -> FileResponse:
        # no-cache: a new deployment's page and script are picked up at once
        return FileResponse(STATIC / "dashboard.html", headers={"Cache-Control": "no-cache"})
