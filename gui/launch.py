"""The ``image-triage`` command: the headless command line, given a way to open the desktop app.

The core (``scoring.cli.main``) never imports the GUI; this launcher passes it ``open_app``, so the
import contract sees every edge. Nothing here imports Qt until the app is asked for.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from gui import qtlibs
from scoring.cli.common import CliError
from scoring.cli.main import main as cli_main

# Starting Qt in a child first: where its platform plugin cannot load (a fresh Linux box without
# the xcb libraries), Qt aborts the process with a core dump, which no try/except can catch.
QT_PROBE = [sys.executable, "-c", "import sys; from PySide6.QtWidgets import QApplication; QApplication(sys.argv[:1])"]
QT_PROBE_TIMEOUT_S = 60
INSTALL_QT_LIBS = (  # one line, as every error is: the command stands out in backquotes
    "Qt cannot open a window here: its platform plugin did not load ({why}). {what} `{command}`, then run "
    "the command again (without a screen: image-triage demo --headless)"
)


def _qt_xcb_files() -> list[Path]:
    """Qt's xcb platform plugin and its xcb library inside the installed PySide6 (not imported)."""
    spec = importlib.util.find_spec("PySide6")
    roots = [Path(p) for p in (spec.submodule_search_locations or [])] if spec else []
    return [f for r in roots for f in (r / "Qt" / "plugins" / "platforms" / "libqxcb.so", *sorted((r / "Qt" / "lib").glob("libQt6XcbQpa.so*")))]


def missing_libs_message(why: str) -> str:
    """What to install, from ``ldd`` on Qt's own files (the libraries it really lacks, not a
    guess), as one command for this distribution."""
    missing = qtlibs.ldd_missing(_qt_xcb_files()) or qtlibs.system_missing(list(qtlibs.PACKAGES))
    if not missing:
        return INSTALL_QT_LIBS.format(why=why, what="Install Qt's xcb system libraries:",
                                      command=qtlibs.install_command(list(qtlibs.PACKAGES), qtlibs.os_release()))
    return INSTALL_QT_LIBS.format(why=why, what=f"It lacks {', '.join(missing)}; install them:",
                                  command=qtlibs.install_command(missing, qtlibs.os_release()))


def check_qt() -> None:
    """Raise CliError, naming what to install, unless Qt can start a QApplication here."""
    try:
        probe = subprocess.run(QT_PROBE, capture_output=True, text=True, timeout=QT_PROBE_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise CliError(f"Qt did not start within {QT_PROBE_TIMEOUT_S} s; is a display reachable? "
                       "Without a screen: image-triage demo --headless") from None
    if probe.returncode != 0:
        lines = [ln.strip() for ln in probe.stderr.splitlines() if ln.strip()]
        # Qt's own line, not its xcb-cursor note, which it prints whichever library is missing.
        why = next((ln for ln in lines if "could not load" in ln.lower()),
                   next((ln for ln in lines if "plugin" in ln.lower() or "xcb" in ln.lower()),
                        lines[-1] if lines else f"exit status {probe.returncode}"))
        if "No module named" in probe.stderr:
            raise CliError(f"the desktop app needs PySide6 ({why}); pip install PySide6-Essentials")
        if "could not connect to display" in probe.stderr:  # Qt adds its xcb-cursor note to this too
            raise CliError(f"no screen to open the window on ({why}; DISPLAY={os.environ.get('DISPLAY', 'unset')}); "
                           "run it on a desktop session, or without a screen: image-triage demo --headless")
        raise CliError(missing_libs_message(why))


def open_app(entry: str, *args: Any, **kwargs: Any) -> int:
    """Start the app's ``entry`` (main, open_path, run_demo) with ``args``, once Qt is known to
    start (before the demo builds anything)."""
    check_qt()
    try:
        from gui import app
    except ImportError as exc:
        raise CliError(f"the desktop app needs PySide6 ({exc}); pip install PySide6-Essentials") from exc
    return int(getattr(app, entry)(*args, **kwargs) or 0)


def main(argv: Sequence[str] | None = None) -> int:
    return cli_main(argv, open_app=open_app)


if __name__ == "__main__":
    sys.exit(main())
