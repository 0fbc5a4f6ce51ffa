"""Settings of the API deployable, read from the environment (`VENDORPULSE_*`, contract §1).

Built by `api_settings()`, never at import time. Every limit and period is configurable so tests can
shorten them. The JWT secret is a `SecretStr`; without `VENDORPULSE_JWT_SECRET` a fixed development
secret is used only when `VENDORPULSE_ENV=dev`, and that secret is refused anywhere else.
"""

from __future__ import annotations

import json
import os
import socket
import uuid
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import NoDecode

from api.exceptions import ApiConfigError
from api.shard import Shard
from schemas.settings import KafkaSettings

DEV_SECRET = "vendorpulse-dev-secret-do-not-use-in-production"
MIN_SECRET_BYTES = 32  # RFC 7518 §3.2: an HS256 key at least as long as the hash output
HMAC_ALGORITHMS = frozenset({"HS256", "HS384", "HS512"})
PUBLIC_KEY_ALGORITHMS = frozenset({"RS256", "RS384", "RS512", "ES256", "ES384", "ES512"})


def _split(value: Any) -> Any:
    """Lists come from the environment as JSON (`["a","b"]`) or comma-separated (`a,b`)."""
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            return json.loads(text)
        return [part.strip() for part in text.split(",") if part.strip()]
    return value


def _instance_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


class ApiSettings(KafkaSettings):
    jwt_secret: SecretStr | None = Field(default=None, description="VENDORPULSE_JWT_SECRET (HS256)")
    jwt_algorithms: Annotated[list[str], NoDecode] = Field(default_factory=lambda: ["HS256"])
    jwt_audience: str = "vendorpulse"
    jwt_leeway_seconds: int = Field(default=10, ge=0, le=30)
    jwt_public_key_file: Path | None = Field(default=None, description="PEM public key for RS*/ES*")
    jwt_jwks_file: Path | None = Field(default=None, description="JWKS (JSON) file for RS*/ES*")

    allowed_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="browser Origins allowed on the WebSocket handshake; '*' = any"
    )
    heartbeat_seconds: float = Field(default=15.0, gt=0)
    missed_pongs: int = Field(default=2, ge=1)
    refresh_seconds: float = Field(default=30.0, gt=0)
    max_message_bytes: int = Field(default=4096, ge=64)
    messages_per_second: float = Field(default=10.0, gt=0)
    message_burst: int = Field(default=20, ge=1)
    max_connections_per_token: int = Field(default=5, ge=1)
    # A worker catching up after a broker or worker failure publishes orders in bursts that the Kafka
    # feed hands to every connection in one go; frames are shared strings, so a deep queue costs little.
    send_queue_size: int = Field(default=1024, ge=1, description="non-snapshot frames kept per connection")
    close_grace_seconds: float = Field(default=2.0, gt=0)
    ws_max_size: int = Field(default=65536, ge=1024, description="frame size limit of the server itself")
    # uvicorn closes a connection that never completes its request only with these (api.handshake).
    request_timeout_seconds: float = Field(
        default=10.0, gt=0, description="a request's head and body (or WebSocket upgrade) must arrive within"
    )
    max_request_head_bytes: int = Field(default=16384, ge=1024, description="request line plus headers")
    lag_interval_seconds: float = Field(default=2.0, gt=0)
    resume_max_records: int = Field(
        default=10_000, ge=1, description="vendor-activity offsets a resume reads back at most"
    )
    resume_timeout_seconds: float = Field(default=10.0, gt=0)
    instance_id: str = Field(default_factory=_instance_id)
    api_shard: str = Field(
        default="0/1", description="i/N: the share of vendors this node serves (api.shard)"
    )

    @field_validator("jwt_algorithms", "allowed_origins", mode="before")
    @classmethod
    def _lists(cls, value: Any) -> Any:
        return _split(value)

    @property
    def broadcast_topic(self) -> str:
        """The topic test broadcasts travel on, so that every API instance delivers them."""
        return f"{self.topic_prefix}api-broadcast"

    @property
    def shard(self) -> Shard:
        return Shard.parse(self.api_shard)

    @property
    def secret(self) -> SecretStr | None:
        """The HS* secret in force (the dev default in dev)."""
        if self.jwt_secret is None and self.env == "dev":
            return SecretStr(DEV_SECRET)
        return self.jwt_secret


def api_settings(**overrides: Any) -> ApiSettings:
    """Read the environment (keyword arguments win) and refuse unusable or unsafe combinations."""
    try:
        settings = ApiSettings(**overrides)
    except ValidationError as exc:
        raise ApiConfigError(f"invalid API settings: {exc}") from exc
    check(settings)
    return settings


def check(settings: ApiSettings) -> None:
    Shard.parse(settings.api_shard)
    algorithms = set(settings.jwt_algorithms)
    unknown = algorithms - HMAC_ALGORITHMS - PUBLIC_KEY_ALGORITHMS
    if not algorithms or unknown:
        raise ApiConfigError(
            f"VENDORPULSE_JWT_ALGORITHMS must list some of {sorted(HMAC_ALGORITHMS | PUBLIC_KEY_ALGORITHMS)}; "
            f"not allowed: {sorted(unknown) or 'an empty list'}"
        )
    secret = settings.secret
    if secret is not None and secret.get_secret_value() == DEV_SECRET and settings.env != "dev":
        raise ApiConfigError(
            "the development JWT secret is only accepted with VENDORPULSE_ENV=dev; "
            "set VENDORPULSE_JWT_SECRET to a random value (e.g. `openssl rand -hex 32`)"
        )
    if algorithms & HMAC_ALGORITHMS:
        if secret is None:
            raise ApiConfigError(
                "VENDORPULSE_JWT_SECRET is not set; set it (e.g. `openssl rand -hex 32`), or set "
                "VENDORPULSE_ENV=dev to use the fixed development secret"
            )
        if settings.env != "dev" and len(secret.get_secret_value().encode()) < MIN_SECRET_BYTES:
            raise ApiConfigError(
                f"VENDORPULSE_JWT_SECRET must be at least {MIN_SECRET_BYTES} bytes outside VENDORPULSE_ENV=dev"
            )
    if algorithms & PUBLIC_KEY_ALGORITHMS:
        files = [f for f in (settings.jwt_public_key_file, settings.jwt_jwks_file) if f is not None]
        if not files:
            raise ApiConfigError(
                "RS*/ES* algorithms need VENDORPULSE_JWT_PUBLIC_KEY_FILE (PEM) or VENDORPULSE_JWT_JWKS_FILE"
            )
        for path in files:
            if not path.is_file():
                raise ApiConfigError(f"JWT key file {path} does not exist; fix its VENDORPULSE_JWT_* setting")
