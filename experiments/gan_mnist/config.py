"""GAN and WGAN-GP on MNIST, evaluated by Parzen-window log-likelihood (Goodfellow et al.,
arXiv 1406.2661, Table 1: 225 +- 2 nats; Gulrajani et al., arXiv 1704.00028).

Presets, chosen with ``--config experiments/gan_mnist/config.py:PRESET``:

* ``gan`` (default, CPU-sized): the MLP GAN of Goodfellow et al.'s MNIST model: a
  generator with two ReLU layers of 1,200 units and a 100-dimensional normal latent, a
  discriminator with two maxout layers of 240 units and 5 pieces (without the paper's
  dropout), the non-saturating generator loss, one discriminator step per generator
  step, Adam at 2e-4 with beta1 0.5, batch 100, 10,000 steps (20 epochs) on the
  50,000 offline MNIST training images scaled to [-1, 1].
* ``wgan_gp`` (CPU-sized): the same two networks trained by WGAN-GP's Algorithm 1
  (lambda 10, n_critic 5, Adam at 1e-4 with beta1 0 and beta2 0.9), 5,000 generator
  steps (25,000 critic steps, 50 epochs of critic data).
* ``dcgan_wgan_gp``: for an accelerator, the sizes of WGAN-GP's MNIST code (DCGAN-style
  generator and critic with 64 base channels, a 128-dimensional latent, batch 50,
  200,000 generator steps) with Algorithm 1's optimiser and section 4's layer-norm
  critic (the MNIST code itself uses beta1 0.5 and no critic normalisation). On this
  CPU one step at 32 channels took about 10 s.
* ``dcgan_gan``: the same convolutional networks as a non-saturating GAN (the DCGAN
  recipe of Radford et al., arXiv 1511.06434: Adam at 2e-4, beta1 0.5), no norm in the
  discriminator.
* ``tiny``: a few steps of tiny convolutional networks on generated 28x28 images, for
  the tests.

Evaluation (all presets but tiny): the Parzen-window log-likelihood of the 10,000 test
images under Gaussian kernels on 10,000 generated samples, sigma chosen on the 10,000
validation images from 10 values in [0.1, 1] (Goodfellow et al.'s procedure), in nats
with its standard error; the held-out critic estimate of the Wasserstein distance.
Measured wall times and numbers: RESULTS.md.
``genjax train --config experiments/gan_mnist/config.py:gan --workdir runs/gan_mnist_gan``
"""

import ml_collections

from genjax.experiment import gan

PRESETS = ("gan", "wgan_gp", "dcgan_wgan_gp", "dcgan_gan", "tiny")


def get_config(preset: str = "gan") -> ml_collections.ConfigDict:
    """Returns the config of a preset (see the module docstring)."""
    if preset not in PRESETS:
        raise ValueError(f"preset: expected one of {PRESETS}, got {preset!r}")
    c = gan.default_config()
    c.data.name = "mnist"
    c.data.source = "offline"
    c.data.image_shape = (28, 28, 1)
    c.train.log_every = 50
    c.train.checkpoint_every = 500
    c.eval.batch_size = 500
    if preset in ("gan", "wgan_gp"):
        c.model.architecture = "mlp"
        c.model.latent_dim = 100
        c.model.hidden = (1200, 1200)
        c.model.critic_hidden = (240, 240)
        c.model.maxout_pieces = 5
        c.train.batch_size = 100
    if preset in ("gan", "dcgan_gan"):
        c.model.objective = "non_saturating"
        c.model.n_critic = 1
        c.model.norm = "none"
        c.train.learning_rate = 2e-4
        c.train.b1 = 0.5
        c.train.b2 = 0.999
    if preset == "gan":
        c.train.num_steps = 10_000
    elif preset == "wgan_gp":
        c.train.num_steps = 5_000
    elif preset == "tiny":
        c.data.source = "synthetic"
        c.model.features = 4
        c.model.latent_dim = 8
        c.model.n_critic = 2
        c.train.batch_size = 8
        c.train.num_steps = 4
        c.train.log_every = 2
        c.train.checkpoint_every = 2
        c.eval.num_examples = 64
        c.eval.batch_size = 32
        c.eval.parzen_samples = 64
        c.eval.num_grid = 16
    return c
