"""The project store: opening, migrations, bad files, locks, sync, caches, the queue."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scoring.io.datasets import Dataset, ImageRecord
from scoring.io.formats import open_dataset
from scoring.store import (
    APPLICATION_ID,
    MIGRATIONS,
    SCHEMA_VERSION,
    NotAProjectError,
    Project,
    ProjectError,
    ProjectLockedError,
    QueueFilter,
)
from scoring.store.cache import decode_probs, encode_probs
from scoring.vocabulary import compute_scores
from tests.scoring.tinypool import make_imagefolder


@pytest.fixture
def data(tmp_path: Path) -> Path:
    return make_imagefolder(tmp_path / "data", per_class=4, corrupt=False)


@pytest.fixture
def project(tmp_path: Path, data: Path) -> Project:
    p = Project.create(tmp_path / "p.triage.db", open_dataset(data))
    yield p
    p.close()


def _fake_scores(p: Project, seed: int = 0) -> np.ndarray:
    ids = p.images.scorable_ids()
    rng = np.random.default_rng(seed)
    probs = rng.dirichlet(np.ones(len(p.classes)) * 0.5, size=(3, len(ids)))
    p.queue.put_scores("pool", ids, compute_scores(probs, p.images.given_labels(ids)))
    return ids


def test_create_and_reopen_keeps_the_dataset_description(tmp_path: Path, data: Path) -> None:
    Project.create(tmp_path / "a.triage.db", open_dataset(data)).close()
    with Project.open(tmp_path / "a.triage.db") as p:
        assert p.classes == ["blue", "green", "red"]
        assert p.layout == "imagefolder" and p.dataset_root == data.resolve()
        assert p.queue.stats()["total"] == 12 and p.queue.stats()["unreviewed"] == 12
        assert p.images.image(1).path == "blue/000.png" and p.images.image(1).given_label == 0


def test_project_inside_the_dataset_is_refused(data: Path) -> None:
    with pytest.raises(ProjectError, match="read-only"):
        Project.create(data / "p.triage.db", open_dataset(data))


@pytest.mark.parametrize(
    "content",
    [b"hello, I am a text file\n", bytes(range(256)) * 8, b""],
    ids=["text", "random-bytes", "empty"],
)
def test_not_a_project_gives_a_clear_error(tmp_path: Path, content: bytes) -> None:
    f = tmp_path / "x.triage.db"
    f.write_bytes(content)
    with pytest.raises(NotAProjectError, match="x.triage.db"):
        Project.open(f)


def test_someone_elses_sqlite_file_is_not_a_project(tmp_path: Path) -> None:
    f = tmp_path / "other.db"
    with sqlite3.connect(f) as c:
        c.execute("CREATE TABLE customers (id INTEGER)")
    with pytest.raises(NotAProjectError, match="another program"):
        Project.open(f)


def test_a_newer_schema_asks_for_an_upgrade(tmp_path: Path, data: Path) -> None:
    Project.create(tmp_path / "p.triage.db", open_dataset(data)).close()
    with sqlite3.connect(tmp_path / "p.triage.db") as c:
        c.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    with pytest.raises(ProjectError, match="newer Image Triage"):
        Project.open(tmp_path / "p.triage.db")


def test_an_old_schema_is_migrated_on_open(tmp_path: Path) -> None:
    f = tmp_path / "v1.triage.db"
    c = sqlite3.connect(f, isolation_level=None)
    MIGRATIONS[0](c)
    c.execute(f"PRAGMA application_id={APPLICATION_ID}")
    c.execute("PRAGMA user_version=1")
    c.execute("INSERT INTO meta VALUES ('dataset_root', '/x'), ('layout', 'flat'), ('source', '/x'), ('classes', '[\"a\", \"b\"]')")
    c.execute("INSERT INTO images(path, given_label, current_label, status) VALUES ('a.png', 0, 0, 'unreviewed')")
    c.close()
    with Project.open(f) as p:
        assert p.conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        edit = p.edits.relabel(1, 1)  # needs migration 2's `target` column
        assert p.edits.undo().target == edit.id


def test_locked_database_is_reported(project: Project) -> None:
    other = sqlite3.connect(project.path, isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")
    try:
        import scoring.store as store

        project.conn.execute("PRAGMA busy_timeout=100")
        with pytest.raises(ProjectLockedError, match="another Image Triage process"):
            project.edits.relabel(1, 2)
        assert store.BUSY_TIMEOUT_S > 0
    finally:
        other.execute("ROLLBACK")
        other.close()
    project.edits.relabel(1, 2)  # works once the lock is gone


def test_sync_flags_changed_and_missing_files_and_adds_new_ones(project: Project, data: Path) -> None:
    from scoring.io.decoding import file_sha1

    ids = project.images.scorable_ids()
    project.images.set_image_info(ids, [12] * len(ids), [12] * len(ids), [file_sha1(project.images.abspath(project.images.image(int(i)))) for i in ids])
    (data / "red" / "000.png").write_bytes((data / "blue" / "000.png").read_bytes() + b"x")
    (data / "red" / "001.png").unlink()
    (data / "red" / "new.png").write_bytes((data / "red" / "002.png").read_bytes())
    report = project.images.sync(project.dataset())
    assert (report.added, report.changed, report.missing, report.total) == (1, 1, 1, 13)
    assert project.images.image(project.images.find_image("red/000.png")).flag == "changed"
    assert project.images.image(project.images.find_image("red/001.png")).flag == "missing"
    assert len(project.images.scorable_ids()) == 12
    assert project.queue.queue_count(QueueFilter(flagged=True)) == 2


def test_a_score_column_becomes_the_values_none_if_nan_gives() -> None:
    """put_scores converts each column in one tolist (issue 35): the same values and types as
    none_if_nan of each numpy scalar, NaN as None."""
    from scoring.store.queue import _plain, none_if_nan

    columns = [np.array([1.5, np.nan, -2.0]), np.array([0.25, np.nan], dtype=np.float32), np.array([3, -1]),
               np.array(["ood", None, "flip"], dtype=object), np.array([1.0, np.nan, "x"], dtype=object)]
    for column in columns:
        want = [none_if_nan(v) for v in column]
        got = _plain(column)
        assert got == want and [type(v) for v in got] == [type(v) for v in want], column


def test_features_come_back_as_stored_in_float16_or_as_float32(project: Project) -> None:
    ids = project.images.scorable_ids()
    feats = np.random.default_rng(3).normal(size=(len(ids), 5)).astype(np.float32)
    project.cache.put_features("enc", ids, feats)
    order = ids[::-1]  # the rows come in the order asked
    half = project.cache.get_features("enc", order, np.float16)
    assert half.dtype == np.float16 and (half == feats[::-1].astype(np.float16)).all()
    full = project.cache.get_features("enc", order)
    assert full.dtype == np.float32 and (full == half.astype(np.float32)).all()
    assert project.cache.get_features("enc", []).shape == (0, 0)


def test_a_damaged_feature_row_is_missing_and_read_as_a_one_line_error(project: Project) -> None:
    """A row cut short in the file (a project is someone else's input) counts as missing, so the
    next run stores it anew, and reading it says which file and image, not a numpy traceback."""
    ids = project.images.scorable_ids()
    project.cache.put_features("enc", ids, np.ones((len(ids), 4), np.float32))
    with project.transaction():
        project.conn.execute("UPDATE features SET data = x'010203' WHERE encoder_key='enc' AND image_id=?", (int(ids[2]),))
    assert project.cache.missing_features("enc", ids).tolist() == [int(ids[2])]
    with pytest.raises(ProjectError, match=rf"{project.path.name}.*damaged.*\[{int(ids[2])}\]"):
        project.cache.get_features("enc", ids)
    assert project.cache.get_features("enc", ids[3:]).shape == (len(ids) - 3, 4)
    project.cache.put_features("enc", ids[2:3], np.ones((1, 4), np.float32))  # the next run's store
    assert len(project.cache.missing_features("enc", ids)) == 0


def test_a_new_projects_stored_thumbnails_take_no_overflow_pages(tmp_path: Path, data: Path) -> None:
    """A new file has PAGE_SIZE pages, so a 16x16 thumbnail (1,536 bytes as float16) stays in its
    row; at 4 KiB each spilled into a page of its own, 2.7 times the bytes (issue 35)."""
    from scoring.store.connection import PAGE_SIZE

    db = tmp_path / "thumbs.triage.db"
    with Project.create(db, open_dataset(data)) as p:
        assert p._q("PRAGMA page_size")[0][0] == PAGE_SIZE
        before = db.stat().st_size
        ids = np.arange(1, 1001)
        p.conn.executemany("INSERT INTO images(id, path, status) VALUES (?, ?, 'unreviewed')",
                           [(int(i), f"extra/{i}.png") for i in ids if i > len(p.images.scorable_ids())])
        p.cache.put_features("thumb16:v1", ids, np.random.default_rng(0).random((len(ids), 768), dtype=np.float32))
    payload = len(ids) * 768 * 2
    assert db.stat().st_size - before < 1.3 * payload
    assert not (tmp_path / "thumbs.triage.db-journal").exists()


def test_features_and_probs_round_trip_in_float16(project: Project) -> None:
    ids = project.images.scorable_ids()
    feats = np.random.default_rng(0).normal(size=(len(ids), 7)).astype(np.float32)
    assert len(project.cache.missing_features("enc", ids)) == len(ids)
    project.cache.put_features("enc", ids[:5], feats[:5])
    assert project.cache.missing_features("enc", ids).tolist() == ids[5:].tolist()
    project.cache.put_features("enc", ids[5:], feats[5:])
    np.testing.assert_allclose(project.cache.get_features("enc", ids), feats, atol=2e-3, rtol=1e-3)
    probs = np.random.default_rng(1).dirichlet(np.ones(3), size=len(ids)).astype(np.float32)
    project.cache.put_probs("m1", ids, probs)
    got = project.cache.get_probs(["m1", "m1"], ids)
    assert got.shape == (2, len(ids), 3)
    np.testing.assert_allclose(got[0], probs, atol=1e-3)
    with pytest.raises(ValueError, match="shape"):
        project.cache.put_probs("m1", ids, probs[:, :2])
    with pytest.raises(ProjectError, match="no stored probabilities"):
        project.cache.get_probs(["other"], ids)


def test_large_k_keeps_the_top_100_and_spreads_the_rest() -> None:
    k = 5000
    p = np.random.default_rng(0).dirichlet(np.full(k, 0.01))
    blob = encode_probs(p)
    assert len(blob) < 700
    q = decode_probs(blob, k)
    assert q.shape == (k,) and q.sum() == pytest.approx(1.0, abs=1e-5)
    top = np.argsort(-p)[:100]
    np.testing.assert_allclose(q[top], p[top], atol=2e-3)
    small = np.array([0.2, 0.3, 0.5])
    np.testing.assert_allclose(decode_probs(encode_probs(small), 3), small, atol=1e-3)


def test_queue_sorts_hardest_first_and_filters(project: Project) -> None:
    ids = _fake_scores(project)
    rows = project.queue.page(limit=100)
    c = [r.scores["c_perplexity"] for r in rows]
    assert len(rows) == len(ids) and c == sorted(c, reverse=True)
    sc = [r.scores["self_confidence"] for r in project.queue.page(sort="self_confidence", limit=100)]
    assert sc == sorted(sc)
    assert all(r.given_label == 1 for r in project.queue.page(QueueFilter(given_label=1)))
    assert all(r.consensus != r.current_label for r in project.queue.page(QueueFilter(disagrees=True)))
    assert [r.path for r in project.queue.page(QueueFilter(search="RED/00"))] == [r.path for r in rows if "red/00" in r.path]
    lo, hi = sorted(c)[3], sorted(c)[8]
    band = project.queue.page(QueueFilter(score_min=lo, score_max=hi))
    assert len(band) == 6 and all(lo <= r.scores["c_perplexity"] <= hi for r in band)
    project.edits.remove(int(ids[0]))
    assert [r.id for r in project.queue.page(QueueFilter(status="removed"))] == [int(ids[0])]
    assert rows[0].top_c and rows[0].top_x


def test_unscored_images_come_last(project: Project) -> None:
    ids = project.images.scorable_ids()
    probs = np.full((1, 3, 3), 1 / 3)
    project.queue.put_scores("pool", ids[:3], compute_scores(probs, project.images.given_labels(ids[:3])))
    rows = project.queue.page(limit=100)
    assert [r.scores["c_perplexity"] is None for r in rows] == [False] * 3 + [True] * (len(ids) - 3)
    page1 = project.queue.page(limit=5)
    page2 = project.queue.page(limit=100, after=(page1[-1].scores["c_perplexity"], page1[-1].id))
    assert [r.id for r in page1 + page2] == [r.id for r in rows]


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 10_000), st.integers(1, 6), st.sampled_from(["c_perplexity", "self_confidence", "margin", "path", "id"]))
def test_keyset_paging_equals_one_big_query(tmp_path_factory: pytest.TempPathFactory, seed: int, page: int, sort: str) -> None:
    tmp = tmp_path_factory.mktemp("paging")
    recs = [ImageRecord(f"{i:03d}.png", "a" if i % 2 else "b") for i in range(23)]
    (tmp / "ds").mkdir()
    for r in recs:
        (tmp / "ds" / r.path).write_bytes(b"x")
    with Project.create(tmp / "p.triage.db", Dataset(tmp / "ds", "flat", tmp / "ds", ["a", "b"], recs)) as p:
        ids = p.images.scorable_ids()
        probs = np.random.default_rng(seed).dirichlet(np.ones(2), size=(2, len(ids)))
        probs[:, :4] = 0.5  # ties
        p.queue.put_scores("pool", ids, compute_scores(probs, p.images.given_labels(ids)))
        whole = [r.id for r in p.queue.page(sort=sort, limit=1000)]
        paged, after = [], None
        while True:
            rows = p.queue.page(sort=sort, limit=page, after=after)
            if not rows:
                break
            paged += [r.id for r in rows]
            after = (rows[-1].sort_value(sort), rows[-1].id)
        assert paged == whole and sorted(whole) == ids.tolist() and len(ids) == 23


def test_aggregates_for_the_overview(project: Project) -> None:
    _fake_scores(project)
    assert project.queue.score_values().shape == (12,)
    assert project.queue.class_difficulty().shape == (3,)
    cm = project.queue.confusion_matrix()
    assert cm.shape == (3, 3) and cm.sum() == 12


def test_errors_are_listed_and_left_out_of_the_queue(project: Project) -> None:
    project.images.record_error(2, "blue/001.png: empty file (0 bytes)")
    assert [r.path for r in project.images.errors()] == ["blue/001.png"]
    assert 2 not in [r.id for r in project.queue.page(limit=100)]
    assert 2 not in project.images.scorable_ids().tolist()
    assert project.queue.stats()["errors"] == 1


def test_a_full_disk_while_writing_is_a_clear_error_and_loses_nothing(project: Project) -> None:
    """SQLite's 'database or disk is full', simulated with a page limit, rolls back the batch."""
    project.edits.relabel(1, 2)
    project.conn.execute("PRAGMA max_page_count=1")  # no room for one more page
    big = np.random.default_rng(0).normal(size=(len(project.images.scorable_ids()), 4000)).astype(np.float32)
    with pytest.raises(ProjectError, match="disk is full.*resumes"):
        project.cache.put_features("enc", project.images.scorable_ids(), big)
    assert len(project.cache.missing_features("enc", project.images.scorable_ids())) == 12  # nothing half-written
    assert project.images.image(1).current_label == 2  # earlier decisions intact


def test_a_read_only_project_file_says_so(project: Project) -> None:
    project.conn.execute("PRAGMA query_only=1")  # as SQLite behaves on a read-only file (root ignores chmod)
    with pytest.raises(ProjectError, match="read-only"):
        project.edits.relabel(1, 1)
    project.conn.execute("PRAGMA query_only=0")
    assert project.images.image(1).status == "unreviewed"


def test_counts_kept_by_triggers_always_equal_a_full_scan(tmp_path: Path) -> None:
    """stats() reads a counts table kept by triggers; after any mix of edits, undo/redo,
    decode errors and flags it must equal counting every row."""
    import random

    from scoring.store import STATUSES

    data = make_imagefolder(tmp_path / "data", per_class=8, corrupt=False)
    with Project.create(tmp_path / "p.triage.db", open_dataset(data)) as p:
        ids = [int(i) for i in p.images.scorable_ids()]
        rng = random.Random(0)
        for step in range(200):
            op, i = rng.choice(["relabel", "remove", "keep", "restore", "undo", "redo", "error", "flag"]), rng.choice(ids)
            try:
                if op == "relabel":
                    p.edits.relabel(i, rng.randrange(3))
                elif op in ("remove", "keep", "restore"):
                    getattr(p.edits, op)(i)
                elif op in ("undo", "redo"):
                    getattr(p.edits, op)()
                elif op == "error":
                    p.images.record_error(i, "bad") if step % 2 else p.images.clear_error(i)
                else:
                    with p._tx() as c:
                        c.execute("UPDATE images SET flag=? WHERE id=?", (rng.choice([None, "changed", "missing"]), i))
            except Exception:  # noqa: BLE001 - e.g. restore of an image not removed: no change
                pass
            scan = dict(p._q("SELECT status, count(*) FROM images WHERE error IS NULL GROUP BY status"))
            st = p.queue.stats()
            assert {s: st[s] for s in STATUSES} == {s: scan.get(s, 0) for s in STATUSES}, step
            assert st["errors"] == p._q("SELECT count(*) FROM images WHERE error IS NOT NULL")[0][0]
            assert st["flagged"] == p._q("SELECT count(*) FROM images WHERE flag IS NOT NULL")[0][0]
            assert p.queue.queue_count() == st["total"]
