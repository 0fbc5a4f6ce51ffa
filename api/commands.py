"""Entry points behind `vendorpulse api` and `vendorpulse token` (wired in infra/cli.py)."""

from __future__ import annotations

from api.auth import make_token
from api.settings import api_settings


def run_api(host: str = "127.0.0.1", port: int = 8000) -> None:
    """Serve the API on host:port with the settings of the environment until interrupted."""
    import uvicorn

    from api.app import create_app
    from api.server import config, raise_fd_limit, tune_gc

    raise_fd_limit()
    settings = api_settings()
    server = uvicorn.Server(config(create_app(settings), settings, host, port))
    tune_gc()
    server.run()


def make_token_cli(vendor: str | None, admin: bool, ttl: int) -> str:
    """A token signed with the configured secret (`VENDORPULSE_JWT_SECRET`, or the dev secret in dev)."""
    return make_token(vendor, admin=admin, ttl=ttl, settings=api_settings())
