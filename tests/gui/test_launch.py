"""Issue 21: on a machine without Qt's system libraries, `make demo` says what to install."""

from __future__ import annotations

import sys

import pytest

from gui import launch

QT_ABORT = (
    "import sys; sys.stderr.write('qt.qpa.plugin: From 6.5.0, xcb-cursor0 or libxcb-cursor0 is needed to load the "
    "Qt xcb platform plugin.\\nqt.qpa.plugin: Could not load the Qt platform plugin \"xcb\" in \"\" even though it "
    "was found.\\nThis application failed to start because no Qt platform plugin could be initialized.\\n'); "
    "import os; os.abort()"
)


def test_a_failed_qt_start_prints_the_install_command_and_builds_nothing(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Issue 30: the message named libxcb-cursor0 when the missing ones were libxcb-icccm4 and
    libxcb-keysyms1, and printed three distributions' commands on one line."""
    monkeypatch.setattr(launch, "QT_PROBE", [sys.executable, "-c", QT_ABORT])
    monkeypatch.setattr(launch.qtlibs, "ldd_missing", lambda paths: ["libxcb-icccm.so.4", "libxcb-keysyms.so.1"])
    monkeypatch.setattr(launch.qtlibs, "os_release", lambda: 'PRETTY_NAME="Ubuntu 24.04"\nID=ubuntu\nID_LIKE=debian\n')
    dest = tmp_path / "demo"
    rc = launch.main(["demo", "--dest", str(dest)])
    err = capsys.readouterr().err
    assert rc != 0
    assert "It lacks libxcb-icccm.so.4, libxcb-keysyms.so.1" in err
    assert "`sudo apt-get install -y libxcb-icccm4 libxcb-keysyms1`" in err
    assert "dnf" not in err and "pacman" not in err and "libxcb-cursor0" not in err
    assert "Traceback" not in err
    assert not dest.exists()  # checked before the demo is built


def test_ldd_output_and_the_distribution_make_one_command() -> None:
    from gui import qtlibs

    ldd = ("\tlinux-vdso.so.1 (0x00007ffd)\n\tlibxcb-icccm.so.4 => not found\n"
           "\tlibQt6Gui.so.6 => /x/libQt6Gui.so.6 (0x1)\n\tlibxcb-cursor.so.0 => not found\n\tlibxcb-icccm.so.4 => not found\n")
    missing = qtlibs.not_found(ldd)
    assert missing == ["libxcb-icccm.so.4", "libxcb-cursor.so.0"]
    assert qtlibs.install_command(missing, "ID=fedora\n") == "sudo dnf install -y xcb-util-wm xcb-util-cursor"
    assert qtlibs.install_command(missing, 'ID="arch"\n') == "sudo pacman -S --needed xcb-util-wm xcb-util-cursor"
    assert qtlibs.install_command(missing, "ID=debian\n") == "sudo apt-get install -y libxcb-icccm4 libxcb-cursor0"
    assert qtlibs.install_command(["libodd.so.9"], "ID=debian\n").endswith("provide: libodd.so.9")
    assert qtlibs.install_command(missing, "ID=gentoo\n").endswith("provide: libxcb-icccm.so.4 libxcb-cursor.so.0")
    # Here: whatever ldd says, as library names (the tests run Qt offscreen, which needs none of
    # the xcb libraries, so a machine without them is no failure; a fresh one here lacked two).
    assert all(".so" in name for name in qtlibs.ldd_missing(launch._qt_xcb_files()))
    assert launch._qt_xcb_files(), "PySide6's xcb plugin is where the check looks for it"


def test_qt_starts_here_so_the_check_passes() -> None:
    launch.check_qt()  # the test machine runs Qt offscreen (tests/conftest.py)


def test_no_display_is_named_as_such_not_as_missing_libraries(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """Seen on this machine with no X server: Qt says it cannot connect to the display, and the
    first version of the check told the user to install libraries they already had."""
    no_display = ("import sys, os; sys.stderr.write('qt.qpa.xcb: could not connect to display\\nqt.qpa.plugin: From 6.5.0, "
                  "xcb-cursor0 or libxcb-cursor0 is needed to load the Qt xcb platform plugin.\\nqt.qpa.plugin: Could not "
                  "load the Qt platform plugin \"xcb\" in \"\" even though it was found.\\n'); os.abort()")
    monkeypatch.setattr(launch, "QT_PROBE", [sys.executable, "-c", no_display])
    assert launch.main(["demo"]) != 0
    err = capsys.readouterr().err
    assert "no screen" in err and "--headless" in err and "apt-get" not in err and "Traceback" not in err


def test_the_demo_opens_its_project_and_starts_scoring(qtbot, monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """`make demo`'s own path (gui.app.run_demo), up to the event loop: the window shows the demo's
    project on the label view and scoring runs in the background; cancelled here."""
    from PySide6.QtWidgets import QApplication

    from gui import app as app_module
    from gui.main_window import MainWindow

    seen: dict[str, object] = {}

    def loop(_self: QApplication) -> int:
        win = next(w for w in QApplication.topLevelWidgets() if isinstance(w, MainWindow) and w.isVisible())
        seen.update(busy=win.jobs.busy, title=win.jobs.title, rows=win.model.rowCount() if win.model else 0,
                    sort=win.session.sort if win.session else None, labelled=win.project.images.labelled()
                    if win.project else None)
        win.jobs.cancel()
        qtbot.waitUntil(lambda: not win.jobs.busy, timeout=60_000)
        win.close()
        return 0

    monkeypatch.setattr(QApplication, "exec", loop)
    # A pool without frozen encoders: this test is about the window's path, and exporting an
    # encoder to ONNX inside the scoring thread crashed the test process once in CI (torch's
    # exporter, not reproduced here in 5 runs; the README's known issues say so).
    import scoring.pool.spec as spec

    monkeypatch.setattr(spec, "demo_specs", lambda n: [
        {"name": "mlp", "kind": "scratch", "arch": "tiny_mlp", "epochs": 1, "folds": 2, "seeds": [0],
         "preprocess": {"size": 8}}])
    assert app_module.run_demo(str(tmp_path / "demo")) == 0
    from scoring.vocabulary import LABEL_SORT

    assert seen["busy"] is True and seen["title"] == "Scoring" and seen["rows"]
    assert seen["labelled"] is True and seen["sort"] == LABEL_SORT
