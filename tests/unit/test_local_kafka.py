"""The local broker's command line help when Java or Maven is missing, and its port layout."""

from __future__ import annotations

from pathlib import Path

import pytest

from infra.exceptions import ToolMissingError
from infra.kafka import LocalKafka


def test_missing_java_names_the_three_ways_on(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # nothing on PATH
    monkeypatch.setenv("VENDORPULSE_STATE_DIR", str(tmp_path / "state"))
    with pytest.raises(ToolMissingError) as caught:
        LocalKafka(state_dir=tmp_path / "state").libs()
    message = str(caught.value)
    assert "Java" in message
    assert "KAFKA_BOOTSTRAP_SERVERS" in message
    assert "docker compose" in message


def test_nodes_listen_100_ports_apart() -> None:
    cluster = LocalKafka(nodes=3, base_port=9092)
    assert cluster.bootstrap == "localhost:9092,localhost:9192,localhost:9292"
    assert [n.controller_port for n in cluster.nodes] == [9093, 9193, 9293]
    props = cluster._server_properties(cluster.nodes[1])
    assert "controller.quorum.voters=1@127.0.0.1:9093,2@127.0.0.1:9193,3@127.0.0.1:9293" in props
    assert "min.insync.replicas=2" in props
    assert "default.replication.factor=3" in props
