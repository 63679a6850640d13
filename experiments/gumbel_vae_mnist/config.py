"""Categorical and Bernoulli VAEs on binarised MNIST, Table 1 of Jang, Gu & Poole
(arXiv:1611.01144), trained with any of the estimators of ``genjax.models.gumbel``.

Presets, chosen with ``--config experiments/gumbel_vae_mnist/config.py:PRESET``; the
estimator is ``--config.model.estimator=NAME`` (score_function, straight_through,
annealed_straight_through, gumbel_softmax, st_gumbel_softmax):

* ``categorical`` (default): 784-512-256 ReLU encoder to 20 categorical variables of
  10 classes, mirrored decoder, Adam 1e-3, batch 100, tau = max(0.5, exp(-1e-4 t))
  updated every 1,000 steps. ``experiments/gumbel_vae_mnist/table.py`` runs every
  estimator at the same budget and writes RESULTS.md / results.json; the budget, the
  hardware and the wall time are recorded there.
* ``bernoulli``: the same with 200 Bernoulli latent units.
* ``target``: the categorical VAE with the Gumbel-softmax estimator and the longer
  budget used for the paper's 101.5 target (see RESULTS.md for what it reached).
* ``tiny``: a few steps of a tiny model on generated data, for tests and smoke runs.

The test loss is the negative ELBO of the discrete model (exact samples from q, exact
KL to the uniform prior), averaged over ``eval.num_samples`` draws per test image.
"""

import ml_collections

PRESETS = ("categorical", "bernoulli", "target", "tiny")


def get_config(preset: str = "categorical") -> ml_collections.ConfigDict:
    """Returns the config of a preset (see the module docstring)."""
    c = ml_collections.ConfigDict()
    c.seed = 0
    c.parallel = "jit"
    c.num_devices = 0

    c.data = ml_collections.ConfigDict()
    c.data.name = "mnist"
    c.data.source = "offline"
    c.data.data_dir = ""
    c.data.binarize = "dynamic"
    c.data.image_shape = (28, 28, 1)
    c.data.train_split = "train"

    c.model = ml_collections.ConfigDict()
    c.model.family = "discrete_vae"
    c.model.latent = "categorical"
    c.model.num_vars = 20
    c.model.num_classes = 10
    c.model.hidden = (512, 256)
    c.model.activation = "relu"
    c.model.estimator = "gumbel_softmax"
    c.model.tau0 = 1.0
    c.model.tau_min = 0.5
    c.model.anneal_rate = 1e-4
    c.model.anneal_every = 1000
    c.model.baseline_decay = 0.9

    c.train = ml_collections.ConfigDict()
    c.train.num_steps = 20_000
    c.train.batch_size = 100
    c.train.log_every = 100
    c.train.checkpoint_every = 5000
    c.train.keep_checkpoints = 2
    c.train.eval_every = 5000
    c.train.optimizer = "adam"
    c.train.learning_rate = 1e-3
    c.train.schedule = "constant"
    c.train.warmup_steps = 0
    c.train.decay_steps = 0
    c.train.grad_clip = 0.0
    c.train.b1 = 0.9
    c.train.b2 = 0.999
    c.train.eps = 1e-8
    c.train.ema_decay = 0.0

    c.eval = ml_collections.ConfigDict()
    c.eval.split = "test"
    c.eval.num_examples = 0
    c.eval.batch_size = 500
    c.eval.num_samples = 10
    c.eval.quick_samples = 1
    c.eval.chunk = 10
    c.eval.num_grid = 100

    if preset == "categorical":
        pass
    elif preset == "bernoulli":
        c.model.latent = "bernoulli"
        c.model.num_vars = 200
    elif preset == "target":
        c.train.num_steps = 100_000
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
        c.eval.chunk = 2
        c.eval.num_grid = 16
    else:
        raise ValueError(f"preset: expected one of {', '.join(PRESETS)}, got {preset!r}")
    return c
