"""The registry of model families: ``config.model.family`` -> its defaults and builder.

Adding a family is one module in ``genjax/experiment/`` with a ``default_config()`` and a
``build(config) -> Experiment``, and one entry here.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import ml_collections

from genjax.experiment import clustergan, clustering, clustering_vae, ddpm, discrete, gan, latent, sohl_dickstein, vae
from genjax.experiment.base import Experiment


@dataclasses.dataclass(frozen=True)
class Family:
    """A model family of the experiment layer.

    Attributes:
      name: the value of ``config.model.family``.
      default_config: returns the family's config at its defaults.
      build: ``build(config) -> Experiment``.
    """

    name: str
    default_config: Callable[[], ml_collections.ConfigDict]
    build: Callable[[ml_collections.ConfigDict], Experiment]


FAMILIES: dict[str, Family] = {
    f.name: f
    for f in (
        Family("vae", vae.default_config, vae.build),
        Family("discrete_vae", discrete.discrete_vae_config, discrete.build_discrete_vae),
        Family("sbn", discrete.sbn_config, discrete.build_sbn),
        Family("gan", gan.default_config, gan.build),
        Family("ddpm", ddpm.default_config, ddpm.build),
        Family("sohl_dickstein", sohl_dickstein.default_config, sohl_dickstein.build),
        Family("autoencoder_kl", latent.autoencoder_config, latent.build_autoencoder_experiment),
        Family("ldm", latent.ldm_config, latent.build_ldm),
        Family("cluster_ae", clustering.cluster_ae_config, clustering.build_cluster_ae),
        Family("dec", clustering.dec_config, clustering.build_dec),
        Family("clustergan", clustergan.default_config, clustergan.build),
        Family("vade", clustering_vae.vade_config, clustering_vae.build_vade),
        Family("gmvae", clustering_vae.gmvae_config, clustering_vae.build_gmvae),
    )
}


def get_family(name: str) -> Family:
    """The family registered as ``name``.

    Raises:
      ValueError: naming ``model.family`` and the known families.
    """
    if name not in FAMILIES:
        raise ValueError(f"model.family: expected one of {sorted(FAMILIES)}, got {name!r}")
    return FAMILIES[name]


def build(config: ml_collections.ConfigDict) -> Experiment:
    """Builds the experiment of ``config.model.family`` from ``config``."""
    return get_family(config.model.family).build(config)
