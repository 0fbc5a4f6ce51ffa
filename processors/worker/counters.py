"""How often the worker's self-healing paths fired (processors/worker/watchdogs.py), and how often the
stream clock paused an input partition ahead of stream time (`alignment_pauses`), kept in the data
directory's `counters.json` so that a restart, which replaces the process, does not reset them. The
worker writes the file when it starts, so its presence shows which data directory a worker used."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

NAMES = ("input_resumes", "recovery_restarts", "gap_seeks", "alignment_pauses")
FILE_NAME = "counters.json"


@dataclass
class Counters:
    """How often each self-healing path fired, for the life of the data directory."""

    path: Path
    input_resumes: int = 0
    recovery_restarts: int = 0
    gap_seeks: int = 0
    alignment_pauses: int = 0

    @classmethod
    def in_dir(cls, data_dir: Path) -> Counters:
        """The counters of the worker whose data directory is `data_dir` (zero where none was kept)."""
        return cls.load(data_dir / FILE_NAME)

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

    def as_dict(self) -> dict[str, int]:
        return {name: int(getattr(self, name)) for name in NAMES}

    def bump(self, name: str, by: int = 1) -> None:
        setattr(self, name, getattr(self, name) + by)
        self.save()

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.as_dict()))
        tmp.replace(self.path)
