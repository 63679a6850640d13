"""Data files shipped with genjax (the MNIST classifier weights and their metadata)."""
