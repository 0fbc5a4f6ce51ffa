"""Repeated Kafka client errors, logged once per period instead of hundreds of times a second.

While Kafka is unreachable, aiokafka logs every failed connection attempt: the worker wrote 250 to 370
ERROR lines a second through a total outage (infra/harness/chaos.py), drowning whatever else it said. Each
distinct message of the named loggers (and their children) now passes once per `period_s`, followed
by a count of the copies it skipped (log-rate-limit's `StreamRateLimitFilter`). Other loggers are
not touched.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from log_rate_limit import StreamRateLimitFilter

CLIENT_LOGGERS = ("aiokafka", "kafka")
PERIOD_S = 10.0


class _Scoped(logging.Filter):
    """The rate limit, for the records of one logger and its children only (log-rate-limit's own
    `name` argument still limits the records of every other logger, a unit test found)."""

    def __init__(self, name: str, period_s: float) -> None:
        super().__init__(name)
        self.limit = StreamRateLimitFilter(period_sec=period_s)

    def filter(self, record: logging.LogRecord) -> bool:
        return not super().filter(record) or self.limit.filter(record)


def limit_repeated_logs(
    loggers: Iterable[str] = CLIENT_LOGGERS, period_s: float = PERIOD_S, root: logging.Logger | None = None
) -> None:
    """Add the limit to every handler of the root logger (once: calling again changes nothing).

    On the handlers, not the loggers: a logger's filters do not see its children's records."""
    root = root or logging.getLogger()
    for handler in root.handlers:
        present = {f.name for f in handler.filters if isinstance(f, _Scoped)}
        for name in loggers:
            if name not in present:
                handler.addFilter(_Scoped(name, period_s))
