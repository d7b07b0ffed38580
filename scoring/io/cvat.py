"""CVAT, both ways: the "CVAT for images 1.1" XML export with tags (image classification).

Import (``image-triage score annotations.xml``, or the export's folder, or ``--layout cvat``):
each ``<image name=...>`` with its ``<tag label=...>``; the images are read from ``images/``
beside the XML when there is one (CVAT's "save images" export), else beside it. Where an image
carries several tags (several annotators, or a review that added one), each is kept as a vote
(``<source> <n>``: CVAT records no annotator on a tag) and the given label is their majority, a
tie going to the first. The label list comes from ``<meta>``'s ``<labels>``. An image name that
is absolute or climbs out with ``..`` is an error naming it. The XML is read through the one
reader and refused when it declares a DOCTYPE or entities (an export never does; a crafted
file could expand without bound).

CVAT's ImageNet layout (``<class>/<image>``) is an ImageFolder: it needs no code of its own.

Export (``image-triage export --format cvat``): ``annotations.xml`` beside the exported
``images/``, one ``<image>`` per image with its final label as a manual tag, the labels in
``<meta>``; CVAT's "Upload annotations" (format CVAT 1.1) takes it onto a task made from the
images, and Image Triage reads it back.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path
from typing import Any

from scoring.errors import ImageTriageError
from scoring.io.safeio import read_text

ANNOTATIONS = "annotations.xml"
_DECLARATIONS = re.compile(r"<!\s*(DOCTYPE|ENTITY)", re.IGNORECASE)


class CvatError(ImageTriageError, ValueError):
    """A CVAT export that cannot be read; the message names the file and the image."""


def images_root(xml: Path) -> Path:
    return xml.parent / "images" if (xml.parent / "images").is_dir() else xml.parent


def read(xml: Path) -> tuple[list[str], list[tuple[str, str | None, list[tuple[str, str]]]]]:
    """(labels from meta, [(image name relative to images_root, given label, votes)])."""
    text = read_text(xml, what="CVAT annotations.xml")
    if _DECLARATIONS.search(text):
        raise CvatError(f"{xml}: declares a DOCTYPE or entities; a CVAT export does not, so it is not read")
    try:
        root = ET.fromstring(text)
    except ET.ParseError as exc:
        raise CvatError(f"{xml}: not valid XML ({exc})") from exc
    if root.tag != "annotations":
        raise CvatError(f"{xml}: expected <annotations> (CVAT for images 1.1), found <{root.tag}>")
    classes = [n.text.strip() for n in root.findall("./meta//labels/label/name") if n.text and n.text.strip()]
    rows: list[tuple[str, str | None, list[tuple[str, str]]]] = []
    seen: set[str] = set()
    for el in root.iter("image"):
        name = el.get("name") or ""
        where = f"{xml}: image {el.get('id', '?')} ({name!r})"
        if not name or Path(name).is_absolute() or ".." in Path(name).parts or "\\" in name:
            raise CvatError(f"{where}: the name must be a relative path inside {images_root(xml)}")
        if name in seen:
            raise CvatError(f"{where}: listed twice; each image once")
        seen.add(name)
        votes = [(f"{t.get('source') or 'tag'} {k + 1}", str(t.get("label"))) for k, t in enumerate(el.findall("tag"))
                 if t.get("label")]
        tags = [lab for _, lab in votes]
        label = Counter(tags).most_common(1)[0][0] if tags else None  # ties: the first seen
        rows.append((name, label, votes if len(votes) > 1 else []))
    return classes, rows


_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff\ud800-\udfff]")


def xml_text(text: str) -> str:
    """``text`` as XML 1.0 can hold it: a character it cannot (a control character, a lone
    surrogate) becomes its visible escape ``\\xNN`` (a name with one cannot cross unchanged)."""
    return _NOT_XML.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def write(path: Path, classes: list[str], images: list[dict[str, Any]], name: str = "image-triage export") -> None:
    """``annotations.xml`` at ``path`` for ``images``: each ``{"name": relative to images/,
    "label": final label or None, "width", "height"}``."""
    root = ET.Element("annotations")
    ET.SubElement(root, "version").text = "1.1"
    classes = [xml_text(c) for c in classes]
    images = [{**im, "name": xml_text(im["name"]), "label": None if im["label"] is None else xml_text(im["label"])}
              for im in images]
    task = ET.SubElement(ET.SubElement(root, "meta"), "task")
    ET.SubElement(task, "name").text = name
    ET.SubElement(task, "size").text = str(len(images))
    ET.SubElement(task, "mode").text = "annotation"
    labels = ET.SubElement(task, "labels")
    for c in classes:
        lab = ET.SubElement(labels, "label")
        ET.SubElement(lab, "name").text = c
        ET.SubElement(lab, "type").text = "tag"
        ET.SubElement(lab, "attributes")
    for n, im in enumerate(images):
        el = ET.SubElement(root, "image", {"id": str(n), "name": im["name"],
                                           "width": str(im.get("width") or 0), "height": str(im.get("height") or 0)})
        if im["label"] is not None:
            ET.SubElement(el, "tag", {"label": im["label"], "source": "manual"})
    ET.indent(root)
    path.write_bytes(b'<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root, encoding="utf-8") + b"\n")
