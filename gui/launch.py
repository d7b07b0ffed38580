"""The ``image-triage`` command: the headless command line, given a way to open the desktop app.

The core (``scoring.cli.main``) never imports the GUI; this launcher passes it ``open_app``, so the
import contract sees every edge. Nothing here imports Qt until the app is asked for.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from typing import Any

from scoring.cli.common import CliError
from scoring.cli.main import main as cli_main

# Starting Qt in a child first: where its platform plugin cannot load (a fresh Linux box without
# the xcb libraries), Qt aborts the process with a core dump, which no try/except can catch.
QT_PROBE = [sys.executable, "-c", "import sys; from PySide6.QtWidgets import QApplication; QApplication(sys.argv[:1])"]
QT_PROBE_TIMEOUT_S = 60
INSTALL_QT_LIBS = (
    "Qt cannot open a window here: its platform plugin did not load ({why}). Install the system libraries "
    "it needs, then run the command again:\n"
    "  Debian/Ubuntu: sudo apt-get install -y libxcb-cursor0 libxcb-icccm4 libxcb-keysyms1 libxcb-image0 "
    "libxcb-render-util0 libxcb-xkb1 libxkbcommon-x11-0 libegl1 libgl1\n"
    "  Fedora:        sudo dnf install -y xcb-util-cursor xcb-util-wm xcb-util-keysyms xcb-util-image "
    "xcb-util-renderutil libxkbcommon-x11 mesa-libEGL\n"
    "  Arch:          sudo pacman -S --needed xcb-util-cursor xcb-util-wm xcb-util-keysyms xcb-util-image "
    "xcb-util-renderutil libxkbcommon-x11\n"
    "Without a screen: image-triage demo --headless"
)


def check_qt() -> None:
    """Raise CliError, naming what to install, unless Qt can start a QApplication here."""
    try:
        probe = subprocess.run(QT_PROBE, capture_output=True, text=True, timeout=QT_PROBE_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise CliError(f"Qt did not start within {QT_PROBE_TIMEOUT_S} s; is a display reachable? "
                       "Without a screen: image-triage demo --headless") from None
    if probe.returncode != 0:
        lines = [ln.strip() for ln in probe.stderr.splitlines() if ln.strip()]
        why = next((ln for ln in lines if "plugin" in ln.lower() or "xcb" in ln.lower()), lines[-1] if lines else
                   f"exit status {probe.returncode}")
        if "No module named" in probe.stderr:
            raise CliError(f"the desktop app needs PySide6 ({why}); pip install PySide6-Essentials")
        if "could not connect to display" in probe.stderr:  # Qt adds its xcb-cursor note to this too
            raise CliError(f"no screen to open the window on ({why}; DISPLAY={os.environ.get('DISPLAY', 'unset')}); "
                           "run it on a desktop session, or without a screen: image-triage demo --headless")
        raise CliError(INSTALL_QT_LIBS.format(why=why))


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
