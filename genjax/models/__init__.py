"""Model families. Each module exposes Flax modules plus pure loss and sampling functions."""
