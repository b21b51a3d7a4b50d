"""One module per CLI verb; each exposes ``register(subparsers)``. Keep imports here light."""
