"""Image Triage headless core: datasets, pool inference, difficulty metrics, the SQLite store,
edits, export and the command line. Never imports Qt."""

from __future__ import annotations

__version__ = "0.1.0"
