"""The command line (``image-triage``): the parser and its commands, each a thin call into the
packages below. Top of the core: it may import every other part of ``scoring``; nothing in
``scoring`` imports it (the app imports it only to start a headless job)."""
