"""Image Triage desktop app: a thin PySide6 layer over the headless core in ``scoring``."""
