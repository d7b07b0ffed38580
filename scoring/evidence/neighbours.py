"""Evidence for a decision: the images nearest to one image, within one class.

For the image under review the app shows its nearest neighbours among the images carrying its
given label and among those carrying the pool's consensus label, so the annotator compares it
with examples rather than with a class name. Nearness is the cosine of centred stored features:
a backbone member's penultimate features when the pool has one (they cluster by class), else the
16x16 colour thumbnails every run stores (they find look-alikes). Which one is used is recorded
by the run (``project.cache.embedding``) and shown beside the neighbours.

Memory and time: the features are read once, centred, projected on their first ``DIMS``
principal components (fitted on a sample), L2-normalised and held as float32 sorted by the labels
they had when the index was built (N x 128 x 4 bytes: 0.5 GB at 1,000,000 images). A query is
one matrix-vector product over one class's rows. Labels changed since (relabels, removals) are
read from the edit log at each query, so the answer always follows the current labels without
rebuilding. Measured (benchmarks/bench_neighbours.py): at 1,000,000 x 512 float16 the
uncompressed index answered the pane's two strips in 387 ms (too slow for a key press); see the
benchmark for the projected one.
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass

import numpy as np

from scoring.store import Project

log = logging.getLogger(__name__)

READ_CHUNK = 20_000
DIMS = 128  # principal components kept
PCA_SAMPLE = 50_000


def principal(feats: np.ndarray, dims: int, *, centre: bool, sample: int = PCA_SAMPLE
              ) -> tuple[np.ndarray, np.ndarray | None]:
    """(mean (D,) float32, (D, dims) float32 basis of the first principal directions, or None when D <=
    dims), fitted on a sample of ``sample`` rows; uncentred (mean 0) when not ``centre``. The one
    PCA of the project (the neighbour index, the duplicate search). Torch's linear algebra, not
    numpy's: after torch has run in this process (a re-rank's refit), numpy's BLAS threads fight
    torch's and the same eigh took 4.5 times as long. Where torch is not loaded (the review
    window, which never imports it: issue 31) numpy's does the same sums, and where torch's
    eigh does not converge (its MKL routine, on a covariance whose spectrum is mostly zeros: a
    backbone's features of tiny digits, most of its dimensions constant) numpy's takes over. In
    float64: float32 saved 0.025 s on 2,000 thumbnails but failed to converge on the demo."""
    n, d = feats.shape
    rows = feats[np.sort(np.random.default_rng(0).choice(n, min(n, sample), replace=False))].astype(np.float64)
    mean = rows.mean(0) if centre else np.zeros(d, dtype=np.float64)
    if d <= dims:
        return mean.astype(np.float32), None
    rows -= mean
    if dims <= len(rows) < d:
        return mean.astype(np.float32), _principal_by_rows(rows, dims)
    torch = sys.modules.get("torch")
    if torch is not None:
        t = torch.from_numpy(rows)
        try:
            _, tvecs = torch.linalg.eigh(t.T @ t)
        except RuntimeError as exc:  # torch.linalg.LinAlgError
            log.info("torch's eigh did not converge (%s); numpy's takes over", str(exc).splitlines()[0][:80])
        else:
            return mean.astype(np.float32), tvecs.flip(1)[:, :dims].float().numpy()  # the largest components first
    _, vecs = np.linalg.eigh(rows.T @ rows)
    return mean.astype(np.float32), np.ascontiguousarray(vecs[:, ::-1][:, :dims], dtype=np.float32)


def _principal_by_rows(rows: np.ndarray, dims: int) -> np.ndarray:
    """(D, dims) float32: the same directions from the (M, M) products of M < D rows (2026-12-05:
    the (D, D) eigh of a 1,280-wide backbone took 0.4 s quiet whatever the number of images, and
    1.7 s of a 12 s, 200-image run with a core busy; 200 rows now take 0.01 s): each direction is rows.T @ u / sqrt(eigenvalue), ``u`` the rows' own
    eigenvector; directions the rows do not span stay zero, as the rows' projections on them are)."""
    torch = sys.modules.get("torch")  # torch's sums where it is loaded, as above
    try:
        if torch is None:
            raise RuntimeError("torch is not loaded")
        t = torch.from_numpy(rows)
        tvals, tvecs = torch.linalg.eigh(t @ t.T)
        vals, vecs = tvals.numpy(), tvecs.numpy()
    except RuntimeError:  # not loaded, or its eigh did not converge (see principal)
        vals, vecs = np.linalg.eigh(rows @ rows.T)
    vals, vecs = vals[::-1][:dims], np.ascontiguousarray(vecs[:, ::-1][:, :dims])
    keep = vals > max(float(vals[0]), 1e-300) * 1e-10
    basis = np.zeros((rows.shape[1], dims))
    top = torch.from_numpy(rows).T @ torch.from_numpy(vecs[:, keep]) if torch is not None else rows.T @ vecs[:, keep]
    basis[:, keep] = np.asarray(top) / np.sqrt(vals[keep])
    return np.ascontiguousarray(basis, dtype=np.float32)


def project_on(x: np.ndarray, basis: np.ndarray) -> np.ndarray:
    """(N, D) float32 rows on a (D, d) basis: torch's matmul where torch is loaded (numpy's BLAS
    threads fight torch's there), numpy's in the review window, which never loads torch."""
    torch = sys.modules.get("torch")
    if torch is None:
        return x @ basis
    return (torch.from_numpy(np.ascontiguousarray(x)) @ torch.from_numpy(basis)).numpy()


@dataclass(frozen=True)
class Neighbour:
    id: int
    similarity: float  # cosine of centred features, in [-1, 1]
    label: int  # current label


class NeighbourIndex:
    """Nearest images of one class by the project's neighbour embedding; ``near(...)`` answers."""

    def __init__(self, ids: np.ndarray, unit: np.ndarray, labels: np.ndarray, statuses: list[str],
                 embedding: str, last_edit: int):
        """``unit``: (N, d) float32 rows of unit length (see :meth:`from_features`)."""
        order = np.argsort(labels, kind="stable")
        self.ids = ids[order]
        self.feats = np.ascontiguousarray(unit[order], dtype=np.float32)
        self.labels = labels[order]  # the labels the rows are sorted by
        self.removed = np.array([statuses[o] == "removed" for o in order], dtype=bool)
        self.embedding = embedding
        self.row_of = {int(i): r for r, i in enumerate(self.ids)}
        starts = np.searchsorted(self.labels, np.arange(int(self.labels.max(initial=-1)) + 2))
        self._span = {c: (int(starts[c]), int(starts[c + 1])) for c in range(len(starts) - 1)}
        self._changed: dict[int, tuple[int, str]] = {}  # row -> (label, status) edited since the build
        self._last_edit = last_edit

    @classmethod
    def from_features(cls, ids: np.ndarray, feats: np.ndarray, labels: np.ndarray, statuses: list[str],
                      embedding: str, last_edit: int) -> NeighbourIndex:
        """(N, D) features of any float type: centred, projected on the first DIMS principal
        components (fitted on a sample of PCA_SAMPLE rows) when D is larger, L2-normalised."""
        n, d = feats.shape
        mean, basis = principal(feats, DIMS, centre=True)
        unit = np.empty((n, DIMS if basis is not None else d), dtype=np.float32)
        for s in range(0, n, READ_CHUNK):
            x = feats[s : s + READ_CHUNK].astype(np.float32) - mean
            if basis is not None:
                x = project_on(x, basis)
            unit[s : s + READ_CHUNK] = x / (np.linalg.norm(x, axis=1, keepdims=True) + 1e-8)
        return cls(ids, unit, labels, statuses, embedding, last_edit)

    @classmethod
    def build(cls, project: Project) -> NeighbourIndex | None:
        """The index of ``project``'s scored images, or None before a run stored an embedding."""
        emb = project.cache.embedding()
        if emb is None:
            return None
        key, desc = emb
        last_edit = project.edits.last_edit_id()
        ids = project.images.scorable_ids()
        have = np.setdiff1d(ids, project.cache.missing_features(key, ids), assume_unique=True)
        if len(have) == 0:
            return None
        parts = [project.cache.get_features(key, have[s : s + READ_CHUNK], np.float16)
                 for s in range(0, len(have), READ_CHUNK)]  # as stored: half the memory while reading
        states = project.images.label_states(have)
        labels = np.array([-1 if lab is None else lab for _, lab, _ in states], dtype=np.int64)
        return cls.from_features(have, np.concatenate(parts), labels, [st for _, _, st in states], desc, last_edit)

    def _follow_edits(self, project: Project) -> None:
        last = project.edits.last_edit_id()
        if last != self._last_edit:
            for i, lab, st in project.edits.edited_since(self._last_edit):
                if i in self.row_of:
                    self._changed[self.row_of[i]] = (-1 if lab is None else int(lab), st)
            self._last_edit = last

    def _state(self, row: int) -> tuple[int, str]:
        got = self._changed.get(row)
        if got is not None:
            return got
        return int(self.labels[row]), "removed" if self.removed[row] else "ok"

    def near(self, project: Project, image_id: int, label: int, k: int = 6) -> list[Neighbour]:
        """The ``k`` images most like ``image_id`` whose current label is ``label`` (removed ones
        and the image itself left out), most similar first; empty if the image has no features."""
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        self._follow_edits(project)
        row = self.row_of.get(int(image_id))
        if row is None:
            return []
        q = self.feats[row]
        lo, hi = self._span.get(int(label), (0, 0))
        moved_in = [r for r, (lab, _) in self._changed.items() if lab == label and not lo <= r < hi]
        rows = np.concatenate([np.arange(lo, hi), np.array(moved_in, dtype=np.int64)])
        sims = self.feats[lo:hi] @ q
        if moved_in:
            sims = np.concatenate([sims, self.feats[np.array(moved_in)] @ q])
        m = len(rows)
        want = min(m, 4 * k + 16)
        while True:
            top = np.argpartition(-sims, want - 1)[:want] if 0 < want < m else np.arange(m)
            out: list[Neighbour] = []
            for j in top[np.argsort(-sims[top], kind="stable")]:
                r = int(rows[j])
                lab, st = self._state(r)
                if r == row or lab != label or st == "removed":
                    continue
                out.append(Neighbour(int(self.ids[r]), float(sims[j]), lab))
                if len(out) == k:
                    return out
            if want >= m:
                return out
            want = min(m, want * 4)  # many of the nearest were edited away: look further
