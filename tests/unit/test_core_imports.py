"""The metrics core stays pure: importing it loads no Kafka client, Faust or web framework.

Checked in a fresh interpreter, since this test session has long imported everything.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("kafka", "aiokafka", "faust", "mode", "fastapi", "starlette", "uvicorn")


def modules_after(statement: str) -> list[str]:
    """Names in sys.modules after running `statement` in a new interpreter at the project root."""
    code = f"import json, sys\n{statement}\nprint(json.dumps(sorted(sys.modules)))"
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True, timeout=60
    )
    return list(json.loads(done.stdout))


@pytest.mark.parametrize(
    "statement",
    ["import processors.core", "import processors.exceptions"],
)
def test_the_core_loads_no_kafka_faust_or_web_module(statement: str) -> None:
    loaded = modules_after(statement)
    assert statement.removeprefix("import ") in loaded
    assert [m for m in loaded if m.split(".")[0] in HEAVY] == []


def test_importing_the_package_loads_none_of_its_modules() -> None:
    loaded = modules_after("import processors")
    assert [m for m in loaded if m.startswith("processors.") or m.split(".")[0] in HEAVY] == []
