"""The cache room of the store: encoder outputs (features, float16) and each member's probabilities per image."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from typing import Any

import numpy as np

from scoring.store.connection import ProjectBase
from scoring.store.rows import (
    ProjectError,
)

log = logging.getLogger(__name__)

TOPK_STORE_THRESHOLD = 1000  # above this many classes, keep each member's top-100 only
TOPK_KEEP = 100


def encode_probs(p: np.ndarray) -> bytes:
    """(K,) probabilities -> blob. K <= 1000: float16 of all K (2 bytes/class). Larger K: the
    top-100 as int32 indices + float16 values; at 21,000 classes a full row would be 42 kB per
    model per image, and the tail below the top 100 carries almost no mass."""
    k = p.shape[0]
    if k <= TOPK_STORE_THRESHOLD:
        return p.astype(np.float16).tobytes()
    top = np.argsort(-p, kind="stable")[:TOPK_KEEP].astype(np.int32)
    return b"T" + top.tobytes() + p[top].astype(np.float16).tobytes()


def decode_probs(blob: bytes, k: int) -> np.ndarray:
    """Inverse of encode_probs; a top-k row spreads the missing mass evenly over the rest."""
    if k <= TOPK_STORE_THRESHOLD:
        out = np.frombuffer(blob, dtype=np.float16).astype(np.float32)
    else:
        top = np.frombuffer(blob[1 : 1 + 4 * TOPK_KEEP], dtype=np.int32)
        vals = np.frombuffer(blob[1 + 4 * TOPK_KEEP :], dtype=np.float16).astype(np.float32)
        out = np.full(k, max(0.0, 1.0 - float(vals.sum())) / max(k - len(top), 1), dtype=np.float32)
        out[top] = vals
    s = out.sum()
    return out / s if s > 0 else out




class Cache:
    """Cached encoder outputs and per-member probabilities (float16)."""

    def __init__(self, store: ProjectBase) -> None:
        self.store = store

    # --- cached outputs and probabilities ------------------------------------------------

    def _stored_ids(self, table: str, keycol: str, key: str) -> set[int]:
        return {r[0] for r in self.store._q(f"SELECT image_id FROM {table} WHERE {keycol}=?", (key,))}

    def _sound_feature_ids(self, encoder_key: str) -> set[int]:
        """The images whose stored row of ``encoder_key`` is whole: float16 values, as many as the
        encoder's other rows have (its most common length). A row damaged in the file (a project
        is someone else's input) counts as missing, so the next run stores it anew."""
        rows = self.store._q("SELECT image_id, length(data) FROM features WHERE encoder_key=?", (encoder_key,))
        if not rows:
            return set()
        lengths = np.array([n for _, n in rows], dtype=np.int64)
        values, counts = np.unique(lengths, return_counts=True)
        width = int(values[counts.argmax()])
        return {i for i, n in rows if n == width and n % 2 == 0 and n > 0}

    def missing_features(self, encoder_key: str, ids: Sequence[int] | np.ndarray) -> np.ndarray:
        have = self._sound_feature_ids(encoder_key)
        return np.array([i for i in ids if int(i) not in have], dtype=np.int64)

    def put_features(self, encoder_key: str, ids: Sequence[int] | np.ndarray, feats: np.ndarray) -> None:
        data = np.asarray(feats, dtype=np.float16)
        with self.store._tx() as c:
            c.executemany(
                "INSERT OR REPLACE INTO features(encoder_key, image_id, data) VALUES (?,?,?)",
                [(encoder_key, int(i), data[n].tobytes()) for n, i in enumerate(ids)],
            )

    def _blobs(self, table: str, keycol: str, key: str, ids: Sequence[int] | np.ndarray) -> dict[int, bytes]:
        """The stored blobs of ``ids`` only, through the (key, image_id) primary key: a contiguous
        run of ids is one range scan, others one indexed lookup each, never the whole table."""
        if len(ids) == 0:
            return {}
        arr = np.asarray(ids, dtype=np.int64)
        lo, hi = int(arr.min()), int(arr.max())
        if hi - lo + 1 <= 2 * len(arr):  # dense: a range scan reads little more than asked
            rows = self.store._q(f"SELECT image_id, data FROM {table} WHERE {keycol}=? AND image_id BETWEEN ? AND ?", (key, lo, hi))
        else:
            rows = self.store._q(
                f"SELECT t.image_id, t.data FROM json_each(?) AS j JOIN {table} AS t "
                f"ON t.{keycol}=? AND t.image_id=j.value", (json.dumps(arr.tolist()), key),
            )
        return dict(rows)

    def get_features(self, encoder_key: str, ids: Sequence[int] | np.ndarray, dtype: Any = np.float32) -> np.ndarray:
        """(len(ids), D) stored features of ``ids`` in their order, as ``dtype`` (float16: as stored)."""
        stored = self._blobs("features", "encoder_key", encoder_key, ids)
        order = [int(i) for i in ids]
        missing = [i for i in order if i not in stored]
        if missing:
            raise ProjectError(f"{self.store.path}: no stored features of encoder {encoder_key} for images {missing[:5]}")
        if not order:
            return np.zeros((0, 0), dtype)
        blobs = [stored[i] for i in order]
        lengths = np.array([len(b) for b in blobs])
        values, counts = np.unique(lengths, return_counts=True)
        width = int(values[counts.argmax()])
        bad = [i for i, n in zip(order, lengths.tolist(), strict=True) if n != width or n % 2 or n == 0]
        if bad:
            raise ProjectError(f"{self.store.path}: the stored features of encoder {encoder_key} are damaged for "
                               f"images {bad[:5]}; score again: the run stores them anew")
        # one buffer, not a small array per row (issue 35)
        return np.frombuffer(b"".join(blobs), dtype=np.float16).reshape(len(blobs), -1).astype(dtype)

    def set_embedding(self, encoder_key: str, description: str) -> None:
        """Which stored features the neighbour evidence compares images by (set by a run)."""
        with self.store._tx():
            self.store._set_meta(embedding=json.dumps([encoder_key, description]))

    def embedding(self) -> tuple[str, str] | None:
        """(encoder key, description) of the neighbour embedding, or None before a run."""
        raw = self.store._meta("embedding")
        if raw is None:
            return None
        key, desc = json.loads(raw)
        return str(key), str(desc)

    def missing_probs(self, member_fp: str, ids: Sequence[int] | np.ndarray) -> np.ndarray:
        have = self._stored_ids("probs", "member_fp", member_fp)
        return np.array([i for i in ids if int(i) not in have], dtype=np.int64)

    def put_probs(self, member_fp: str, ids: Sequence[int] | np.ndarray, probs: np.ndarray) -> None:
        p = np.asarray(probs, dtype=np.float32)
        if p.ndim != 2 or p.shape[1] != len(self.store.classes):
            raise ValueError(f"probs must have shape (images, {len(self.store.classes)}), got {p.shape}")
        with self.store._tx() as c:
            c.executemany(
                "INSERT OR REPLACE INTO probs(member_fp, image_id, data) VALUES (?,?,?)",
                [(member_fp, int(i), encode_probs(p[n])) for n, i in enumerate(ids)],
            )

    def get_probs(self, member_fps: Sequence[str], ids: Sequence[int] | np.ndarray) -> np.ndarray:
        k = len(self.store.classes)
        out = np.zeros((len(member_fps), len(ids), k), dtype=np.float32)
        for m, fp in enumerate(member_fps):
            stored = self._blobs("probs", "member_fp", fp, ids)
            try:
                blobs = [stored[int(i)] for i in ids]
            except KeyError as exc:
                raise ProjectError(f"{self.store.path}: no stored probabilities of member {fp} for image {exc.args[0]}; score again") from None
            if k <= TOPK_STORE_THRESHOLD and len(blobs):  # fixed-size rows: decoded in one go, not one by one
                rows = np.frombuffer(b"".join(blobs), dtype=np.float16).reshape(len(blobs), k).astype(np.float32)
                sums = rows.sum(axis=1, keepdims=True)
                out[m] = np.divide(rows, sums, out=rows, where=sums > 0)
            else:
                for n, blob in enumerate(blobs):
                    out[m, n] = decode_probs(blob, k)
        return out
