"""Categorical and Bernoulli VAEs on binarised MNIST, Table 1 of Jang, Gu & Poole
(arXiv:1611.01144), trained with any of the estimators of ``genjax.models.gumbel``.

Presets, chosen with ``--config experiments/gumbel_vae_mnist/config.py:PRESET``; the
estimator is ``--config.model.estimator=NAME`` (score_function, straight_through,
annealed_straight_through, gumbel_softmax, st_gumbel_softmax):

* ``categorical`` (default): 784-512-256 ReLU encoder to 20 categorical variables of
  10 classes, mirrored decoder, Adam 1e-3, batch 100, tau = max(0.5, exp(-1e-4 t))
  updated every 1,000 steps, 20,000 steps by default. The table in RESULTS.md uses
  10,000 steps for every estimator:
  ``python experiments/gumbel_table.py --experiment gumbel_vae_mnist --steps 10000``
  (one row: ``genjax train --config experiments/gumbel_vae_mnist/config.py:categorical
  --workdir runs/cat_gs --config.model.estimator=gumbel_softmax
  --config.train.num_steps=10000``; about 6 minutes of training and 25 s of evaluation
  on 2 shared CPU cores; Gumbel-softmax reaches a test loss of about 111 nats there).
* ``bernoulli``: the same with 200 Bernoulli latent units.
* ``target``: the recipe that reaches the paper's 101.5 for the categorical VAE with
  the Gumbel-softmax estimator: the ``categorical`` setting trained for 60,000 steps
  (120 epochs). ``genjax train --config experiments/gumbel_vae_mnist/config.py:target
  --workdir runs/gumbel_vae_mnist/target_gumbel_softmax``: 62 minutes of training on 2
  shared CPU cores, test loss 100.13 +- 0.26 nats (RESULTS.md).
* ``tiny``: a few steps of a tiny model on generated data, for tests and smoke runs.

The test loss is the negative ELBO of the discrete model (exact samples from q, exact
KL to the uniform prior), averaged over ``eval.num_samples`` draws per test image.
"""

import ml_collections

from genjax.experiment import discrete

PRESETS = ("categorical", "bernoulli", "target", "tiny")


def get_config(preset: str = "categorical") -> ml_collections.ConfigDict:
    """Returns the config of a preset (see the module docstring)."""
    c = discrete.discrete_vae_config()

    if preset == "categorical":
        pass
    elif preset == "bernoulli":
        c.model.latent = "bernoulli"
        c.model.num_vars = 200
    elif preset == "target":
        c.train.num_steps = 60_000
        c.train.checkpoint_every = 10_000
        c.train.eval_every = 10_000
    elif preset == "tiny":
        c.data.source = "synthetic"
        c.model.num_vars = 3
        c.model.num_classes = 4
        c.model.hidden = (16,)
        c.model.anneal_every = 5
        c.model.anneal_rate = 0.1
        c.train.num_steps = 12
        c.train.batch_size = 16
        c.train.log_every = 4
        c.train.checkpoint_every = 6
        c.train.eval_every = 6
        c.eval.num_examples = 64
        c.eval.batch_size = 32
        c.eval.num_samples = 4
        c.eval.num_grid = 16
    else:
        raise ValueError(f"preset: expected one of {', '.join(PRESETS)}, got {preset!r}")
    return c
