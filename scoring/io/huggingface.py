"""Hugging Face datasets, both ways, offline: read a dataset saved to disk or as Parquet files,
write the review back as a Parquet dataset.

Import (``image-triage score PATH``, or ``--layout huggingface``): ``PATH`` is a folder written
by ``Dataset.save_to_disk`` (``state.json``, ``dataset_info.json``, ``*.arrow``) or
``DatasetDict.save_to_disk`` (``dataset_dict.json`` and one such folder per split), a ``.parquet``
file, or a folder of them (the Hub's ``data/train-00000-of-00001.parquet``). The column types
come from the ``datasets`` library's ``Features`` (stored in ``dataset_info.json`` or the Parquet
schema); nothing is downloaded and no dataset script is ever run. The image column is the
``datasets.Image`` feature (``image`` first), the label column the ``ClassLabel`` one
(``label`` first; a string column named ``label`` also serves; none: unlabelled).

Every byte goes through the one reader (scoring.io.safeio): the Arrow and Parquet files are
streamed from checked file handles. An image stored as bytes is unpacked once into the user's
cache folder (``<cache>/huggingface/<name>-<fingerprint>``, built hidden and renamed into place,
so a kill leaves nothing half-made), named ``<split or file>/<row>.<ext>``; the project reads the
images there. An image stored as a path is read where it is (relative to the dataset), through
the same reader; a URL that is not a local file or object storage is recorded as unreadable,
naming the row. The unpacked folder is a cache: deleted, it is made again from the dataset.

Export (``image-triage export --format huggingface``): ``data/train-00000-of-00001.parquet``
with the exported images embedded (``image``), the final label as a ``ClassLabel``
(``label``), the given label, the review status, the source path, the pool's consensus and
every score as columns; ``datasets.load_dataset("parquet", data_dir=DEST/"data")`` or
Image Triage itself reads it back.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from scoring.errors import ImageTriageError
from scoring.io.safeio import (
    confine,
    open_regular,
    read_regular,
    read_text,
    require_regular,
    walk_files,
)
from scoring.io.safewrite import (
    clean_leftovers,
    created_by_us,
    move_into_place,
    new_build_folder,
    remove_ours,
    write_new,
)
from scoring.locations import user_cache_dir

log = logging.getLogger(__name__)

EXPORT_FILE = "data/train-00000-of-00001.parquet"
RECORDS = "records.json"  # what the unpacked folder holds: {fingerprint, classes, records}
BATCH = 32  # rows held at once while unpacking: a batch holds every cell's bytes
MAX_CELL_BYTES = 64 * 1024 * 1024  # one image stored in a row; larger is recorded as unreadable
MIN_UNPACK_BUDGET = 1024**3  # the unpacked images may take max(this, 4 x the dataset's files) in all


class HuggingFaceError(ImageTriageError, ValueError):
    """A Hugging Face dataset that cannot be read; the message names the file (and row)."""


def _parquet_files(folder: Path) -> list[Path]:
    return [p for p in (sorted(folder.glob("*.parquet")) + sorted(folder.glob("data/*.parquet"))) if p.is_file()]


def is_huggingface(path: Path) -> bool:
    """A .parquet file, a folder saved by ``save_to_disk``, or one holding Parquet files (at its
    top or in ``data/``): cheap checks, no walk."""
    if path.is_file():
        return path.suffix.lower() == ".parquet"
    return (path / "state.json").is_file() or (path / "dataset_dict.json").is_file() or bool(_parquet_files(path))


def _json(path: Path) -> Any:
    try:
        return json.loads(read_text(path, what="Hugging Face dataset file"))
    except json.JSONDecodeError as exc:
        raise HuggingFaceError(f"{path}: not JSON ({exc})") from exc
    except RecursionError as exc:
        raise HuggingFaceError(f"{path}: nested too deeply to be a Hugging Face dataset file; not read") from exc


def _inside(folder: Path, name: Any, source: Path) -> Path:
    """``folder / name`` where ``name`` is a plain relative name from ``source`` (no ``..``)."""
    if not isinstance(name, str) or not name or Path(name).is_absolute() or ".." in Path(name).parts:
        raise HuggingFaceError(f"{source}: lists {name!r}; expected a file name inside {folder}")
    return folder / name


# -- reading -------------------------------------------------------------------------------

Unit = tuple[str, list[Path], Any, str]  # (name, data files, datasets.Features, "arrow" | "parquet")


def _saved_units(folder: Path, name: str) -> list[Unit]:
    import datasets

    state = _json(folder / "state.json")
    info = _json(folder / "dataset_info.json") if (folder / "dataset_info.json").is_file() else {}
    files = [_inside(folder, f.get("filename") if isinstance(f, dict) else None, folder / "state.json")
             for f in (state.get("_data_files") or [])] if isinstance(state, dict) else []
    if not files:
        raise HuggingFaceError(f"{folder / 'state.json'}: lists no data files; is this a save_to_disk folder?")
    feats = info.get("features") if isinstance(info, dict) else None
    features = datasets.Features.from_dict(feats) if isinstance(feats, dict) else None
    if features is None:
        features = _arrow_features(files[0])
    return [(name, files, features, "arrow")]


def _arrow_features(path: Path) -> Any:
    import datasets
    import pyarrow as pa

    with open_regular(path, what="Arrow file") as fh:
        return datasets.Features.from_arrow_schema(pa.ipc.open_stream(fh).schema)


def units(path: Path) -> list[Unit]:
    """The parts of the dataset at ``path``, in order; HuggingFaceError naming the file otherwise."""
    import datasets
    import pyarrow.parquet as pq

    walk = walk_files(path, path, lambda n: n.endswith((".parquet", ".arrow", ".json"))) if path.is_dir() else None
    if walk is not None and walk.bad:
        rel, why = walk.bad[0]
        raise HuggingFaceError(f"{path / rel}: {why}")
    try:
        if path.is_file():
            files = [path]
        elif (path / "dataset_dict.json").is_file():
            doc = _json(path / "dataset_dict.json")
            splits = doc.get("splits") if isinstance(doc, dict) else None
            if not isinstance(splits, list):
                raise HuggingFaceError(f"{path / 'dataset_dict.json'}: expected {{\"splits\": [...]}}")
            return [u for s in splits for u in _saved_units(_inside(path, s, path / "dataset_dict.json"), str(s))]
        elif (path / "state.json").is_file():
            return _saved_units(path, "data")
        else:
            files = _parquet_files(path)
        out: list[Unit] = []
        for f in files:
            with open_regular(f, what="Parquet file") as fh:
                schema = pq.ParquetFile(fh).schema_arrow
            out.append((f.stem, [f], datasets.Features.from_arrow_schema(schema), "parquet"))
        return out
    except (OSError, ValueError, KeyError, TypeError) as exc:
        if isinstance(exc, ImageTriageError):
            raise
        raise HuggingFaceError(f"{path}: not a Hugging Face dataset this version can read ({exc})") from exc


def columns(features: Any, source: str) -> tuple[str, str | None, list[str] | None]:
    """(image column, label column or None, class names or None) of ``features``."""
    import datasets

    images = [k for k, v in features.items() if isinstance(v, datasets.Image)]
    if not images:
        raise HuggingFaceError(f"{source}: no image column (a datasets.Image feature); columns: {', '.join(features)}")
    image = "image" if "image" in images else images[0]
    labels = [k for k, v in features.items() if isinstance(v, datasets.ClassLabel)]
    if labels:
        label = "label" if "label" in labels else labels[0]
        return image, label, list(features[label].names)
    if isinstance(features.get("label"), datasets.Value) and features["label"].dtype == "string":
        return image, "label", None
    return image, None, None


def _batches(unit: Unit, cols: list[str]) -> Iterator[Any]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    _, files, _, kind = unit
    for f in files:
        with open_regular(f, what=f"{kind} file") as fh:
            try:
                if kind == "parquet":
                    yield from pq.ParquetFile(fh).iter_batches(batch_size=BATCH, columns=cols)
                else:
                    for batch in pa.ipc.open_stream(fh):
                        for s in range(0, batch.num_rows, BATCH):
                            yield batch.slice(s, BATCH).select(cols)
            except (pa.ArrowException, OSError, ValueError) as exc:  # truncated, garbage: name the file
                if isinstance(exc, ImageTriageError):
                    raise
                raise HuggingFaceError(f"{f}: cannot be read as {kind} ({str(exc).splitlines()[0][:160]}); the file "
                                       "is truncated or damaged: save the dataset again") from exc


def fingerprint(path: Path) -> str:
    """Of the dataset's files: names, sizes and modification times (no content read)."""
    files = [path] if path.is_file() else [path / r for r in walk_files(path, path, lambda _n: True).files]
    h = hashlib.sha1()
    for f in files:
        st = require_regular(f)
        h.update(f"{f.relative_to(path) if f != path else f.name}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]


def _suffix(data: bytes, hint: str | None) -> str:
    from PIL import Image

    if hint and Path(hint).suffix.lower() in {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}:
        return Path(hint).suffix.lower()
    try:
        with Image.open(io.BytesIO(data)) as im:
            return "." + (im.format or "img").lower().replace("jpeg", "jpg")
    except Exception:  # noqa: BLE001 - not an image: the decode pass records why, naming the row
        return ".img"


def unpacked_folder(path: Path) -> Path:
    name = "".join(c if c.isalnum() or c in "-_." else "_" for c in (path.stem if path.is_file() else path.name))[:60]
    return user_cache_dir() / "huggingface" / f"{name or 'dataset'}-{fingerprint(path)}"


def read(path: Path, read_image: Callable[[str], bytes], follow_symlinks: bool = False
         ) -> tuple[Path, list[str], list[dict[str, Any]]]:
    """(the folder the images are read from, classes, records ``{"path", "label", "error"}``) of
    the dataset at ``path``; images stored as bytes are unpacked (once) into the cache folder.
    ``read_image`` reads an image stored as a path (the one reader: local files, object storage)."""
    dest = unpacked_folder(path)
    if (dest / RECORDS).is_file() and created_by_us(dest):
        doc = _json(dest / RECORDS)
        return dest, doc["classes"], doc["records"]
    parts = units(path)
    try:
        clean_leftovers(dest)
        tmp = new_build_folder(dest, "huggingface-images")
        os.chmod(tmp, 0o700)  # the user's images, in the user's cache: private, as the dataset may be
    except OSError as exc:
        raise HuggingFaceError(f"{path}: its images cannot be unpacked into {dest.parent} ({exc.strerror or exc}); "
                               "make that folder writable, or point XDG_CACHE_HOME at one that is") from exc
    try:
        classes, records = _unpack(path, parts, tmp, read_image, follow_symlinks)
        (tmp / RECORDS).write_text(json.dumps({"source": str(path), "classes": classes, "records": records}))
        if dest.exists() and created_by_us(dest):
            remove_ours(dest)  # an unpacking from an older version of the files
        move_into_place(tmp, dest)
    except BaseException:
        remove_ours(tmp)
        raise
    log.info("unpacked %d images of %s into %s", len(records), path, dest)
    _remove_superseded(dest, path)
    return dest, classes, records


def _remove_superseded(dest: Path, path: Path) -> None:
    """Earlier unpacks of the same dataset (its files changed since): ours, of this source, not
    ``dest``. A project that pointed at one follows the new folder when it next reads its dataset."""
    pattern = re.compile(rf"^{re.escape(dest.name.rsplit('-', 1)[0])}-[0-9a-f]{{16}}$")
    for old in dest.parent.iterdir():
        if old == dest or not pattern.match(old.name) or not created_by_us(old):
            continue
        try:
            source = json.loads(read_text(old / RECORDS, what="unpack record")).get("source")
        except (OSError, ValueError, ImageTriageError, AttributeError):
            continue
        if source == str(path):
            log.info("removing %s, an earlier unpack of %s", old, path)
            remove_ours(old)


def _unpack(path: Path, parts: list[Unit], tmp: Path, read_image: Callable[[str], bytes], follow: bool
            ) -> tuple[list[str], list[dict[str, Any]]]:
    files = [f for u in parts for f in u[1]]
    budget = [max(MIN_UNPACK_BUDGET, 4 * sum(require_regular(f).st_size for f in files))]
    classes: list[str] | None = None
    records: list[dict[str, Any]] = []
    for unit in parts:
        name = unit[0]
        image, label, names = columns(unit[2], f"{path} ({name})")
        if names is not None and not names:
            raise HuggingFaceError(f"{path} ({name}): the label column {label!r} is a ClassLabel with no class names; "
                                   "give it names (ClassLabel(names=[...])) or store the labels as strings")
        if names is not None:
            if classes is not None and names != classes:
                raise HuggingFaceError(f"{path}: split {name} has classes {names}, the others {classes}")
            classes = names
        (tmp / name).mkdir(parents=True, exist_ok=True)
        row = 0
        for batch in _batches(unit, [image] + ([label] if label else [])):
            cells = batch.column(0).to_pylist()
            labs = batch.column(1).to_pylist() if label else [None] * len(cells)
            for cell, lab in zip(cells, labs, strict=True):
                if names and isinstance(lab, int) and not -1 <= lab < len(names):
                    raise HuggingFaceError(f"{path} ({name}, row {row}): label {lab}, but the ClassLabel has "
                                           f"{len(names)} names ({', '.join(names[:5])}); fix the names or the labels")
                rec = _one(path, name, row, cell, read_image, tmp, follow, budget)
                rec["label"] = (names[lab] if 0 <= lab < len(names) else None) if names and isinstance(lab, int) else lab
                records.append(rec)
                row += 1
    found = sorted({r["label"] for r in records if r["label"] is not None})
    return (classes if classes is not None else found), records


def _one(path: Path, unit: str, row: int, cell: Any, read_image: Callable[[str], bytes], tmp: Path, follow: bool,
         budget: list[int]) -> dict[str, Any]:
    """One row's image written into the unpack folder (private to the user). A row that names a
    file is read through the one rule: a relative name inside the dataset's folder (no absolute
    path, no ``..``, no ``file://``, no link out unless ``follow``), or object storage."""
    where = f"{path} ({unit}, row {row})"
    data = cell.get("bytes") if isinstance(cell, dict) else None
    ref = cell.get("path") if isinstance(cell, dict) else None
    bad = {"path": f"{unit}/{row:07d}.img"}
    if data is None and ref:
        try:
            if isinstance(ref, str) and ref.split("://", 1)[0].lower() in ("s3", "gs", "gcs") and "://" in ref:
                target = ref
            else:
                base = path.parent if path.is_file() else path
                target = str(base / confine(base, ref, follow_symlinks=follow))
            data = read_image(target)
        except (OSError, ImageTriageError) as exc:
            return {**bad, "error": f"{where}: {exc}"}
    if data is None:
        return {**bad, "error": f"{where}: no image bytes and no path"}
    if not isinstance(data, bytes) or len(data) > MAX_CELL_BYTES:
        return {**bad, "error": f"{where}: an image of over {MAX_CELL_BYTES / 2**20:g} MiB in one row; not unpacked"}
    budget[0] -= len(data)
    if budget[0] < 0:
        raise HuggingFaceError(f"{where}: the images unpack to more than 4x the dataset's files; not unpacked "
                               "(a compressed bomb?): check the dataset")
    rel = f"{unit}/{row:07d}{_suffix(data, ref if isinstance(ref, str) else None)}"
    write_new(tmp / rel, data)
    return {"path": rel, "error": None}


# -- writing -------------------------------------------------------------------------------

def write(dest: Path, classes: list[str], rows: list[dict[str, Any]]) -> None:
    """``dest/EXPORT_FILE`` for the exported ``rows``: each ``{"file": exported image (Path),
    "path": its name relative to dest, "label", "given_label", "consensus": class name or None,
    "status", "source_path", "scores": {name: float or None}}``."""
    import datasets
    import pyarrow as pa
    import pyarrow.parquet as pq

    score_names = sorted({k for r in rows for k in r["scores"]})
    features = datasets.Features({
        "image": datasets.Image(),
        "label": datasets.ClassLabel(names=classes),
        "given_label": datasets.Value("string"),
        "status": datasets.Value("string"),
        "source_path": datasets.Value("string"),
        "consensus": datasets.Value("string"),
        **{k: datasets.Value("float64") for k in score_names},
    })
    schema = features.arrow_schema
    out = dest / EXPORT_FILE
    out.parent.mkdir(parents=True, exist_ok=True)
    with pq.ParquetWriter(out, schema) as w:
        for s in range(0, len(rows), BATCH):
            part = rows[s : s + BATCH]
            cols: dict[str, list[Any]] = {
                "image": [{"bytes": read_regular(r["file"]), "path": os.path.basename(r["path"])} for r in part],
                "label": [classes.index(r["label"]) if r["label"] in classes else -1 for r in part],
                "given_label": [r["given_label"] for r in part],
                "status": [r["status"] for r in part],
                "source_path": [r["source_path"] for r in part],
                "consensus": [r["consensus"] for r in part],
            }
            for k in score_names:
                cols[k] = [r["scores"].get(k) for r in part]
            w.write_table(pa.Table.from_pydict(cols, schema=schema))

