"""Benchmarks, each runnable as `python -m bench.<name>`; results go to bench/results/."""

from __future__ import annotations

import os
import platform
import sys
from typing import Any


def machine(load_at_start: list[float]) -> dict[str, Any]:
    """Where a result was measured, for the JSON a benchmark writes."""
    return {
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "python": sys.version.split()[0],
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "load_average_at_start": load_at_start,
    }
