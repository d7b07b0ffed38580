"""Plain words on screen (issue 30): the sort menu, the filters and the detail pane speak an
annotator's language; the paper's names live in the tooltips; a sort no image has a value of
(annotators' agreement without annotators) is not offered."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt

from scoring.vocabulary import LABEL_SORT, score, scores
from tests.gui.conftest import open_window

JARGON = ("perplexity", "entropy", "mutual information", "consensus", "self-confidence", "pool", "ood", "margin")


def test_the_sort_menu_is_plain_words_with_the_technical_name_in_its_tooltip(qtbot, settings, scored_db: Path) -> None:  # type: ignore[no-untyped-def]
    w = open_window(qtbot, settings, scored_db)
    combo = w.filters.sort
    keys = [combo.itemData(i) for i in range(combo.count())]
    texts = [combo.itemText(i) for i in range(combo.count())]
    assert keys[0] == LABEL_SORT or LABEL_SORT in keys
    for key, text in zip(keys, texts, strict=True):
        assert not any(j in text.lower() for j in JARGON), text
        if key in {s.key for s in scores()}:
            tip = combo.itemData(keys.index(key), Qt.ItemDataRole.ToolTipRole)
            assert score(key).label in tip and text in tip, (key, tip)
    # the fake project has the pool's scores and the neighbours' but no annotators
    assert "neighbour_agreement" in keys and "c_perplexity" in keys
    assert "annotator_agreement" not in keys and "annotator_entropy" not in keys
    assert w.filters.value()[0] == LABEL_SORT  # the label view, as a labelled project opens
    reasons = [w.filters.f_reason.itemText(i) for i in range(w.filters.f_reason.count())]
    assert "ood" not in reasons and "fits no class" in reasons
    w.close()


def test_the_detail_pane_says_why_the_image_is_here_in_plain_words(qtbot, settings, scored_db: Path) -> None:  # type: ignore[no-untyped-def]
    w = open_window(qtbot, settings, scored_db)
    text = w.detail.info.text()
    row = w.project.queue.queue_row(w.review.current_id())
    given = w.project.classes[row.given_label]
    assert f"Labelled {given}" in text
    assert "C-perplexity" not in text and "X-perplexity" not in text and "reason <b>" not in text
    assert "C-perplexity" in w.detail.info.toolTip() and "2 ** (mean" in w.detail.info.toolTip()
    w.close()
