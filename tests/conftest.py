"""Shared fixtures. Integration tests get a real Kafka broker for the whole session:

1. `KAFKA_BOOTSTRAP_SERVERS` set: that cluster is used as it is;
2. else, where a Docker engine answers: testcontainers' `KafkaContainer` (KRaft) — for users with Docker;
3. else: a private local broker from the Maven jars (`infra.kafka.LocalKafka`) on its own ports and in a
   temporary state folder, stopped at the end. This is the path on machines without Docker and in CI.

Each test gets a fresh topic prefix, so tests never see each other's events.

Tests that need a schema registry get a real one (never a mock): `VENDORPULSE_TEST_SCHEMA_REGISTRY_URL`
if set (any Confluent-compatible registry), else the pinned local registry (`infra.registry`, built
with Go on first use) on a free loopback port for the session; `make_registry` starts private ones
(for tests that stop them). Tests speak only the Confluent REST API to them.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from infra.kafka import free_base_port
from processors.topics_admin import ensure_topics
from schemas.topics import Topics

if TYPE_CHECKING:
    from infra.registry import LocalRegistry

TEST_KAFKA_PORT = int(os.environ.get("VENDORPULSE_TEST_KAFKA_PORT", "39092"))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "integration" in Path(str(item.fspath)).parts:
            item.add_marker(pytest.mark.integration)


def _docker_answers() -> bool:
    if os.environ.get("VENDORPULSE_TEST_DOCKER", "auto") == "0" or shutil.which("docker") is None:
        return False
    try:
        return subprocess.run(["docker", "info"], capture_output=True, timeout=5, check=False).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    """Bootstrap address of a real Kafka broker for the test session."""
    if env := os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
        yield env
        return
    if _docker_answers():
        from testcontainers.kafka import KafkaContainer

        with KafkaContainer("apache/kafka:4.1.1").with_kraft() as container:
            yield container.get_bootstrap_server()
        return
    from infra.kafka import LocalKafka

    # Not under pytest's basetemp: another pytest session on the machine prunes old basetemps, and a
    # broker whose log dir vanishes shuts itself down mid-session.
    state = Path(tempfile.mkdtemp(prefix="vendorpulse-test-kafka-"))
    cluster = LocalKafka(nodes=1, base_port=free_base_port(TEST_KAFKA_PORT, nodes=1), state_dir=state)
    cluster.start()
    try:
        yield cluster.bootstrap
    finally:
        cluster.stop(timeout=5)  # throwaway data: no need to wait for a controlled shutdown
        shutil.rmtree(state, ignore_errors=True)


@pytest.fixture(scope="session")
def schema_registry() -> Iterator[str]:
    """URL of a real Confluent-compatible schema registry for the test session."""
    if env := os.environ.get("VENDORPULSE_TEST_SCHEMA_REGISTRY_URL"):
        yield env
        return
    from infra.ports import free_port
    from infra.registry import LocalRegistry

    state = Path(tempfile.mkdtemp(prefix="vendorpulse-test-registry-"))
    registry = LocalRegistry(free_port(), state)
    registry.start()
    try:
        yield registry.url
    finally:
        registry.stop()
        shutil.rmtree(state, ignore_errors=True)


@pytest.fixture
def make_registry(tmp_path: Path) -> Iterator[Callable[[], LocalRegistry]]:
    """Private local registries (started, empty), stopped at the end of the test."""
    from infra.ports import free_port
    from infra.registry import LocalRegistry

    started: list[LocalRegistry] = []

    def make() -> LocalRegistry:
        registry = LocalRegistry(free_port(), tmp_path / f"registry-{len(started)}")
        started.append(registry)
        registry.start()
        return registry

    yield make
    for registry in started:
        registry.stop()


def make_topics(prefix: str | None = None) -> Topics:
    return Topics.for_prefix(prefix if prefix is not None else f"t{uuid.uuid4().hex[:10]}-")


@pytest.fixture
def topics(kafka_bootstrap: str) -> Topics:
    """The contract's topics under a fresh prefix, created on the session's broker."""
    created = make_topics()
    asyncio.run(ensure_topics(kafka_bootstrap, created, partitions=6))
    return created
