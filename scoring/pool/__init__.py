"""The pool of classifiers: members and encoders (``base``), the member kinds' registry
(``kinds``) with their schema (``schema``) and builders (checkpoints, heads on frozen backbones,
networks fine-tuned or trained from scratch in K folds), pool files (``spec``), cross-fitting,
weights and the architectures (``models``). Knows nothing of projects: may import
``scoring.io`` and the base modules only."""
