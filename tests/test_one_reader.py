"""Every byte Image Triage reads on a user's behalf goes through one reader (scoring.io.safeio,
and scoring.io.datasets.read_bytes over it): no other module opens an image or a user's file.

The test reads the source of scoring/ and gui/ and fails on any call that opens a file another
way (``open``, ``Path.open/read_bytes/read_text``, ``Image.open`` on a path, ``torch.load`` on a
path, ``os.open``, ``shutil.copy``, ``np.load``, ``urlopen``, ``sqlite3.connect``), except the
places listed here, each with the reason it is not a user's file or is checked first. A new
reader elsewhere fails CI until it goes through safeio or is argued for here.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# (module, the call as written) -> why it is allowed
ALLOWED: dict[tuple[str, str], str] = {
    ("scoring/io/safeio.py", "os.open"): "the reader itself (regular files only, non-blocking, fstat-checked)",
    ("scoring/io/safeio.py", "open"): "copy_regular's new destination file (x mode) in a folder the caller made",
    ("scoring/io/safewrite.py", "os.open"): "write_new: a new private file (O_EXCL, O_NOFOLLOW) in a folder of ours",
    ("scoring/store/connection.py", "sqlite3.connect"): "the project file, after check_is_project (regular, not empty)",
    ("scoring/pool/weights.py", "urllib.request.urlopen"): "the weights download (a timeout on every wait)",
    ("scoring/pool/weights.py", "open"): "the download's own hidden file (x mode), removed on failure",
    ("scoring/tasks/demo.py", "resources.files('resources.demo').joinpath('digits.csv.gz').read_bytes"): "our package data",
    ("scoring/tasks/demo.py", "truth.open"): "writes the demo's truth file in the demo folder it made",
    ("scoring/tasks/demo.py", "(dest / 'demo_truth.csv').open"): "reads the demo folder it made",
    ("gui/app.py", "resources.files('resources').joinpath('style.qss').read_text"): "our package data",
    ("gui/qtlibs.py", "path.open"): "the system's /etc/os-release, to name its installer, when a regular file, 10 kB at "
    "most: read by `make demo` with the system Python before anything is installed (standard library only)",
    ("scoring/tasks/export.py", "(tmp / 'manifest.csv').open"): "the export's own build folder",
    ("scoring/tasks/export.py", "(tmp / 'difficulty.csv').open"): "the export's own build folder",
    ("scoring/tasks/export.py", "(tmp / 'edits.csv').open"): "the export's own build folder",
    ("scoring/tasks/export.py", "(tmp / 'removed.csv').open"): "the export's own build folder",
}
OPENERS = {"open", "read_bytes", "read_text", "urlopen", "fromfile"}
FULL = {"os.open", "sqlite3.connect", "shutil.copy", "shutil.copy2", "shutil.copyfile", "shutil.copytree"}
ON_BYTES = {"Image.open", "torch.load", "torch.jit.load", "np.load", "np.loadtxt"}  # only on io.BytesIO/StringIO


def _calls(path: Path) -> list[tuple[int, str, ast.Call]]:
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Call):
            out.append((node.lineno, ast.unparse(node.func), node))
    return out


def test_no_module_outside_the_reader_opens_a_file_directly() -> None:
    offenders = []
    for path in sorted([*ROOT.joinpath("scoring").rglob("*.py"), *ROOT.joinpath("gui").rglob("*.py")]):
        rel = path.relative_to(ROOT).as_posix()
        for line, name, call in _calls(path):
            last = name.rsplit(".", 1)[-1]
            if name in ON_BYTES:
                arg = ast.unparse(call.args[0]) if call.args else ""
                if not arg.startswith(("io.BytesIO(", "io.StringIO(", "io.TextIOWrapper(gzip.GzipFile(fileobj=io.BytesIO(")):
                    offenders.append(f"{rel}:{line}: {name}({arg}) reads a path: read the bytes with safeio first")
                continue
            if name.endswith(("Project.open", "ProjectBase")) or (last not in OPENERS and name not in FULL):
                continue
            if name in ("read_text", "read_bytes", "read_regular", "read_head") or name.startswith(
                    ("safeio.", "self.")):
                continue  # the reader's own functions (scoring.io.safeio / datasets.read_bytes)
            if (rel, name) not in ALLOWED:
                offenders.append(f"{rel}:{line}: {name}(...) opens a file outside scoring.io.safeio")
    assert not offenders, "\n".join(offenders)


# (module, the call as written) -> why a write outside scoring.io.safewrite is fine there
WRITES_ALLOWED: dict[tuple[str, str], str] = {
    ("scoring/tasks/export.py", "dst.write_bytes"): "an image copied into the export's own build folder",
    ("scoring/tasks/export.py", "(tmp / 'export_report.json').write_text"): "the export's own build folder",
    ("scoring/tasks/export.py", "(tmp / 'classes.txt').write_text"): "the export's own build folder",
    ("scoring/tasks/export.py", "(tmp / 'classes.json').write_text"): "the export's own build folder",
    ("scoring/io/formats.py", "(folder / 'manifest.json').write_text"): "the export's own build folder",
    ("scoring/io/formats.py", "(folder / 'tasks.json').write_text"): "the export's own build folder",
    ("scoring/io/cvat.py", "path.write_bytes"): "annotations.xml in the export's own build folder",
    ("scoring/io/fiftyone.py", "(dest / 'labels.json').write_text"): "the export's own build folder",
    ("scoring/io/fiftyone.py", "(dest / 'samples.json').write_text"): "the export's own build folder",
    ("scoring/io/huggingface.py", "(tmp / RECORDS).write_text"): "the unpack's own hidden build folder",
}
WRITERS = {"write_text", "write_bytes"}


def test_no_module_outside_the_writer_writes_a_file_directly() -> None:
    """Writes too (issue 27): a file written anywhere but scoring.io.safewrite is listed above,
    with the reason it cannot touch what is not ours."""
    offenders = []
    for path in sorted([*ROOT.joinpath("scoring").rglob("*.py"), *ROOT.joinpath("gui").rglob("*.py")]):
        rel = path.relative_to(ROOT).as_posix()
        if rel == "scoring/io/safewrite.py":
            continue
        for line, name, _call in _calls(path):
            if name.rsplit(".", 1)[-1] in WRITERS and (rel, name) not in WRITES_ALLOWED:
                offenders.append(f"{rel}:{line}: {name}(...) writes a file outside scoring.io.safewrite")
    assert not offenders, "\n".join(offenders)


def test_the_scan_sees_a_direct_read(tmp_path: Path) -> None:
    """The scan itself can fail: a module that opens an image directly is caught."""
    bad = tmp_path / "bad.py"
    bad.write_text("from PIL import Image\nImage.open('x.png')\nopen('y')\nPath('z').read_bytes()\n"
                   "Path('w').write_text('x')\n")
    names = [n for _, n, _ in _calls(bad)]
    assert {"Image.open", "open", "Path('z').read_bytes", "Path('w').write_text"} <= set(names)
