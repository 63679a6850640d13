"""Deep clustering of MNIST (all 70,000 images): DEC, IDEC, DCN, VaDE, GMVAE, ClusterGAN.

Every method is an ordinary family; the autoencoder-based ones start from a pretrained
``cluster_ae`` run::

    genjax train --config experiments/cluster_mnist/config.py:ae --workdir runs/cluster/ae_s0
    genjax train --config experiments/cluster_mnist/config.py:idec --workdir runs/cluster/idec_s0 \\
        --config.model.pretrained=runs/cluster/ae_s0

``experiments/cluster_mnist/run.py`` runs every method over 5 seeds and writes
RESULTS.md and results.json. Hardware, wall times and the measured accuracies against
the papers' are in RESULTS.md. Every preset runs on Fashion-MNIST (through tfds) as
``config.py:<preset>,fashion``. The ``*_tiny`` presets run on generated, well-separated
clusters (``data.source = "synthetic_clusters"``) in seconds, for the tests.
"""

from __future__ import annotations

import ml_collections

from genjax.experiment import families


def _tiny(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    config.data.source = "synthetic_clusters"
    config.data.image_shape = (16, 16, 1)
    config.train.batch_size = 64
    config.train.checkpoint_every = 100
    config.train.log_every = 20
    config.eval.batch_size = 500
    config.eval.figure_examples = 500
    return config


def ae() -> ml_collections.ConfigDict:
    """The d-500-500-2000-10 autoencoder, pretrained end to end (IDEC sec. 4.1: Adam, batch 256)."""
    c = families.get_family("cluster_ae").default_config()
    c.train.num_steps = 20_000
    return c


def ae_bce() -> ml_collections.ConfigDict:
    """``ae`` with a Bernoulli decoder (cross-entropy): VaDE's pretraining, so that the decoder
    VaDE starts from already gives the logits its likelihood reads."""
    c = ae()
    c.model.reconstruction = "bernoulli"
    return c


def dec() -> ml_collections.ConfigDict:
    """DEC (Xie et al. 2016): KL(P||Q) on the encoder and centroids, SGD 0.01 with momentum 0.9."""
    c = families.get_family("dec").default_config()
    c.model.method = "dec"
    c.train.optimizer = "momentum"
    c.train.learning_rate = 0.01
    c.train.b1 = 0.9
    return c


def idec() -> ml_collections.ConfigDict:
    """IDEC (Guo et al. 2017): reconstruction + 0.1 KL(P||Q), Adam 0.001, T = 140."""
    c = families.get_family("dec").default_config()
    c.model.method = "idec"
    return c


def dcn() -> ml_collections.ConfigDict:
    """DCN (Yang et al. 2017): reconstruction + lambda/2 k-means term, alternating centroid updates."""
    c = families.get_family("dec").default_config()
    c.model.method = "dcn"
    return c


def sdec() -> ml_collections.ConfigDict:
    """IDEC with must-link / cannot-link pairs between 1% of the examples (semi-supervised)."""
    c = idec()
    c.model.constraint_fraction = 0.01
    return c


def ae_tiny() -> ml_collections.ConfigDict:
    """``ae`` on generated clusters: 8x8 images, a 64-32-4 autoencoder, 300 steps."""
    c = _tiny(ae())
    c.model.dims = (64, 32, 4)
    c.model.kmeans_n_init = 5
    c.train.num_steps = 300
    return c


def ae_bce_tiny() -> ml_collections.ConfigDict:
    """``ae_tiny`` with the Bernoulli decoder, for ``vade_tiny``."""
    c = ae_tiny()
    c.model.reconstruction = "bernoulli"
    return c


def _dec_tiny(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    c = _tiny(c)
    c.model.kmeans_n_init = 5
    c.model.update_interval = 20
    c.model.track_examples = 500
    c.train.num_steps = 100
    return c


def dec_tiny() -> ml_collections.ConfigDict:
    """``dec`` on generated clusters (``model.pretrained`` must name an ``ae_tiny`` run)."""
    return _dec_tiny(dec())


def idec_tiny() -> ml_collections.ConfigDict:
    """``idec`` on generated clusters."""
    return _dec_tiny(idec())


def dcn_tiny() -> ml_collections.ConfigDict:
    """``dcn`` on generated clusters."""
    return _dec_tiny(dcn())


def sdec_tiny() -> ml_collections.ConfigDict:
    """``sdec`` on generated clusters: pairs between 5% of the examples."""
    c = _dec_tiny(sdec())
    c.model.constraint_fraction = 0.05
    c.model.constraint_batch = 32
    return c


def vade() -> ml_collections.ConfigDict:
    """VaDE (Jiang et al. 2017) from the ``ae`` run: Adam 0.002 (decayed), batch 100, GMM initialisation."""
    return families.get_family("vade").default_config()


def gmvae() -> ml_collections.ConfigDict:
    """The categorical GMVAE (Dilokthanakul et al. 2016) from scratch, the sum over y exact."""
    return families.get_family("gmvae").default_config()


def vade_tiny() -> ml_collections.ConfigDict:
    """``vade`` on generated clusters (``model.pretrained`` must name an ``ae_bce_tiny`` run)."""
    c = _tiny(vade())
    c.train.num_steps = 200
    c.train.decay_steps = 200
    return c


def gmvae_tiny() -> ml_collections.ConfigDict:
    """``gmvae`` on generated clusters: 64-unit MLPs, a 4-d latent."""
    c = _tiny(gmvae())
    c.model.hidden = (64,)
    c.model.latent_dim = 4
    c.train.num_steps = 400
    return c


def clustergan() -> ml_collections.ConfigDict:
    """ClusterGAN (Mukherjee et al. 2019, arXiv:1809.03627) at its MNIST settings: z_n of 30
    dimensions with sigma 0.1, K = 10, beta_n = beta_c = 10, WGAN-GP (lambda 10, 5 critic
    steps), Adam 1e-4 (0.5, 0.9), batch 64, conv generator, critic and encoder."""
    return families.get_family("clustergan").default_config()


def clustergan_mlp() -> ml_collections.ConfigDict:
    """``clustergan`` with 512-512 MLP generator and critic and an MLP encoder: the CPU-sized
    variant measured in RESULTS.md (the conv nets run about 0.5 s a step on 2 cores)."""
    c = clustergan()
    c.model.architecture = "mlp"
    c.model.hidden = (512, 512)
    c.model.critic_hidden = (512, 512)
    c.model.encoder_conv = ()
    c.model.encoder_hidden = (512, 512)
    return c


def clustergan_tiny() -> ml_collections.ConfigDict:
    """``clustergan`` on generated 8x8 clusters: 128-unit MLPs, a 5-d z_n, Adam 1e-3, 3000 steps
    (ACC 0.99+ in about 15 s on one CPU device)."""
    c = _tiny(clustergan())
    c.data.image_shape = (8, 8, 1)
    c.model.architecture = "mlp"
    c.model.hidden = (128, 128)
    c.model.encoder_conv = ()
    c.model.encoder_hidden = (128,)
    c.model.latent_dim = 5
    c.train.learning_rate = 1e-3
    c.train.num_steps = 3000
    c.train.log_every = 500
    c.train.checkpoint_every = 3000
    return c


PRESETS = {
    "ae": ae,
    "ae_bce": ae_bce,
    "dec": dec,
    "idec": idec,
    "dcn": dcn,
    "sdec": sdec,
    "ae_tiny": ae_tiny,
    "ae_bce_tiny": ae_bce_tiny,
    "dec_tiny": dec_tiny,
    "idec_tiny": idec_tiny,
    "dcn_tiny": dcn_tiny,
    "sdec_tiny": sdec_tiny,
    "vade": vade,
    "gmvae": gmvae,
    "vade_tiny": vade_tiny,
    "gmvae_tiny": gmvae_tiny,
    "clustergan": clustergan,
    "clustergan_tiny": clustergan_tiny,
    "clustergan_mlp": clustergan_mlp,
}


def fashion(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """The same method on Fashion-MNIST through tfds (70,000 images: train, valid and test)."""
    config.data.name = "fashion_mnist"
    config.data.source = "tfds"
    return config


def get_config(preset: str = "idec") -> ml_collections.ConfigDict:
    """Returns the config of a preset (see the module docstring); ``"idec,fashion"`` is the
    same preset on Fashion-MNIST (tfds)."""
    name, _, variant = preset.partition(",")
    if name not in PRESETS or variant not in ("", "fashion"):
        raise ValueError(f"preset: expected one of {', '.join(PRESETS)}, optionally followed by ',fashion', got {preset!r}")
    config = PRESETS[name]()
    return fashion(config) if variant else config
