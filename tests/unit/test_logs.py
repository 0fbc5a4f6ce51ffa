"""Repeated Kafka client errors pass once per period; other loggers are untouched
(processors/worker/client_logs.py)."""

from __future__ import annotations

import logging

from processors.worker.client_logs import limit_repeated_logs


def test_a_flood_of_client_errors_passes_once_per_message_and_other_logs_all_pass() -> None:
    seen: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(f"{record.name}: {record.getMessage()}")

    root = logging.Logger("test-root")
    root.addHandler(Collect())
    limit_repeated_logs(period_s=60, root=root)
    limit_repeated_logs(period_s=60, root=root)  # a second call adds nothing
    client = logging.getLogger("aiokafka.client")
    worker = logging.getLogger("vendorpulse.worker")
    for _ in range(300):
        for node in (1, 2, 3):
            record = client.makeRecord(
                client.name, logging.ERROR, __file__, 1, "Unable connect to node with id %s", (node,), None
            )
            root.handle(record)
    for i in range(5):
        root.handle(worker.makeRecord(worker.name, logging.WARNING, __file__, 1, "gap %s", (i,), None))
        root.handle(worker.makeRecord(worker.name, logging.WARNING, __file__, 1, "same", (), None))
    client_lines = [line for line in seen if line.startswith("aiokafka")]
    assert sorted(client_lines) == [f"aiokafka.client: Unable connect to node with id {n}" for n in (1, 2, 3)]
    assert len([line for line in seen if line.startswith("vendorpulse")]) == 10  # none limited
