"""VAE on dynamically binarised MNIST (Kingma & Welling, arXiv:1312.6114).

Presets, chosen with ``--config experiments/vae_mnist/config.py:PRESET``:

* ``quick`` (default): the README's quickstart. The 784-200-200-50 tanh MLP VAE of
  Burda et al., 6,000 steps of batch 100 on the 50,000 offline MNIST training images,
  then the test ELBO and the test NLL by importance sampling with k = 1000 on the first
  2,000 test images. Measured on 2 idle CPU cores: 70 s of training, 53 s of
  evaluation; test NLL 102.46 +- 0.64 nats.
  ``genjax train --config experiments/vae_mnist/config.py --workdir runs/vae_quick``
* ``nll``: the reported result, with the architecture of Burda et al.'s VAE
  (arXiv:1509.00519: 784-200-200-50 with tanh units, whose test NLL is 86.76 nats):
  trained on train+valid (60,000 images) for 200,000 steps of batch 100 with Adam and
  cosine decay, then test NLL by importance sampling with k = 5000 on all 10,000 test
  images. See RESULTS.md for the measured number, hardware and wall time.
* ``iwae``: the full recipe of Burda et al. for the 86.76-nat target: batch 20, Adam
  (eps 1e-4) with their schedule of 3^i epochs at 1e-3 * 10^(-i/7), i = 0..7: 3,280
  epochs, 9.84M steps. Sized for an accelerator, not a CPU.
* ``fig2``: the paper's Fig. 2 setting: one hidden layer of 500 tanh units, minibatch
  100, Adagrad-like step sizes replaced by Adam; override ``model.latent_dim`` to 3, 5,
  10, 20 or 200. The test ELBO is logged every ``train.eval_every`` steps.
* ``tiny``: a few steps of a tiny model on generated data, for tests and smoke runs.
"""

import ml_collections

from genjax.experiment import vae


def get_config(preset: str = "quick") -> ml_collections.ConfigDict:
    """Returns the config of a preset (see the module docstring)."""
    c = vae.default_config()

    if preset == "quick":
        c.eval.num_examples = 2000
        c.eval.is_samples = 1000
    elif preset == "nll":
        c.data.train_split = "train+valid"
        c.train.num_steps = 200_000
        c.train.schedule = "cosine"
        c.train.decay_steps = 200_000
        c.train.checkpoint_every = 10_000
        c.train.eval_every = 10_000
        c.train.log_every = 500
        c.eval.is_samples = 5000
    elif preset == "iwae":
        c.data.train_split = "train+valid"
        c.train.batch_size = 20
        c.train.schedule = "iwae"
        c.train.eps = 1e-4
        c.train.num_steps = 3280 * 3000
        c.train.log_every = 3000
        c.train.checkpoint_every = 100_000
        c.train.eval_every = 300_000
        c.eval.is_samples = 5000
    elif preset == "fig2":
        c.model.hidden = (500,)
        c.model.latent_dim = 20
        c.train.num_steps = 20_000
        c.train.eval_every = 1000
        c.train.checkpoint_every = 5000
        c.eval.split = "test"
        c.eval.is_samples = 0
    elif preset == "tiny":
        c.data.source = "synthetic"
        c.model.hidden = (32,)
        c.model.latent_dim = 2
        c.train.num_steps = 20
        c.train.batch_size = 16
        c.train.log_every = 5
        c.train.checkpoint_every = 10
        c.train.eval_every = 10
        c.eval.num_examples = 64
        c.eval.batch_size = 32
        c.eval.is_samples = 40
        c.eval.is_chunk = 20
        c.eval.num_grid = 16
    else:
        raise ValueError(f"preset: expected one of quick, nll, iwae, fig2, tiny, got {preset!r}")
    return c
