"""Exact and near-duplicate images, grouped; a group whose images carry different labels is a
**label conflict**.

* Exact duplicates: the same content hash (SHA-1 of the file, stored while scoring).
* Near-duplicates: a 16x16 colour thumbnail of each image, made in the decode pass scoring
  already does (the engine stores it as the ``thumb16`` feature), centred and L2-normalised;
  two images are near-duplicates when their cosine similarity is at least ``threshold``.
  Why a thumbnail and not a classifier's features: measured on CIFAR-10, the penultimate features
  of a classifier of the dataset's own classes cluster by class and cannot tell a copy from a
  natural neighbour (a JPEG re-encode at quality 60 scores 0.69-0.93 while natural neighbours
  reach 0.95), whereas 16x16 thumbnails keep re-encodes >= 0.99 and natural neighbours <= 0.95.
* Small crops move a thumbnail a pixel or so: candidate pairs (similarity >= 0.6) are re-checked
  after aligning one thumbnail for a crop of 0.5-2 pixels, against the same threshold.
* 16 pixels are too few for small, simple images: distinct handwritten digits reach 0.97 as
  thumbnails. The pairs that pass are verified at 32x32 (decoded again: only the images of
  those pairs), aligned the same way, against ``VERIFY_THRESHOLD``, and no 2x2 patch may differ
  by more than ``MAX_LOCAL_DIFF`` (a look-alike differs by a stroke; a copy by thin noise).
* Search: faiss (exact inner-product range search below ``EXACT_BELOW`` images, where it is
  faster; above, HNSW neighbours over the thumbnails' first 128 principal components, each
  candidate re-measured on the full thumbnails).

Pairs become groups around a representative that every member matches directly (never chains:
:func:`star_groups`); groups are stored in the project (``duplicates`` table) for the queue's
filters, the app, ``image-triage duplicates`` (which lists them without searching again) and the
export's ``--drop-duplicates``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any

import numpy as np

from scoring.engine.batches import THUMB, THUMB_KEY, decode_item, decode_missing
from scoring.pool.base import Preprocess
from scoring.progress import Progress, RateMeter, drain
from scoring.store import Project

log = logging.getLogger(__name__)

DEFAULT_THRESHOLD = 0.97
EXACT_BELOW = 50_000
NEIGHBOURS = 32
# Below EXACT_BELOW: each image's most similar candidates kept for the aligned re-check. A set of
# look-alikes (1,797 handwritten digits) otherwise makes 640,000 candidates, 200 s of checks.
EXACT_CANDIDATES = 128
GRAPH_DIMS = 128  # above EXACT_BELOW: the search graph's dimensions (principal components)


def embed(thumbs: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """(N, 768) thumbnails -> (N, 768) float32, each centred on its own mean and L2-normalised
    (into ``out`` when given). Embedding an embedded row gives it back."""
    x = np.asarray(thumbs, dtype=np.float32)
    x = x - x.mean(axis=1, keepdims=True)
    x /= np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-6)
    if out is None:
        return x
    out[...] = x
    return out


def read_embedded(project: Project, ids: np.ndarray, chunk: int = 50_000) -> np.ndarray:
    """The stored thumbnails of ``ids``, embedded chunk by chunk into one float32 array: the
    float16 blobs and one chunk's float32 copy are all that is held besides (3 GB at 1,000,000)."""
    out = np.empty((len(ids), THUMB.size**2 * 3), dtype=np.float32)
    for s in range(0, len(ids), chunk):
        embed(project.cache.get_features(THUMB_KEY, ids[s : s + chunk]), out=out[s : s + chunk])
    return out


CANDIDATE = 0.6  # pairs at least this similar are re-checked after aligning for a small crop
CROPS = (0.5, 1.0, 1.5, 2.0)  # thumbnail pixels cut from each side, then resized back
VERIFY = Preprocess(size=32, resize=32, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))
VERIFY_THRESHOLD = 0.98
VERIFY_CROPS = (0.5, 0.75, 1.0, 1.125, 1.25, 1.5, 2.0)  # finer: a 2-px crop of 28 px is 1.14 sixteenths
# A copy differs from its original by noise spread thin (re-encoding, resampling); a look-alike
# differs by a stroke or a patch. At 32 px, after the best alignment, no 2x2 patch of a copy
# differs by more than this share of the range on average. Measured (benchmarks/bench_duplicates.py,
# 2,000 images each): planted CIFAR copies <= 0.098, planted MNIST copies 98 % <= 0.14, while the
# closest look-alikes that pass the cosine test reach >= 0.148 (the demo's upscaled 8x8 digits)
# and >= 0.154 (MNIST digits).
MAX_LOCAL_DIFF = 0.14


def _aligned(thumbs: np.ndarray, crop: float, side: int = 16) -> np.ndarray:
    """Images (N, 3*side*side; channels first, as stored) with ``crop`` sixteenths of the side
    cut from each edge and resized back to side x side."""
    import torch
    from torch.nn import functional as F

    t = torch.from_numpy(np.ascontiguousarray(thumbs, dtype=np.float32)).view(-1, 3, side, side)
    scale = (16 - 2 * crop) / 16  # sample the central region exactly (no rounding of sizes)
    theta = torch.tensor([[scale, 0.0, 0.0], [0.0, scale, 0.0]]).expand(len(t), 2, 3)
    grid = F.affine_grid(theta, list(t.shape), align_corners=False)
    return F.grid_sample(t, grid, mode="bilinear", align_corners=False).reshape(len(thumbs), -1).numpy()


def _principal(emb: np.ndarray, dims: int, sample: int = 50_000) -> np.ndarray:
    """(N, D) unit rows -> (N, dims) unit rows on their first ``dims`` principal directions
    (uncentred: cosines of the full rows are what is approximated), fitted on a sample."""
    from scoring.evidence.neighbours import principal, project_on

    _, basis = principal(emb, dims, centre=False, sample=sample)
    if basis is None:
        return np.ascontiguousarray(emb, dtype=np.float32)
    out = np.concatenate([project_on(np.asarray(emb[s : s + 200_000], dtype=np.float32), basis)
                          for s in range(0, len(emb), 200_000)])
    out /= np.linalg.norm(out, axis=1, keepdims=True) + 1e-8
    return np.ascontiguousarray(out, dtype=np.float32)


def best_aligned(xa: np.ndarray, xb: np.ndarray, side: int = 16) -> np.ndarray:
    """(P,) cosine of each pair of centred images (P, 3*side*side), the best over aligning either
    one for a small crop (CROPS)."""
    ea, eb = embed(xa), embed(xb)
    best = (ea * eb).sum(1)
    for crop in CROPS:
        best = np.maximum(best, (embed(_aligned(xa, crop, side)) * eb).sum(1))
        best = np.maximum(best, (embed(_aligned(xb, crop, side)) * ea).sum(1))
    return best


def verify_threshold(threshold: float) -> float:
    """The 32-pixel check's bar for a search at ``threshold``: VERIFY_THRESHOLD at the default,
    following a lower threshold down (a search at 0.9 is asked to be looser, not the same)."""
    return min(VERIFY_THRESHOLD, VERIFY_THRESHOLD - (DEFAULT_THRESHOLD - threshold))


def near_pairs(
    thumbs: np.ndarray, threshold: float, verify: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None,
    embedded: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`near_pair_steps` without its progress."""
    return drain(near_pair_steps(thumbs, threshold, verify, embedded))


def _top_per_row(rows: np.ndarray, sims: np.ndarray, idx: np.ndarray, k: int) -> tuple[np.ndarray, ...]:
    """Each row's ``k`` most similar candidates (rows sorted ascending, as range_search gives them)."""
    order = np.lexsort((-sims, rows))
    rows, sims, idx = rows[order], sims[order], idx[order]
    starts = np.searchsorted(rows, rows, side="left")
    keep = (np.arange(len(rows)) - starts) < k
    return rows[keep], sims[keep], idx[keep]


def near_pair_steps(
    thumbs: np.ndarray, threshold: float, verify: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None,
    embedded: bool = False,
) -> Generator[Progress, None, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Pairs (i < j) of near-duplicates, with their similarity; yields progress in candidate
    pairs checked (the aligned re-check is most of the time).

    Candidates are pairs whose thumbnails' cosine similarity is >= CANDIDATE; a candidate is a
    near-duplicate when its similarity, or the best over aligning either image for a small crop
    (CROPS), reaches ``threshold``. Measured on CIFAR-10: 2-pixel crops of 32-pixel images
    reach 0.97 after alignment in 98.7 % of cases (0.64-0.90 before), while the best of 2,919
    natural candidate pairs reached 0.95. ``verify(a, b)`` gives the pairs' similarity at a
    higher resolution; those below VERIFY_THRESHOLD are dropped. ``embedded``: the rows are
    already embed()ded (find_duplicates reads them so, to hold one copy)."""
    import faiss

    emb = thumbs if embedded else embed(thumbs)  # embedded: from read_embedded, not copied again
    n, d = emb.shape
    if n < 2:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32)
    if n < EXACT_BELOW:
        flat = faiss.IndexFlatIP(d)
        flat.add(emb)
        lims, sims, idx = flat.range_search(emb, float(min(CANDIDATE, threshold)))
        counts = np.diff(np.asarray(lims, dtype=np.int64)).astype(np.int64)
        rows = np.repeat(np.arange(n), counts)
        rows, sims, idx = _top_per_row(rows, np.asarray(sims), np.asarray(idx, dtype=np.int64), EXACT_CANDIDATES)
    else:
        # The graph is built over the thumbnails' first GRAPH_DIMS principal components (6x fewer
        # numbers per distance); candidates are then re-measured on the full thumbnails.
        low = _principal(emb, GRAPH_DIMS)
        hnsw = faiss.IndexHNSWFlat(low.shape[1], 32, faiss.METRIC_INNER_PRODUCT)
        hnsw.hnsw.efSearch = 64
        hnsw.add(low)
        low_sims, idx = hnsw.search(low, NEIGHBOURS)
        rows = np.repeat(np.arange(n), NEIGHBOURS)
        low_sims, idx = low_sims.ravel(), idx.ravel()
        ok = (idx >= 0) & (low_sims >= min(CANDIDATE, threshold) - 0.1)  # the projection's cosines run a little high
        rows, idx = rows[ok], idx[ok]
        sims = np.concatenate([np.einsum("ij,ij->i", emb[rows[s : s + 50_000]], emb[idx[s : s + 50_000]])
                               for s in range(0, len(rows), 50_000)]) if len(rows) else np.zeros(0, np.float32)
        keep = sims >= min(CANDIDATE, threshold)
        rows, sims, idx = rows[keep], sims[keep], idx[keep]
    keep = rows < idx
    a, b, sims = rows[keep], idx[keep].astype(np.int64), sims[keep].astype(np.float32)
    best = sims.copy()
    todo = np.flatnonzero(best < 0.999)  # the similarity returned is the best after alignment
    meter = RateMeter("dupes", max(len(todo), 1))
    yield meter.record(0, f"checking {len(todo):,} look-alike pairs of {n:,} images")
    for s in range(0, len(todo), 5_000):  # aligned re-check of the candidates (bounded memory)
        part = todo[s : s + 5_000]
        best[part] = np.maximum(best[part], best_aligned(emb[a[part]], emb[b[part]]))  # embed() is linear-invariant
        yield meter.record(s + len(part), f"checking {len(todo):,} look-alike pairs of {n:,} images")
    ok = best >= threshold
    a, b, best = a[ok], b[ok], best[ok]
    if verify is not None and len(a):
        ok = verify(a, b) >= verify_threshold(threshold)
        a, b, best = a[ok], b[ok], best[ok]
    return a, b, best


def local_limit(threshold: float) -> float:
    """MAX_LOCAL_DIFF at the default threshold, looser for a lower one (a search asked to be looser)."""
    return MAX_LOCAL_DIFF + max(0.0, DEFAULT_THRESHOLD - threshold)


def local_verify(xa: np.ndarray, xb: np.ndarray, side: int, limit: float = MAX_LOCAL_DIFF) -> np.ndarray:
    """(P,) similarity of pairs of raw images (P, 3*side*side) in [0, 1]: the centred cosine at
    the best alignment (VERIFY_CROPS), or 0 where, at that alignment, some 2x2 patch differs by
    more than MAX_LOCAL_DIFF on average (a look-alike, not a copy)."""
    cands = [(xa, xb)] + [(_aligned(xa, c, side), xb) for c in VERIFY_CROPS] + \
            [(xa, _aligned(xb, c, side)) for c in VERIFY_CROPS]
    best = np.full(len(xa), -2.0, np.float32)
    local = np.zeros(len(xa), np.float32)
    for a, b in cands:
        cos = (embed(a) * embed(b)).sum(1)
        diff = np.abs(a - b).reshape(len(a), 3, side // 2, 2, side // 2, 2).mean(axis=(1, 3, 5))
        patch = diff.reshape(len(a), -1).max(1)
        better = cos > best
        best = np.where(better, cos, best)
        local = np.where(better, patch, local)
    return np.where(local <= limit, best, 0.0).astype(np.float32)


def verifier(project: Project, ids: np.ndarray, threshold: float = DEFAULT_THRESHOLD,
             ) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """``verify(a, b)`` for near_pairs: decodes the images of the pairs (indices into ``ids``) at
    32x32 and compares them with :func:`local_verify`; an image that no longer decodes verifies
    nothing (0)."""
    side = VERIFY.size

    def verify(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        need = np.unique(np.concatenate([a, b]))
        paths = project.images.abspaths(project.images.paths_of(ids[need]))
        pix = np.zeros((len(need), 3 * side * side), np.float32)
        good = np.zeros(len(need), bool)
        for n, (i, path) in enumerate(zip(ids[need], paths, strict=True)):
            item = decode_item(int(i), path, [VERIFY])
            if item.tensors is not None:
                pix[n], good[n] = item.tensors[VERIFY.key].flatten().numpy(), True
        row = {int(k): n for n, k in enumerate(need)}
        ra, rb = np.array([row[int(k)] for k in a]), np.array([row[int(k)] for k in b])
        out = np.zeros(len(a), np.float32)
        for s in range(0, len(a), 20_000):
            out[s : s + 20_000] = local_verify(pix[ra[s : s + 20_000]], pix[rb[s : s + 20_000]], side,
                                               local_limit(threshold))
        return np.where(good[ra] & good[rb], out, 0.0)

    return verify


def star_groups(n: int, a: np.ndarray, b: np.ndarray) -> list[list[int]]:
    """Groups from verified pairs, never chained: the image with most matches among those left
    is a group's representative, and the group is it and the images that match *it*; repeated
    until no match is left. (Union-find put A with C when A~B and B~C, and chained 35 different
    handwritten 1s into one group.) Every member of a group matches its first image directly."""
    nbrs: dict[int, set[int]] = {}
    for i, j in zip(a.tolist(), b.tolist(), strict=True):
        if i != j:
            nbrs.setdefault(i, set()).add(j)
            nbrs.setdefault(j, set()).add(i)
    left = set(nbrs)
    groups: list[list[int]] = []
    while left:
        rep = max(left, key=lambda i: (len(nbrs[i] & left), -i))
        members = nbrs[rep] & left
        if not members:
            left.discard(rep)
            continue
        groups.append([rep, *sorted(members)])
        left -= {rep, *members}
    return sorted(groups, key=lambda g: min(g))


@dataclass(frozen=True)
class Group:
    group_id: int
    image_ids: list[int]  # the representative first: every other image matches it
    labels: list[int | None]  # current labels, as ids into the project's classes
    exact: bool  # every member has the same content hash (read while scoring)
    conflict: bool  # the store's one rule: its images not removed carry different labels


def stored_groups(project: Project) -> list[Group]:
    """The groups the last search stored (no search: reading them is instant)."""
    groups = project.dupes.duplicate_groups()
    ids = [i for g in groups.values() for i in g]
    labels = {i: lab for i, lab, _ in project.images.label_states(ids)}
    sha = dict(zip(ids, project.dupes.sha1s(ids), strict=True))
    conflicts = project.dupes.conflict_groups()
    return [Group(g, members, [labels.get(i) for i in members],
                  sha[members[0]] is not None and len({sha[i] for i in members}) == 1, g in conflicts)
            for g, members in sorted(groups.items())]


def find_duplicates(
    project_path: Any, threshold: float = DEFAULT_THRESHOLD, cancel: threading.Event | None = None
) -> Generator[Progress, None, list[Group]]:
    """Group the project's exact and near-duplicates and store the groups; yields progress.

    Thumbnails the engine did not store (a project scored before, or by the Ray engine) are made
    here in one decode pass."""
    cancel = cancel or threading.Event()
    with Project.open(project_path) as project:
        ids = project.images.scorable_ids()
        missing = project.cache.missing_features(THUMB_KEY, ids)
        if len(missing):
            yield from decode_missing(project, THUMB_KEY, THUMB, ids, "thumbs", cancel)
            ids = np.setdiff1d(project.images.scorable_ids(), project.cache.missing_features(THUMB_KEY, project.images.scorable_ids()))
        yield Progress("dupes", 0, 1, message=f"searching {len(ids):,} images")
        thumbs = read_embedded(project, ids)
        a, b, _ = yield from near_pair_steps(thumbs, threshold, verifier(project, ids, threshold), embedded=True)
        sha = project.dupes.sha1s(ids)
        by_hash: dict[str, int] = {}
        ea, eb = [], []
        for n, h in enumerate(sha):
            if h is not None:
                if h in by_hash:
                    ea.append(by_hash[h])
                    eb.append(n)
                else:
                    by_hash[h] = n
        groups_idx = star_groups(len(ids), np.concatenate([a, np.array(ea, np.int64)]),
                                 np.concatenate([b, np.array(eb, np.int64)]))
        project.dupes.put_duplicate_groups([(int(ids[n]), g) for g, m in enumerate(groups_idx) for n in m])
        groups = stored_groups(project)
        yield Progress("dupes", 1, 1, message=f"{len(groups)} groups, {sum(g.conflict for g in groups)} label conflicts")
        return groups
