"""How often the worker's self-healing paths fired (processors/worker/watchdogs.py), kept in the data
directory so that a restart, which replaces the process, does not reset them."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

NAMES = ("input_resumes", "recovery_restarts", "gap_seeks")


@dataclass
class Counters:
    """How often each self-healing path fired, for the life of the data directory."""

    path: Path
    input_resumes: int = 0
    recovery_restarts: int = 0
    gap_seeks: int = 0

    @classmethod
    def load(cls, path: Path) -> Counters:
        try:
            stored = json.loads(path.read_text())
        except (OSError, ValueError):
            stored = {}
        counters = cls(path)
        for name in NAMES:
            setattr(counters, name, int(stored.get(name, 0)))
        return counters

    def bump(self, name: str, by: int = 1) -> None:
        setattr(self, name, getattr(self, name) + by)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fields = {k: v for k, v in asdict(self).items() if k != "path"}
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(fields))
        tmp.replace(self.path)
