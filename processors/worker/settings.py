"""Settings of `vendorpulse worker`, from the environment (contract §1 plus the worker's own knobs)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator

from schemas.settings import KafkaSettings

CLOCKS = ("wall", "stream")
"""`VENDORPULSE_CLOCK`: the machine's clock, or stream time (`processors.worker.alignment`)."""


class WorkerSettings(KafkaSettings):
    app_id: str = Field(default="vendorpulse-worker", description="consumer group and table namespace")
    snapshot_interval_ms: int = Field(
        default=50, ge=0, description="at most one snapshot per vendor per interval"
    )
    snapshot_budget_ms: float = Field(
        default=5.0,
        gt=0,
        description=(
            "while reading a backlog, at most this much snapshot building per snapshot interval, all vendors "
            "(live, up to half the interval)"
        ),
    )
    flush_interval_ms: int = Field(
        default=20, ge=1, description="a batch is folded, written to the table and acked at least this often"
    )
    store_interval_ms: int = Field(
        default=250,
        ge=0,
        description="folded input is stored (table and changelog) at most this often; 0: with every batch",
    )
    flush_max_events: int = Field(default=2000, ge=1, description="flush a partition after this many events")
    session_timeout_s: float = Field(
        default=10.0, ge=6.0, description="a crashed worker's partitions move after this long"
    )
    store: str = Field(
        default="auto", description="rocksdb, memory, or auto (rocksdb where rocksdict imports)"
    )
    history_cache: int = Field(
        default=20_000,
        ge=0,
        description="history values (ids, orders, first orders) kept decoded, all vendors",
    )
    history_pending: int = Field(
        default=400_000,
        ge=1000,
        description="history changes held in the heap, all vendors, before the largest holders checkpoint",
    )
    data_dir: Path | None = Field(
        default=None, description="local table store (default: .vendorpulse/worker)"
    )
    clock: str = Field(
        default="wall",
        description="what 'now' is for snapshots, the daily prune and the floor: wall (the machine's "
        "clock) or stream (stream time, from the Kafka record timestamps read; docs/GUARANTEES.md)",
    )

    @field_validator("clock")
    @classmethod
    def _clock_known(cls, clock: str) -> str:
        if clock not in CLOCKS:
            raise ValueError(
                f"must be wall (the machine's clock) or stream (from the record timestamps read), got {clock!r}"
            )
        return clock

    @property
    def store_url(self) -> str:
        if self.store == "auto":
            try:
                import rocksdict  # noqa: F401
            except ImportError:
                return "memory://"
            return "rocksdb://"
        return f"{self.store}://"


def worker_settings() -> WorkerSettings:
    return WorkerSettings()
