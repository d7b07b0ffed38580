"""The window's long tasks: score (the Score dialog's pool), export (the Export dialog's options)
and find duplicates (after every scoring run, and from the Scoring menu). Each asks what it
needs, runs through the jobs runner and hands its result back; the window composes one."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PySide6.QtWidgets import QMessageBox, QWidget

from gui.jobs import Jobs
from gui.offthread import LatestOnly
from gui.review_actions import ReviewController, Say
from gui.view_state import ViewState
from gui.worker import GeneratorWorker, imported_on_call
from scoring.errors import ImageTriageError

if TYPE_CHECKING:  # the dialogs pull in the pool's kinds, and with them torch: imported when opened
    from gui.dialogs import ExportDialog, ScoreDialog
    from scoring.engine.inference import RunSummary


def _survey(path: Path) -> Any:
    """The automatic pool's facts about the project's dataset, or the error reading it (on a pool
    thread, with its own connection). The Score dialog's pool builder is imported here too: it
    brings the pool's kinds and torch (3.5 s), which the window itself never waits for."""
    import gui.pool_builder  # noqa: F401 - imported off the window's thread, used by ScoreDialog
    from scoring.device import pick_device
    from scoring.store import Project
    from scoring.tasks.autopool import survey

    try:
        with Project.open(path) as project:
            return survey(project.dataset(), pick_device("auto"))
    except (ImageTriageError, OSError) as exc:
        return exc


# The jobs' core functions, imported on the job's thread when it starts (see imported_on_call).
score_project = imported_on_call("scoring.engine.inference", "score_project")
export_dataset = imported_on_call("scoring.tasks.export", "export_dataset")
merge_steps = imported_on_call("scoring.tasks.merge", "merge_steps")
find_duplicates = imported_on_call("scoring.tasks.duplicates", "find_duplicates")


class Tasks:
    """``scored()`` is the window's reload after a run (new scores, new members)."""

    def __init__(self, window: QWidget, jobs: Jobs, review: ReviewController, scored: Callable[[], None], say: Say):
        self.window, self.jobs, self.review, self.scored, self.say = window, jobs, review, scored, say
        self._survey = LatestOnly("dataset survey", window)
        self._survey.done.connect(self._on_surveyed)

    def score_dialog(self) -> None:
        """Survey the dataset (a walk of every file: seconds on a large one) on a pool thread, then
        ask which pool to score with; the status bar says it is reading meanwhile."""
        project = self.review.project
        if project is None or self.jobs.busy:
            return
        path = project.path
        self.say(f"Reading {project.source.name} to suggest a pool…", 0)
        self._survey.submit(lambda: (path, _survey(path)))

    def _on_surveyed(self, result: tuple[Path, Any]) -> None:
        path, facts = result
        project = self.review.project
        if project is None or project.path != path or self.jobs.busy:
            return  # another project was opened meanwhile, or a job started
        self.say("", 1)
        if isinstance(facts, (ImageTriageError, OSError)):
            QMessageBox.critical(self.window, "Cannot read the dataset", str(facts))
            return
        from gui.dialogs import ScoreDialog

        dlg = ScoreDialog(facts, project.runs.last_pool_spec(), self.window)
        self._recall(dlg, project.path, "score")  # this project's last device, batch size and runtime
        if dlg.exec():
            self._keep(dlg, project.path, "score")
            self.start_scoring(dlg.specs(), device=dlg.device.currentText(), batch_size=dlg.batch.value(),
                               runtime=dlg.runtime.currentText())

    def _recall(self, dlg: ExportDialog | ScoreDialog, project_path: Path, name: str) -> None:
        """Set a dialog to what it was given last time on this project (settings are read as
        untrusted: a value that does not parse or fit is ignored)."""
        with contextlib.suppress(ValueError, TypeError, AttributeError):
            values = json.loads(str(self.review.settings.value(f"{ViewState.key(project_path)}/{name}", "{}")))
            if isinstance(values, dict):
                dlg.restore(values)

    def _keep(self, dlg: ExportDialog | ScoreDialog, project_path: Path, name: str) -> None:
        self.review.settings.setValue(f"{ViewState.key(project_path)}/{name}", json.dumps(dlg.remembered()))

    def start_scoring(self, specs: Sequence[Mapping[str, Any]], device: str = "auto", batch_size: int = 64,
                      runtime: str = "auto") -> GeneratorWorker | None:
        if self.review.project is None or self.jobs.busy:
            return None
        path = self.review.project.path
        # workers=0: no forked decode processes from a multi-threaded Qt app; the command line
        # (`image-triage score`) decodes with worker processes for big jobs.
        return self.jobs.run(
            lambda cancel: score_project(path, specs, device=device, batch_size=batch_size, workers=0, cancel=cancel,
                                         runtime=runtime),
            "Scoring", self._on_scoring_returned)

    def _on_scoring_returned(self, summary: RunSummary | None) -> None:
        if self.review.project is not None:
            self.scored()
            if self.review.model is not None and self.review.model.rowCount():
                self.review.select(self.review.model.index(0, 0))
        if summary is not None and summary.status == "done":
            self.say(f"Scored {summary.scored:,} images with {len(summary.members)} members "
                     f"in {summary.seconds:.0f}s", 8000)
            self.jobs.then(self.start_duplicates)  # duplicates are found after scoring

    def export_dialog(self) -> None:
        project = self.review.project
        if project is None or self.jobs.busy:
            return
        from gui.dialogs import ExportDialog

        dlg = ExportDialog(project.dataset_root.parent / f"{project.dataset_root.name}-cleaned", self.window)
        self._recall(dlg, project.path, "export")  # this project's last destination and options
        if dlg.exec():
            self._keep(dlg, project.path, "export")
            opts = dlg.options()
            self.start_export(opts.pop("dest"), **opts)

    def start_export(self, dest: Path, **options: Any) -> GeneratorWorker | None:
        if self.review.project is None or self.jobs.busy:
            return None
        path = self.review.project.path
        return self.jobs.run(lambda cancel: export_dataset(path, dest, cancel=cancel, **options), "Export",
                             self._on_export_returned)

    def _on_export_returned(self, report: dict[str, Any]) -> None:
        QMessageBox.information(
            self.window, "Exported",
            f"Exported {report.get('exported', 0):,} images to {report.get('dest')}\n"
            f"left out: {report.get('removed', 0)} removed, {len(report.get('skipped', []))} changed/missing/unreadable",
        )

    def merge_dialog(self) -> None:
        """File ▸ Merge review packages: choose the annotators' package files, merge them in the
        background (each whole or not at all), then show what landed and the agreement."""
        project = self.review.project
        if project is None or self.jobs.busy:
            return
        if project.team.package() is not None:
            QMessageBox.information(self.window, "This is a review package",
                                    "Packages are merged into the project they came from: open that project, "
                                    "then File ▸ Merge review packages…")
            return
        from gui.files import open_files

        chosen = open_files(self.window, "Merge review packages", str(project.path.parent), "Review packages (*.triage.db)")
        if chosen:
            self.start_merge([Path(f) for f in chosen])

    def start_merge(self, packages: list[Path]) -> GeneratorWorker | None:
        if self.review.project is None or self.jobs.busy:
            return None
        path = self.review.project.path
        return self.jobs.run(lambda cancel: merge_steps(path, packages, cancel), "Merging packages",
                             self._on_merge_returned)

    def _on_merge_returned(self, result: tuple[list[Any], list[str]]) -> None:
        reports, agreement = result
        self.scored()  # new decisions and disputes: reload the queue, the counts and the filters
        text = "\n".join([r.line() for r in reports] + [""] + agreement)
        disputed = self.review.project.team.disputed_ids() if self.review.project is not None else []
        if disputed:
            text += (f"\n\n{len(disputed)} disputed {'image' if len(disputed) == 1 else 'images'}: View ▸ Disputed only "
                     "(Ctrl+Shift+U) lists them; your key settles each one.")
        self.say(f"Merged {len(reports)} packages" + (f" · {len(disputed)} disputed" if disputed else ""), 10_000)
        QMessageBox.information(self.window, "Packages merged", text)

    def start_duplicates(self) -> GeneratorWorker | None:
        """Group exact and near-duplicates (after every scoring run, and from the Scoring menu)."""
        if self.review.project is None or self.jobs.busy:
            return None
        path = self.review.project.path
        return self.jobs.run(lambda cancel: find_duplicates(path, cancel=cancel), "Finding duplicates",
                             self._on_duplicates_returned)

    def _on_duplicates_returned(self, groups: list[Any]) -> None:
        if self.review.model is None:
            return
        self.review.model.reload()
        conflicts = sum(1 for g in groups if g.conflict)
        self.say(f"{len(groups):,} duplicate groups, {conflicts:,} with conflicting labels "
                 "(filters: in a duplicate group / conflicting labels; G keeps one of a group)", 10_000)
