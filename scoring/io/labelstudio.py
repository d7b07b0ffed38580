"""Label Studio, both ways: read an image-classification project's JSON export as a dataset, and
write the review back as Label Studio tasks.

Import (``image-triage score export.json``, or ``--layout labelstudio``): each task's image (the
first image-like value of ``data``) with every annotation's choice kept as a vote with its
annotator. The given label is Image Triage's own latest decision when the task carries one (a
review supersedes the votes it settled), else the majority of the votes (a tie goes to the
earliest). Image references are resolved beside the JSON file: ``/data/local-files/?d=REL`` and
``/data/upload/...`` (as Label Studio writes them), relative paths, absolute paths, ``file://``;
``s3://`` and ``gs://`` are read as object storage; anything else (``http://``...) is recorded as
unreadable, naming the task.

Export (``image-triage export --format labelstudio``): ``tasks.json`` holds one task per exported
image: the original task when the project was imported from Label Studio (its annotations kept),
with the annotator's decision added as an annotation by ``image-triage``, the pool's consensus as
a prediction (its probability as the score), and the scores in ``data.image_triage`` so a Label
Studio project can sort by difficulty and filter to the likely errors.
"""

from __future__ import annotations

import json
import urllib.parse
from collections import Counter
from pathlib import Path
from typing import Any

from scoring.errors import ImageTriageError
from scoring.io.safeio import read_text

TRIAGE = "image-triage"  # the annotator name of the decisions Image Triage writes back
GIVEN = "given label"  # the annotator of a label the dataset gave (a CSV, a folder) that no one reviewed
IMAGE_KEYS = ("image", "img", "image_url", "url")


class LabelStudioError(ImageTriageError, ValueError):
    """A Label Studio export that cannot be read; the message names the file and the task."""


def read_tasks(path: Path) -> list[dict[str, Any]]:
    """The tasks of a Label Studio JSON export (a list, or ``{"tasks": [...]}``), read through the one reader."""
    try:
        data = json.loads(read_text(path, what="Label Studio export"))
    except json.JSONDecodeError as exc:
        raise LabelStudioError(f"{path}: not a Label Studio JSON export ({exc})") from exc
    except RecursionError as exc:
        raise LabelStudioError(f"{path}: nested too deeply to be a Label Studio export; not read") from exc
    tasks = data.get("tasks") if isinstance(data, dict) else data
    if not isinstance(tasks, list) or not all(isinstance(t, dict) for t in tasks):
        raise LabelStudioError(f"{path}: expected a list of tasks (Label Studio's JSON export)")
    return tasks


def image_ref(task: dict[str, Any]) -> str | None:
    data = task.get("data")
    if not isinstance(data, dict):
        return None
    for key in (*IMAGE_KEYS, *data):
        v = data.get(key)
        if isinstance(v, str) and v:
            return v
    return None


def resolve(ref: str) -> tuple[str | None, str | None]:
    """(path relative to the JSON's folder, absolute path or object-storage URI; None on error), error."""
    if ref.startswith("/data/local-files/"):
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(ref).query)
        d = (query.get("d") or [""])[0]
        return (d, None) if d else (None, f"no ?d= path in {ref!r}")
    if ref.startswith("/data/"):
        return ref[len("/data/"):], None
    if ref.startswith("file://"):
        return urllib.parse.unquote(urllib.parse.urlsplit(ref).path), None
    scheme = urllib.parse.urlsplit(ref).scheme
    if scheme in ("s3", "gs"):
        return ref, None
    if scheme and len(scheme) > 1:
        return None, f"the image is at {ref[:80]!r}, not a local file or s3:// / gs:// object"
    return ref, None


def task_path(task: dict[str, Any]) -> tuple[str | None, str]:
    """(the task's image as a dataset path - posix, relative to the JSON's folder, or a URI -
    or None, and why not). The dataset reader and the export both map tasks to images here."""
    ref = image_ref(task)
    if ref is None:
        return None, "no image in its data; is this an image project's export?"
    rel, why = resolve(ref)
    if rel is None:
        return None, why or "unreadable reference"
    return (rel if "://" in rel else Path(rel).as_posix()), ""


def choice_of(annotation: dict[str, Any]) -> str | None:
    """The first choice of an annotation's results; None where any field has another shape
    (``result: 7``, ``value: [1]``, ``choices: {}``): an export is someone else's file."""
    results = annotation.get("result")
    for r in results if isinstance(results, list) else []:
        value = r.get("value") if isinstance(r, dict) and r.get("type") == "choices" else None
        choices = value.get("choices") if isinstance(value, dict) else None
        if isinstance(choices, list) and choices and isinstance(choices[0], str):
            return choices[0]
    return None


def annotator_of(annotation: dict[str, Any]) -> str:
    who = annotation.get("completed_by")
    if isinstance(who, dict):
        who = who.get("email") or who.get("id")
    return str(who) if who is not None else "unknown"


def votes_of(task: dict[str, Any]) -> tuple[str | None, list[tuple[str, str]]]:
    """(the given label, [(annotator, label)] of the people's votes) of one task."""
    votes: list[tuple[str, str]] = []
    decided: str | None = None
    annotations = task.get("annotations")
    for a in annotations if isinstance(annotations, list) else []:
        if not isinstance(a, dict) or a.get("was_cancelled") is True:  # only a real true cancels
            continue
        label = choice_of(a)
        if label is None:
            continue
        if annotator_of(a) == TRIAGE:
            decided = label  # the latest review decision wins
        else:
            votes.append((annotator_of(a), label))
    if decided is not None:
        return decided, votes
    if not votes:
        return None, votes
    counts = Counter(lab for _, lab in votes)
    top = max(counts.values())
    return next(lab for _, lab in votes if counts[lab] == top), votes


def choice_result(label: str) -> list[dict[str, Any]]:
    return [{"from_name": "choice", "to_name": "image", "type": "choices", "value": {"choices": [label]}}]


def export_task(task: dict[str, Any] | None, image: str, final: str | None, decided: bool,
                consensus: str | None, consensus_prob: float | None, scores: dict[str, Any]) -> dict[str, Any]:
    """One task to write back for the exported copy ``image`` (a Label Studio reference): the
    original task (or a new one), the decision as an annotation by TRIAGE, the consensus as a
    prediction, the scores in ``data.image_triage``."""
    out: dict[str, Any] = json.loads(json.dumps(task)) if task is not None else {"data": {}}
    out.setdefault("data", {})["image"] = image
    out.setdefault("data", {})["image_triage"] = scores
    if decided and final is not None:
        out["annotations"] = [*(out.get("annotations") or []),
                              {"completed_by": TRIAGE, "result": choice_result(final), "was_cancelled": False}]
    elif task is None and final is not None:  # not reviewed, from a source with no tasks: its label, kept
        out["annotations"] = [{"completed_by": GIVEN, "result": choice_result(final), "was_cancelled": False}]
    if consensus is not None:
        out["predictions"] = [*(p for p in out.get("predictions") or [] if p.get("model_version") != TRIAGE),
                              {"model_version": TRIAGE, "score": consensus_prob, "result": choice_result(consensus)}]
    return out
