"""Typed specs (issue 32): a pool member, a run's config and a run's summary are typed objects,
checked once at the edge; a stored config is read back as hostile input, key by key."""

from __future__ import annotations

import json
import logging
import sqlite3
from pathlib import Path

import pytest

from scoring.engine.inference import RunSummary, score_project
from scoring.io.formats import open_dataset
from scoring.pool import kinds as K
from scoring.pool.base import PoolError
from scoring.pool.member_spec import MemberSpec, per_seed
from scoring.pool.schema import Key
from scoring.pool.spec import build_pool, load_pool_file, parse_member_arg
from scoring.progress import drain
from scoring.store import Project, RunConfig
from scoring.trust import USER_TRUST, grant, without_trust
from tests.scoring.tinypool import make_imagefolder

CLASSES = ["blue", "green", "red"]


def test_a_pool_files_member_is_typed_once_and_hashes_as_its_table(tmp_path: Path) -> None:
    pool_file = tmp_path / "pool.toml"
    pool_file.write_text('[[member]]\nkind = "scratch"\nname = "cnn"\narch = "small_cnn"\nseeds = [0, 3]\n'
                         'folds = 2\nepochs = 1\npreprocess = {size = 8}\n')
    [spec] = load_pool_file(pool_file)
    assert isinstance(spec, MemberSpec)
    assert (spec.kind, spec.name, spec.seeds, spec.folds, spec.epochs, spec.batch_size) == ("scratch", "cnn", [0, 3], 2, 1, None)
    assert K.validate_member(spec, "again") is spec  # checked once: a typed spec is not checked again
    table = {"kind": "scratch", "name": "cnn", "arch": "small_cnn", "seeds": [0, 3], "folds": 2, "epochs": 1,
             "preprocess": {"size": 8}}
    assert dict(spec) == table and spec == table  # what is stored and written back: the keys given
    typed, plain = build_pool([spec], CLASSES), build_pool([table], CLASSES)
    assert [m.fingerprint for m in typed.members] == [m.fingerprint for m in plain.members]
    assert [m.name for m in typed.members] == ["cnn-s0", "cnn-s3"] and typed.members[1].seed == 3  # type: ignore[attr-defined]
    assert [s.seed for s in per_seed(spec)] == [0, 3] and all(s.seeds is None for s in per_seed(spec))


def test_a_bad_key_is_refused_at_the_edge_naming_the_file_member_and_key(tmp_path: Path) -> None:
    pool_file = tmp_path / "pool.toml"
    pool_file.write_text('[[member]]\nkind = "scratch"\nname = "cnn"\nfolds = "5"\n')
    with pytest.raises(PoolError, match=r"pool\.toml member 1 \('cnn'\): `folds` must be a whole number, got '5'"):
        load_pool_file(pool_file)
    with pytest.raises(PoolError, match=r"--member 'scratch:lr=-1': `lr` must be between 0 and 10"):
        parse_member_arg("scratch:lr=-1")


def test_a_plugin_kinds_own_keys_ride_in_extra_and_trust_keeps_the_type() -> None:
    K.register_kind(K.MemberKind("gain8", "a test's kind", {"gain": Key("float", "a gain")}, lambda s, c: []))
    try:
        spec = K.validate_member({"kind": "gain8", "name": "g", "gain": 2.5}, "a test")
        assert spec.extra == {"gain": 2.5} and spec["gain"] == 2.5 and dict(spec) == {"kind": "gain8", "name": "g",
                                                                                       "gain": 2.5}
        assert spec.replace(gain=None).extra == {}  # None drops a key
    finally:
        K.unregister_kind("gain8")
    spec = K.validate_member({"kind": "checkpoint", "name": "n", "path": "m.pt", "classes": ["a"], "trust": True},
                             "a test")
    granted = grant(spec)
    assert isinstance(granted, MemberSpec) and granted.trust is USER_TRUST and spec.trust is True
    assert without_trust(granted).trust is None and "trust" not in dict(without_trust(granted))


def test_a_stored_run_config_is_read_back_key_by_key(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    config = RunConfig(pool=({"kind": "scratch", "name": "n", "trust": USER_TRUST},), pool_fingerprint="abc",
                       member_fingerprints=("f1",), batch_size=64, workers=0, engine="local", runtime="auto")
    back = RunConfig.from_json(config.to_json(), "here")
    assert back == RunConfig(pool=({"kind": "scratch", "name": "n"},), pool_fingerprint="abc",
                             member_fingerprints=("f1",), batch_size=64, workers=0, engine="local", runtime="auto")
    noted = back.noted(runtimes={"e": "onnx"}, profile={"decode": 1.5}, estimate_s=[10, 20], actual_s=12)
    assert noted.estimate_s == (10.0, 20.0) and noted.actual_s == 12.0 and noted.runtimes == {"e": "onnx"}
    with pytest.raises(TypeError, match="estimate_s"):
        back.noted(estimate_s="soon")
    hostile = json.dumps({"pool": [{"kind": "checkpoint", "name": "x", "trust": True}], "batch_size": True,
                          "workers": "2", "profile": {"decode": "slow"}, "member_fingerprints": [1],
                          "estimate_s": [1, 2, 3], "engine": "local", "unknown": 1})
    with caplog.at_level(logging.WARNING):
        read = RunConfig.from_json(hostile, "p.triage.db run 7")
    assert read == RunConfig(pool=({"kind": "checkpoint", "name": "x"},), engine="local")  # a file's trust is none
    said = " ".join(r.getMessage() for r in caplog.records)
    assert all(f"'{k}'" in said for k in ("batch_size", "workers", "profile", "member_fingerprints", "estimate_s"))
    assert "p.triage.db run 7" in said
    for text in ("[1, 2]", "{not json", None, ""):
        assert RunConfig.from_json(text, "here") == RunConfig()


def test_a_run_returns_its_typed_summary_and_records_its_typed_config(tmp_path: Path) -> None:
    data = make_imagefolder(tmp_path / "data", per_class=4, corrupt=False)
    db = tmp_path / "p.triage.db"
    Project.create(db, open_dataset(data)).close()
    spec = parse_member_arg("scratch:name=n,arch=tiny_mlp,epochs=1,folds=2,size=8")
    summary = drain(score_project(db, [spec], batch_size=4, workers=0, runtime="torch"))
    assert isinstance(summary, RunSummary) and summary.status == "done" and summary.scored == 12
    assert summary.members == ["n-s0"] and summary.seconds > 0 and json.loads(json.dumps(summary.as_dict()))
    with Project.open(db) as p:
        config = p.runs.history()[-1]["config"]
        assert isinstance(config, RunConfig) and config.batch_size == 4 and config.runtime == "torch"
        assert config.pool == (dict(spec),) and p.runs.last_pool_spec() == [dict(spec)]
    with sqlite3.connect(db) as conn:  # damaged by hand: the run is still listed, its bad key is not used
        conn.execute("UPDATE runs SET config=json_set(config, '$.workers', 'many')")
    with Project.open(db) as p:
        config = p.runs.history()[-1]["config"]
        assert config.workers is None and config.pool == (dict(spec),)
