"""The import rules of docs/architecture.md, checked on every module's source."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FORBIDDEN = {
    "krun": {"emulator", "scenarios"},  # production code never depends on fakes or the harness
    "emulator": {"krun", "scenarios"},  # fakes are written from the real services, not from krun
}


def imported_packages(path: Path) -> set[str]:
    """Top-level names of every module `path` imports, wherever the import stands."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_package_imports_respect_the_layers(package: str) -> None:
    """No module of krun/ or emulator/ imports a package the architecture forbids it."""
    sources = sorted((ROOT / package).rglob("*.py"))
    assert sources, f"no sources found under {package}/"
    offenders = {
        str(path.relative_to(ROOT)): sorted(imported_packages(path) & FORBIDDEN[package])
        for path in sources
        if imported_packages(path) & FORBIDDEN[package]
    }
    assert {} == offenders


def test_the_checker_sees_nested_and_from_imports(tmp_path: Path) -> None:
    """Imports inside functions and `from` imports are found; relative ones are ignored."""
    source = tmp_path / "m.py"
    source.write_text(
        "import os.path\ndef f():\n    from emulator.world import World\nfrom . import x\n"
    )
    assert {"os", "emulator"} == imported_packages(source)
