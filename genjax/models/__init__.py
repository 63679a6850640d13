"""Model families: one module per family, each exposing Flax modules and pure losses,
updates and samplers on plain pytrees (none imports ``genjax.train`` or the experiment
layer).

* ``vae``: Kingma & Welling (arXiv 1312.6114) and the IWAE bound.
* ``gumbel``: the discrete VAE and SBN of Jang, Gu & Poole (arXiv 1611.01144).
* ``gan``: GAN (arXiv 1406.2661), WGAN (1701.07875) and WGAN-GP (1704.00028).
* ``diffusion``: DDPM (Ho et al., arXiv 2006.11239).
* ``sohl_dickstein``: the original diffusion model (arXiv 1503.03585).
"""

from genjax.models import diffusion, gan, gumbel, sohl_dickstein, vae

__all__ = ["diffusion", "gan", "gumbel", "sohl_dickstein", "vae"]
