"""WGAN-GP's toy experiments (Gulrajani et al., arXiv 1704.00028, Fig. 1 and Fig. 2 left).

``--config experiments/wgan_gp_toy/config.py:DATASET,OBJECTIVE[,tiny]`` trains one of the
3 x 4 runs (``,tiny``: a few steps of small networks, for the tests): DATASET is
``eight_gaussians``, ``twentyfive_gaussians`` or ``swiss_roll`` (the
distributions of the paper's toy code, ``genjax.data.toy2d``), OBJECTIVE is ``gan``
(Goodfellow et al.'s non-saturating GAN, one discriminator step per generator step),
``wgan`` (weight clipping at 0.01, RMSProp at 5e-5, n_critic 5, as in Arjovsky et al.),
``wgan_gp`` (n_critic 5, lambda 0.1: the value of the paper's toy code,
``gan_toy.py``, whose comment says a smaller lambda helps on toy tasks) or
``wgan_gp_lambda10`` (Algorithm 1's lambda 10, the ablation). ``tiny`` alone is
``eight_gaussians,wgan_gp,tiny``.

Sized for a 2-core CPU, not the paper's: generator and critic are ReLU MLPs with three
hidden layers of 128 units (the paper: 512), batch 256, a 2-dimensional normal latent,
5,000 generator steps (the paper: 100,000), Adam at 1e-3 with beta1 0.5, beta2 0.9 for
GAN and WGAN-GP (the paper's toy code: 1e-4), and RMSProp at 5e-5 for clipped WGAN
(Arjovsky et al.'s rate, kept: it is the baseline). Evaluation on 10,000 samples: modes
covered and the fraction of samples within 3 standard deviations of a mode (mixtures),
the sliced Wasserstein distance to fresh data, and the critic's value surface.
``python experiments/wgan_gp_toy/run.py`` trains all twelve and writes results.json,
table.md (the table of RESULTS.md) and the figures; wall times are in RESULTS.md.
"""

import ml_collections

from genjax.experiment import gan

DATASETS = ("eight_gaussians", "twentyfive_gaussians", "swiss_roll")
OBJECTIVES = {"gan": "non_saturating", "wgan": "wgan_clip", "wgan_gp": "wgan_gp", "wgan_gp_lambda10": "wgan_gp"}
GP_WEIGHTS = {"wgan_gp": 0.1, "wgan_gp_lambda10": 10.0}


def get_config(arg: str = "eight_gaussians,wgan_gp") -> ml_collections.ConfigDict:
    """Returns the config of one run, ``DATASET,OBJECTIVE[,tiny]``, or ``tiny``."""
    parts = ["eight_gaussians", "wgan_gp", "tiny"] if arg == "tiny" else arg.split(",")
    tiny = parts[2:] == ["tiny"]
    if len(parts) not in (2, 3) or parts[0] not in DATASETS or parts[1] not in OBJECTIVES or (len(parts) == 3 and not tiny):
        raise ValueError(f"arg: expected DATASET,OBJECTIVE[,tiny] with DATASET in {DATASETS} and OBJECTIVE in {tuple(OBJECTIVES)}, or 'tiny'; got {arg!r}")
    dataset, objective = parts[:2]
    c = gan.default_config()
    c.data.name = dataset
    c.data.source = "toy"
    c.data.image_shape = (2,)
    c.model.objective = OBJECTIVES[objective]
    c.model.architecture = "mlp"
    c.model.hidden = (128, 128, 128)
    c.model.latent_dim = 2
    c.model.n_critic = 1 if objective == "gan" else 5
    if objective in GP_WEIGHTS:
        c.model.gp_weight = GP_WEIGHTS[objective]
    c.train.batch_size = 256
    c.train.num_steps = 5000
    c.train.log_every = 100
    c.train.checkpoint_every = 1000
    if objective == "wgan":
        c.train.optimizer = "rmsprop"
        c.train.learning_rate = 5e-5
        c.train.b2 = 0.99
    else:
        c.train.learning_rate = 1e-3
        c.train.b1 = 0.5
        c.train.b2 = 0.9
    c.eval.toy_samples = 10_000
    c.eval.batch_size = 10_000
    c.eval.num_grid = 1000
    if tiny:
        c.model.hidden = (16, 16)
        c.train.batch_size = 32
        c.train.num_steps = 4
        c.train.log_every = 2
        c.train.checkpoint_every = 2
        c.eval.toy_samples = 500
        c.eval.batch_size = 250
        c.eval.num_grid = 200
    return c
