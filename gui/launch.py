"""The ``image-triage`` command: the headless command line, given a way to open the desktop app.

The core (``scoring.cli``) never imports the GUI; this launcher passes it ``open_app``, so the
import contract sees every edge. Nothing here imports Qt until the app is asked for.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

from scoring.cli import CliError
from scoring.cli import main as cli_main


def open_app(entry: str, *args: Any, **kwargs: Any) -> int:
    """Start the app's ``entry`` (main, open_path, run_demo) with ``args``."""
    try:
        from gui import app
    except ImportError as exc:
        raise CliError(f"the desktop app needs PySide6 ({exc}); pip install PySide6-Essentials") from exc
    return int(getattr(app, entry)(*args, **kwargs) or 0)


def main(argv: Sequence[str] | None = None) -> int:
    return cli_main(argv, open_app=open_app)


if __name__ == "__main__":
    sys.exit(main())
