"""docs/API.md and docs/asyncapi.yaml describe every message type and close code the code uses."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from api.protocol import Close, In, Out

DOCS = Path(__file__).resolve().parents[2] / "docs"


def test_asyncapi_lists_every_message_type_both_ways() -> None:
    spec = yaml.safe_load((DOCS / "asyncapi.yaml").read_text())
    consts = {
        direction: {
            spec["components"]["messages"][ref["$ref"].rsplit("/", 1)[1]]["payload"]["allOf"][1][
                "properties"
            ]["type"]["const"]
            for ref in spec["operations"][operation]["messages"]
        }
        for direction, operation in (("out", "receiveUpdates"), ("in", "sendCommands"))
    }
    assert consts["out"] == {m.value for m in Out}
    assert consts["in"] == {m.value for m in In}


def test_api_md_documents_every_close_code_and_type() -> None:
    text = (DOCS / "API.md").read_text()
    documented = {int(code) for code in re.findall(r"^\| (\d{4}) \|", text, flags=re.MULTILINE)}
    assert {int(c) for c in Close} <= documented
    for kind in [*Out, *In]:
        assert f"`{kind.value}`" in text
