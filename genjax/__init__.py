"""genjax: deep generative models as pure functional JAX/Flax code.

Unrelated to the probabilistic-programming package GenJAX; this library implements the
VAE, Gumbel-softmax, GAN and diffusion papers with tests and benchmarks.
"""

__version__ = "0.1.0"
