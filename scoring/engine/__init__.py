"""Scoring a project: decode once, run every encoder (torch or ONNX Runtime, here or on a Ray
cluster), fit the pool's cross-fitted members, write the scores and the dataset's evidence.
Engines are a registry (``scoring.engine.registry``). May import ``scoring.evidence``,
``scoring.pool``, ``scoring.store``, ``scoring.io`` and the base modules; never
``scoring.tasks`` or ``scoring.cli``."""
