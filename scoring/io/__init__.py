"""Every byte in and out: the one reader (``safeio``) and the one writer (``safewrite``), image
decoding, and the datasets it reads (ImageFolder, CSV manifests, Label Studio, FiftyOne, CVAT,
Hugging Face). May import the base modules only (errors, locations)."""
