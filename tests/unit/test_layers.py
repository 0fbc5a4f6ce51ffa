"""Imports run one way: schemas <- processors <- api <- infra (docs/LAYOUT.md, ../shared/LAYOUT.md).

Every import statement of the four packages, module-level or inside a function (a lazy import is still
a dependency), is read with `ast`; a package may import only the packages below it, and `api` only the
pure core of `processors`. A second test checks that this test sees the imports it must see.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LAYERS = ("schemas", "processors", "api", "infra")
ALLOWED_FROM_PROCESSORS_IN_API = ("processors.core", "processors.exceptions")


def project_imports(path: Path) -> list[str]:
    """Dotted names of the project modules `path` imports (relative imports resolved)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            names.append(module)
    return [n for n in names if n.split(".")[0] in LAYERS]


def violations() -> list[str]:
    found = []
    for layer_index, layer in enumerate(LAYERS):
        above = set(LAYERS[layer_index + 1 :])
        for path in sorted((ROOT / layer).rglob("*.py")):
            for name in project_imports(path):
                top = name.split(".")[0]
                where = f"{path.relative_to(ROOT)} imports {name}"
                if top in above:
                    found.append(where)
                elif (
                    layer == "api"
                    and top == "processors"
                    and not name.startswith(ALLOWED_FROM_PROCESSORS_IN_API)
                ):
                    found.append(where + " (api may import only the pure core of processors)")
    return found


def test_imports_run_one_way() -> None:
    assert violations() == []


def test_the_reader_sees_lazy_and_relative_imports(tmp_path: Path) -> None:
    sample = ROOT / "schemas" / "_layer_probe.py"
    sample.write_text("def f() -> None:\n    from infra import cli  # noqa\n    import api.app  # noqa\n")
    try:
        assert project_imports(sample) == ["infra", "api.app"]
        assert "schemas/_layer_probe.py imports infra" in violations()
    finally:
        sample.unlink()
