"""`vendorpulse up` as a user runs it: against the session's Kafka (KAFKA_BOOTSTRAP_SERVERS), it starts
the worker, the API and the simulator, seeds 13 months of history into the empty topics, prints a
dashboard URL whose token reads twelve monthly bars at once and then live numbers, and a Ctrl-C
(SIGINT) stops every child and exits 0."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx2
import pytest

from infra.ports import free_port
from schemas.topics import Topics
from tests.integration.conftest import ROOT, read_topic


@pytest.mark.parametrize("registry", [False, True], ids=["single-object", "with-registry"])
def test_up_starts_everything_prints_the_dashboard_and_stops_on_ctrl_c(
    kafka_bootstrap: str, topics: Topics, tmp_path: Path, registry: bool
) -> None:
    port = free_port()
    unset = ("VENDORPULSE_JWT_SECRET", "VENDORPULSE_ENV", "VENDORPULSE_SCHEMA_REGISTRY_URL")
    env = {k: v for k, v in os.environ.items() if k not in unset}
    env |= {
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "VENDORPULSE_TOPIC_PREFIX": topics.prefix,
        "VENDORPULSE_STATE_DIR": str(tmp_path / "state"),
        "VENDORPULSE_DATA_DIR": str(tmp_path / "worker-data"),
    }
    command = [
        sys.executable, "-m", "infra", "up", "--port", str(port), "--vendors", "2", "--rate", "100",
        "--history-events", "400",
    ]  # fmt: skip
    if registry:  # the demo with a local schema registry and both framings (docs/REGISTRY.md)
        command.append("--registry")
    proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().decode()  # the one line on stdout: the URL to open
        if not line.startswith("dashboard:"):
            proc.kill()
            raise AssertionError(
                f"no dashboard URL; stdout {line!r}, stderr:\n{proc.communicate()[1].decode()}"
            )
        url = line.split(None, 1)[1].strip()
        parts = urlsplit(url)
        assert parts.netloc == f"127.0.0.1:{port}"
        assert parts.path == "/dashboard"
        token = parse_qs(parts.query)["token"][0]
        base = f"http://127.0.0.1:{port}"
        page = httpx2.get(f"{base}/dashboard", timeout=5)
        assert page.status_code == 200
        assert "vendorpulse" in page.text
        chart = httpx2.get(f"{base}/static/vendor/chartjs/chart.umd.min.js", timeout=5)
        assert chart.status_code == 200
        assert chart.text.startswith("/*!\n * Chart.js v4")
        headers = {"Authorization": f"Bearer {token}"}
        # The first look: the year of history is already folded, one bar a month.
        first = httpx2.get(f"{base}/api/v1/analytics/vendors/vendor-001/metrics", headers=headers, timeout=5)
        assert first.status_code == 200, first.text
        months = first.json()["monthlyTrends"]
        assert len(months) == 12
        assert all(m["orders"] > 0 and m["revenue"] > 0 for m in months), months
        # The development token reads the simulated vendor's numbers as they grow.
        deadline, orders = time.monotonic() + 60, 0
        while orders == 0:
            assert time.monotonic() < deadline, "no orders counted within 60 s"
            response = httpx2.get(
                f"{base}/api/v1/analytics/vendors/vendor-001/metrics", headers=headers, timeout=5
            )
            assert response.status_code in (200, 503), response.text
            if response.status_code == 200:
                orders = response.json()["metrics"]["orders"]["current"]
            time.sleep(0.5)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)  # what Ctrl-C sends
        started = time.monotonic()
        _, err = proc.communicate(timeout=60)
    stderr = err.decode()
    assert proc.returncode == 0, stderr
    assert time.monotonic() - started < 30
    assert "stopped." in stderr
    assert "history: 800 events (400 per vendor) over the last 395 days" in stderr
    assert "on the dashboard (12 monthly bars)" in stderr
    pids = [int(p) for p in re.findall(r"started \(pid (\d+),", stderr)]
    assert len(pids) == 3, stderr  # worker, API, simulator
    for pid in pids:  # every child was waited for: none is left running
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            continue
        raise AssertionError(f"child {pid} still runs after `up` exited")
    if registry:
        url = re.search(r"schema registry at (http://\S+):", stderr)
        assert url, stderr
        values = [v or b"" for _, v, _ in asyncio.run(read_topic(kafka_bootstrap, topics.orders))]
        assert any(v[:1] == b"\x00" for v in values)  # Confluent-framed orders were folded above
        assert any(v[:2] == b"\xc3\x01" for v in values)
        with pytest.raises(urllib.error.URLError, match="refused"):  # `up` stopped the registry it started
            urllib.request.urlopen(f"{url[1]}/config", timeout=2)
