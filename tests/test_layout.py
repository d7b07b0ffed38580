"""The layout the house style asks for: no module over 400 lines, every package of the core
says its job and what it may import, and import-linter holds a contract for each package."""

from __future__ import annotations

import ast
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parents[1]
MAX_LINES = 400


def test_no_module_is_over_400_lines() -> None:
    long = {str(p.relative_to(ROOT)): n for p in [*ROOT.glob("scoring/**/*.py"), *ROOT.glob("gui/*.py")]
            if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert long == {}


def test_every_package_of_the_core_says_its_job_and_has_its_contract() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]
    top = next(c for c in config if c["name"].startswith("The core's packages"))
    contained = {name for c in config for name in c.get("containers", [])}
    packages = sorted(p.parent for p in ROOT.glob("scoring/*/__init__.py"))
    assert len(packages) >= 7
    for pkg in packages:
        dotted = f"scoring.{pkg.name}"
        doc = ast.get_docstring(ast.parse((pkg / "__init__.py").read_text())) or ""
        assert "import" in doc and len(doc) > 120, f"{dotted}: its __init__ says its job and what it may import"
        assert any(dotted in layer.split(" | ") for layer in top["layers"]), dotted
        modules = {p.stem for p in pkg.glob("*.py") if p.stem != "__init__"} | {
            p.parent.name for p in pkg.glob("*/__init__.py")}
        if len(modules) > 1:
            assert dotted in contained, f"{dotted} has no layers contract of its own"
            layers = next(c for c in config if dotted in c.get("containers", []))["layers"]
            named = {m.strip() for layer in layers for m in layer.split("|")}
            assert modules <= named, f"{dotted}: {sorted(modules - named)} in no layer"
