"""Evaluation metrics: likelihood bounds (bits/dim) of diffusion models."""

from genjax.metrics.likelihood import BitsPerDim, bits_per_dim, vlb_terms

__all__ = ["BitsPerDim", "bits_per_dim", "vlb_terms"]
