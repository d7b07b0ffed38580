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

    @property
    def sort_label(self) -> str:
        """The app's sort menu entry: name, which end comes first, and which view."""
        first = "hardest first" if self.view == "difficulty" else "likely label errors first"
        blind = "difficulty, blind to the label" if self.view == "difficulty" else "label-aware"
        return f"{self.label}: {first} ({blind})"


SCORES: tuple[Score, ...] = (
    Score("c_perplexity", "C-perplexity", True, "difficulty"),
    Score("margin", "Normalised margin", False, "label"),
    Score("self_confidence", "Self-confidence", False, "label"),
    Score("x_perplexity", "X-perplexity", True, "label", ".2f"),
    Score("mutual_info", "Mutual information (disagreement)", True, "difficulty"),
    Score("entropy_of_mean", "Entropy of the pool mean", True, "difficulty"),
    Score("consensus_prob", "Consensus probability", False, "difficulty"),
)
BY_KEY = {s.key: s for s in SCORES}

# Stored beside the scores: the pool's consensus class and the triage reason.
SCORE_COLUMNS: tuple[str, ...] = (*(s.key for s in SCORES), "consensus", "reason")
SORT_KEYS: tuple[str, ...] = (*(s.key for s in SCORES), "path", "id")
HARDEST_DESC = frozenset(s.key for s in SCORES if s.higher_is_harder)

STATUSES = ("unreviewed", "kept", "relabelled", "removed")
REASONS = ("mislabelled", "ambiguous", "ood")
