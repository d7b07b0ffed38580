"""What a user asks for over a scored project: export the cleaned dataset (and its formats),
review (a Qt-free session), re-rank from decisions, find duplicates, estimate the errors left
and a run's time, choose the automatic pool, check a pool, build the demo. May import
``scoring.engine``, ``scoring.evidence``, ``scoring.pool``, ``scoring.store``, ``scoring.io``
and the base modules; never ``scoring.cli``."""
