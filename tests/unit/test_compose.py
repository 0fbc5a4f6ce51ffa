"""docker-compose.yml is for users with Docker; nobody runs it here, so at least check what it says."""

from __future__ import annotations

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def test_compose_file_has_the_product_services() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert set(services) == {"kafka", "schema-registry", "worker", "api", "simulator"}
    assert services["kafka"]["image"].startswith("apache/kafka:4.")
    assert services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"  # KRaft
    for name in ("worker", "api", "simulator"):
        service = services[name]
        assert service["command"][0] == "vendorpulse"
        assert service["environment"]["KAFKA_BOOTSTRAP_SERVERS"] == "kafka:19092"
        assert service["depends_on"]["kafka"]["condition"] == "service_healthy"
        assert service["depends_on"]["schema-registry"]["condition"] == "service_healthy"
        assert service["environment"]["VENDORPULSE_SCHEMA_REGISTRY_URL"] == "http://schema-registry:8081"
        dockerfile = ROOT / service["build"]["context"] / service["build"]["dockerfile"]
        assert dockerfile.exists()
    assert "8000:8000" in services["api"]["ports"]
    registry = services["schema-registry"]
    assert registry["image"].startswith("confluentinc/cp-schema-registry:")  # a public Confluent image
    assert (
        registry["environment"]["SCHEMA_REGISTRY_KAFKASTORE_BOOTSTRAP_SERVERS"] == "PLAINTEXT://kafka:19092"
    )
    assert "8081:8081" in registry["ports"]


def test_compose_commands_exist_in_the_cli() -> None:
    from typer.main import get_command

    from infra.cli import app

    commands = set(get_command(app).commands)  # type: ignore[attr-defined]
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    used = {s["command"][1] for s in compose["services"].values() if "command" in s}
    missing = used - commands
    assert not missing, f"compose runs subcommands the CLI lacks: {missing}"


def test_dockerfile_installs_the_console_script() -> None:
    text = (ROOT / "infra" / "Dockerfile").read_text()
    for package in ("processors", "api", "schemas", "infra"):
        assert f"COPY {package} {package}" in text
    assert "pip install" in text
    # the dashboard's client is built from api/client-ts (not in git) and copied where the API serves it
    assert "npm ci" in text
    assert "api/static/vendorpulse-client.js" in text
