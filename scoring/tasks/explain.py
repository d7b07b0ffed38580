"""Why an image is in the queue, in one sentence an annotator reads without the README: what
the models say about it against its label, in plain words (the scores' names and formulas are
the tooltips' job)."""

from __future__ import annotations

from scoring.evidence.label_evidence import DECIDED_NATS
from scoring.store import QueueRow
from scoring.vocabulary import REASON_TEXT


def _name(classes: list[str], label: int | None) -> str:
    return classes[label] if label is not None and 0 <= label < len(classes) else "?"


def why_here(row: QueueRow, classes: list[str]) -> str:
    """One sentence: the decision already made, or what the models see against the label."""
    if row.status == "removed":
        return "You removed this image: it is left out of the export (Ctrl+Z undoes it)."
    if row.status == "relabelled":
        return f"You relabelled this image {_name(classes, row.current_label)} (given {_name(classes, row.given_label)})."
    if row.status == "kept":
        return f"You kept this image as {_name(classes, row.current_label)}."
    if row.consensus is None:
        return "Not scored yet: Scoring > Score… rates every image."
    pick, share = _name(classes, row.consensus), row.consensus_prob or 0.0
    others = [_name(classes, c) for c, _v in row.top_c if c != row.consensus][:1]
    doubt = row.scores.get("x_perplexity")
    if row.given_label is None or row.given_label < 0:
        if row.reason == "ood":
            return f"No label, and no class fits it: the models' best guess, {pick}, has only {share:.0%}."
        return f"No label: the models call it {pick} ({share:.0%} of their belief)."
    given = _name(classes, row.given_label)
    if row.reason == "mislabelled" or (row.consensus != row.given_label and (doubt or 0) >= 0.5):
        # X-perplexity counts the models that pick another class, not that they agree on one.
        if doubt is None:
            against = "the models lean"
        elif doubt >= 0.999:
            against = f"none of the models picks {given}; together they lean"
        else:
            against = f"{doubt:.0%} of the models pick another class; together they lean"
        return f"Labelled {given}, but {against} to {pick} ({share:.0%} of their belief): the label may be wrong."
    if row.reason == "ood":
        return f"Labelled {given}, but no class fits it well: the models' best guess, {pick}, has only {share:.0%}."
    if row.reason == "ambiguous":
        alt = f" and {others[0]}" if others else ""
        return f"Labelled {given}; the models are torn between {pick}{alt}: it {REASON_TEXT['ambiguous']}."
    return f"Labelled {given}, and the models agree ({pick}, {share:.0%} of their belief)."


def neighbour_words(weight: float | None, noise: dict[str, float] | None = None) -> str:
    """What the label-issue sort rests on, in words: what the look-alike images' labels counted
    for (label_evidence.stack_weight: 0 when they agree with the labels less often than the
    models, or when no weight makes the labels more likely than the models alone), and which kind of error the labels were fitted to hold (label_evidence.NoiseModel:
    slips to any class, or mix-ups with a similar class)."""
    if weight is None:
        return ""
    if weight <= 0:
        out = ("Look-alikes' labels are not counted in the label-issue sort here: measured against "
               "the labels, they add nothing to what the models say.")
    else:
        worth = "one model" if weight == 1 else f"{weight:g} models"
        out = f"Look-alikes' labels count as {worth} in the label-issue sort here."
    share = (noise or {}).get("look_alike")
    if share is None:
        return out
    fixes = int((noise or {}).get("corrections", 0))
    source = f"the labels and the {fixes:,} relabel{'s' if fixes != 1 else ''} made so far" if fixes else "the labels"
    evidence = (noise or {}).get("evidence")
    if evidence is not None and evidence < DECIDED_NATS:
        return (f"{out} {source[0].upper()}{source[1:]} do not show whether the errors are slips to any class or "
                "mix-ups with a similar class, so the sort weighs both kinds, slips a little more.")
    if share >= 0.7:
        kind = ("mix-ups with a similar class, so the sort puts first the images the models give to one "
                "other class")
    elif share <= 0.3:
        kind = "slips to any class, so the sort puts first the images whose label the models least believe"
    else:
        kind = "partly slips to any class, partly mix-ups with a similar class"
    return f"{out} Fitted to {source}, the errors here look like {kind}."
