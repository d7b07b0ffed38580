"""Evidence about the whole dataset, computed in the scoring pass from stored features: the
nearest images and their label votes (label_evidence, neighbours) and the image issues beyond
labels (blurry, dark, outliers...). May import ``scoring.pool``, ``scoring.store``, the
vocabulary and the base modules; never ``scoring.engine`` or anything above it."""
