"""docs/*.md describe the code: every function, method and class they name exists, and every
public method of Project is described (the store's contract must not drift)."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import scoring.io.datasets
import scoring.io.decoding
import scoring.io.formats
import scoring.store

DOCS = Path(__file__).resolve().parents[1] / "docs"
MODULES = {"STORE_API.md": scoring.store, "DATASETS_API.md": scoring.io.datasets, "DECODING_API.md": scoring.io.decoding,
           "FORMATS_API.md": scoring.io.formats}


def _named(text: str) -> tuple[set[str], set[str]]:
    code = "\n".join(re.findall(r"```python\n(.*?)```", text, re.S))
    defs = set(re.findall(r"\bdef (\w+)\(", code)) | set(re.findall(r"/ (\w+)\(", code))
    classes = set(re.findall(r"^class (\w+)", code, re.M))
    return defs, classes


def test_every_name_in_the_docs_exists() -> None:
    for doc, module in MODULES.items():
        defs, classes = _named((DOCS / doc).read_text())
        assert defs and classes
        missing_classes = sorted(c for c in classes if not hasattr(module, c))
        owners = [module, *(getattr(module, c) for c in classes if hasattr(module, c))]
        missing_defs = sorted(d for d in defs if not any(hasattr(o, d) for o in owners))
        assert not missing_classes and not missing_defs, (doc, missing_classes, missing_defs)


def test_every_public_method_of_project_and_its_parts_is_documented() -> None:
    text = (DOCS / "STORE_API.md").read_text()
    defs, classes = _named(text)
    public = {n for n, _ in inspect.getmembers(scoring.store.Project) if not n.startswith("_")}
    attributes = {"path", "classes", "dataset_root", "layout", "source", "conn", "db"}
    assert sorted(public - defs - attributes) == []
    for part in (scoring.store.Images, scoring.store.Issues, scoring.store.Cache, scoring.store.Runs,
                 scoring.store.Queue, scoring.store.Duplicates, scoring.store.EditLog, scoring.store.Team):
        assert part.__name__ in classes
        methods = {n for n, _ in inspect.getmembers(part, callable) if not n.startswith("_")}
        assert sorted(methods - defs) == [], part.__name__


def test_every_file_and_name_the_architecture_page_points_to_exists() -> None:
    """docs/ARCHITECTURE.md is the map: each `path.py` (`name`, ...) it gives is a file that
    defines each name (a function, a class, a method or an attribute), so the map stays true."""
    root = DOCS.parent
    text = (DOCS / "ARCHITECTURE.md").read_text()
    pairs = re.findall(r"`([\w/]+\.py)`\s*\(([^)]*)\)", text)
    assert len(pairs) >= 15, pairs
    missing = []
    for path, inside in pairs:
        source = root / path
        if not source.is_file():
            missing.append(path)
            continue
        body = source.read_text()
        for name in re.findall(r"`([\w.]+)`", inside):
            last = name.rsplit(".", 1)[-1]
            if not re.search(rf"(def|class) {last}\b|\b{last}\s*[:=]|self\.{last}\b", body):
                missing.append(f"{path}: {name}")
    assert not missing, missing


def test_the_readmes_command_line_lists_every_format_of_the_one_table() -> None:
    """`--format` and `--layout` in the README's synopsis are the table's (scoring.io.formats)."""
    text = (DOCS.parent / "README.md").read_text()
    written = re.search(r"image-triage export --db FILE DEST \[--format ([\w|]+)\]", text)
    read = re.search(r"\[--layout ([\w|]+)\]", text)
    assert written and written.group(1).split("|") == list(scoring.io.formats.export_formats())
    assert read and read.group(1).split("|") == list(scoring.io.formats.layouts())
