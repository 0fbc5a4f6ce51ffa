"""`vendorpulse worker`'s own settings: VENDORPULSE_CLOCK is checked at start, with a clear message."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from infra.cli import app as cli
from processors.worker.settings import WorkerSettings


def test_the_clock_is_the_wall_by_default_or_stream_time() -> None:
    assert WorkerSettings().clock == "wall"
    assert WorkerSettings(clock="stream").clock == "stream"


def test_an_unknown_clock_stops_the_worker_at_start_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("VENDORPULSE_CLOCK", "event")
    result = CliRunner().invoke(cli, ["worker"])
    assert result.exit_code == 2
    assert "VENDORPULSE_CLOCK: must be wall (the machine's clock) or stream" in result.output
    assert "got 'event'" in result.output
