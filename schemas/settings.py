"""Settings every vendorpulse process shares (contract §1), read from the environment.

Each deployable builds its own settings class on top of `KafkaSettings` through a function, never at
import time, so tests can set the environment first.
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_PORT = 9092
"""The local broker's client port (contract §8: `localhost:9092`)."""
PROJECT_ROOT = Path(__file__).resolve().parent.parent


def default_state_dir() -> Path:
    """`$VENDORPULSE_STATE_DIR`, else `.vendorpulse/` at the project root: local Kafka, registry, worker data."""
    env = os.environ.get("VENDORPULSE_STATE_DIR")
    return Path(env).resolve() if env else PROJECT_ROOT / ".vendorpulse"


class KafkaSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="VENDORPULSE_", extra="ignore")

    bootstrap_servers: str | None = Field(
        default=None,
        validation_alias=AliasChoices("KAFKA_BOOTSTRAP_SERVERS", "bootstrap_servers"),
        description="Kafka bootstrap servers; unset means the local broker of `vendorpulse kafka start`.",
    )
    topic_prefix: str = ""
    period_days: int = Field(default=30, ge=1, le=366)
    lateness_days: int = Field(
        default=400, description="L of contract §4.1: events dated more than L days before the clock are late"
    )
    partitions: int = Field(default=6, ge=1, description="partitions of topics created at start")
    env: str = "prod"
    schema_registry_url: str | None = Field(
        default=None,
        description="Confluent-compatible schema registry: with it, inputs may also use the Confluent "
        "framing (contract §3); unset: single-object encoding only.",
    )

    @field_validator("lateness_days")
    @classmethod
    def _lateness_in_range(cls, days: int) -> int:
        if not 1 <= days <= 3660:
            raise ValueError(
                f"VENDORPULSE_LATENESS_DAYS must be from 1 to 3660 days (contract §4.1), got {days}"
            )
        return days

    @property
    def bootstrap(self) -> str:
        return self.bootstrap_servers or f"localhost:{DEFAULT_PORT}"

    @property
    def uses_local_broker(self) -> bool:
        return self.bootstrap_servers is None


def kafka_settings() -> KafkaSettings:
    return KafkaSettings()
