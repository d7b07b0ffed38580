"""One table of the words every room shares: scores, statuses, triage reasons.

The store's columns and indexes, the command line's choices, the app's sort menu and filters,
and the export's columns are all derived from here: adding a score is one :class:`Score` entry
plus its function in :mod:`scoring.metrics` (``compute_scores`` returns it under ``key``).

Two views, said wherever a user picks a sort: **difficulty** scores are blind to the given label
(an ambiguous image is hard whatever it is called); **label** scores compare the pool with the
given label and find likely label errors.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Score:
    key: str  # the stored column, the command line's name, compute_scores' key
    label: str  # for people
    higher_is_harder: bool
    view: str  # "difficulty" (label-blind) or "label" (label-aware)
    fmt: str = ".3f"
    lo: float = 0.0  # the range a filter box offers (hi for C-perplexity: up to 1,000 classes)
    hi: float = 1.0
    dataset: bool = False  # not from the pool's per-image pass: the neighbours' (score_pass) or the annotators' (sync)

    @property
    def sort_label(self) -> str:
        """The app's sort menu entry: name, which end comes first, and which view."""
        first = "hardest first" if self.view == "difficulty" else "likely label errors first"
        blind = "difficulty, blind to the label" if self.view == "difficulty" else "label-aware"
        return f"{self.label}: {first} ({blind})"


SCORES: tuple[Score, ...] = (
    Score("c_perplexity", "C-perplexity", True, "difficulty", lo=1.0, hi=1000.0),
    Score("label_issue", "Label issue (pool + neighbours)", True, "label", dataset=True),
    Score("margin", "Normalised margin", False, "label", lo=-1.0, hi=1.0),
    Score("self_confidence", "Self-confidence", False, "label"),
    Score("x_perplexity", "X-perplexity", True, "label", ".2f"),
    Score("mutual_info", "Mutual information (disagreement)", True, "difficulty", hi=10.0),
    Score("entropy_of_mean", "Entropy of the pool mean", True, "difficulty", hi=10.0),
    Score("consensus_prob", "Consensus probability", False, "difficulty"),
    Score("neighbour_agreement", "Neighbour agreement", False, "label", dataset=True),
    Score("annotator_agreement", "Annotators agreeing with the label", False, "label", dataset=True),
    Score("annotator_entropy", "Annotators' disagreement (entropy of votes)", True, "difficulty", hi=10.0, dataset=True),
)
BY_KEY = {s.key: s for s in SCORES}

# Stored beside the scores: the pool's consensus class and the triage reason.
SCORE_COLUMNS: tuple[str, ...] = (*(s.key for s in SCORES), "consensus", "reason")
# What the per-image pass (scoring.metrics.compute_scores) writes; the dataset's scores follow it.
IMAGE_SCORE_COLUMNS: tuple[str, ...] = (*(s.key for s in SCORES if not s.dataset), "consensus", "reason")
SORT_KEYS: tuple[str, ...] = (*(s.key for s in SCORES), "path", "id")
HARDEST_DESC = frozenset(s.key for s in SCORES if s.higher_is_harder)

# Each view's default sort is its first score: the label view is where a labelled project opens
# (an annotator came for the label errors); the difficulty view is all an unlabelled one has.
DIFFICULTY_SORT = next(s.key for s in SCORES if s.view == "difficulty")
LABEL_SORT = next(s.key for s in SCORES if s.view == "label")
LABEL_SORTS: tuple[str, ...] = tuple(s.key for s in SCORES if s.view == "label")
VIEWS: dict[str, tuple[str, str]] = {  # view -> (what the switch says, what the view finds)
    "label": ("Likely label errors", "compares the pool with the given label: finds images whose label is wrong"),
    "difficulty": ("Hard or ambiguous images", "blind to the label: finds images the pool finds hard or ambiguous"),
}


def default_sort(labelled: bool) -> str:
    """Where a queue opens: the label view when the data have labels, else the difficulty view."""
    return LABEL_SORT if labelled else DIFFICULTY_SORT


STATUSES = ("unreviewed", "kept", "relabelled", "removed")

# The dataset's issues beyond labels (scoring.image_issues decides them): name -> what it means.
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
REASONS = ("mislabelled", "ambiguous", "ood")
