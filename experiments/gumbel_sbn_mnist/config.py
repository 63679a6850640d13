"""Structured output prediction with stochastic binary networks, Table 1 of Jang, Gu &
Poole (arXiv:1611.01144): predict the lower half of a binarised MNIST digit from its
upper half with a 392-200-200-392 network of stochastic units.

Presets, chosen with ``--config experiments/gumbel_sbn_mnist/config.py:PRESET``; the
estimator is ``--config.model.estimator=NAME`` (score_function, straight_through,
annealed_straight_through, gumbel_softmax, st_gumbel_softmax):

* ``bernoulli`` (default): two layers of 200 Bernoulli units, each reached by a linear
  map; Bernoulli pixels for the lower half; Adam 1e-3, batch 100, one sample of the
  hidden units per example in training, tau = max(0.5, exp(-1e-4 t)) updated every
  1,000 steps.
* ``categorical``: the same with 20 categorical variables of 10 classes per layer.
* ``tiny``: a few steps on generated data, for tests and smoke runs.

The test loss is -log (1/m sum_i p(x_lower | h_i)) with m = ``eval.num_samples`` exact
samples of the hidden units, averaged over the test set: an estimate of
-log p(x_lower | x_upper) whose expectation is an upper bound that tightens with m.
The table in RESULTS.md trains every estimator for 20,000 steps and scores the first
2,000 test images:
``python experiments/gumbel_table.py --experiment gumbel_sbn_mnist --steps 20000
--config.eval.num_examples=2000`` (per row 3 to 5 minutes of training and about 1
minute of evaluation with m = 1,000 on 2 shared CPU cores; see RESULTS.md for the
numbers).
"""

import ml_collections

from genjax.experiment import discrete

PRESETS = ("bernoulli", "categorical", "tiny")


def get_config(preset: str = "bernoulli") -> ml_collections.ConfigDict:
    """Returns the config of a preset (see the module docstring)."""
    c = discrete.sbn_config()

    if preset == "bernoulli":
        pass
    elif preset == "categorical":
        c.model.latent = "categorical"
        c.model.num_vars = 20
    elif preset == "tiny":
        c.data.source = "synthetic"
        c.model.latent = "categorical"
        c.model.num_vars = 3
        c.model.num_classes = 4
        c.model.anneal_every = 5
        c.model.anneal_rate = 0.1
        c.train.num_steps = 12
        c.train.batch_size = 16
        c.train.log_every = 4
        c.train.checkpoint_every = 6
        c.train.eval_every = 6
        c.eval.num_examples = 64
        c.eval.batch_size = 32
        c.eval.num_samples = 8
        c.eval.quick_samples = 4
        c.eval.chunk = 4
        c.eval.num_grid = 16
    else:
        raise ValueError(f"preset: expected one of {', '.join(PRESETS)}, got {preset!r}")
    return c
