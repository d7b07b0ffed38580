"""Model architectures and the registry that names them."""
