"""The one place where samplers are named.

Adding a sampler is one new module defining a frozen ``base.Sampler`` dataclass and one
entry in ``SAMPLERS``; ``genjax sample``, the task configs, the benchmarks and the
reports look names up here.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from genjax.samplers.base import Sampler
from genjax.samplers.ddim import DDIM
from genjax.samplers.ddpm import DDPM
from genjax.samplers.dpmpp import DPMpp2M
from genjax.samplers.heun import Heun

SAMPLERS: dict[str, type[Sampler]] = {
    "ddpm": DDPM,
    "ddim": DDIM,
    "dpmpp_2m": DPMpp2M,
    "heun": Heun,
}


def sampler_options(name: str) -> tuple[str, ...]:
    """The option names (dataclass fields) of the sampler registered as ``name``."""
    cls: Any = _lookup(name)
    return tuple(f.name for f in dataclasses.fields(cls))


def _lookup(name: str) -> type[Sampler]:
    if not isinstance(name, str) or name not in SAMPLERS:
        raise ValueError(f"sampler: unknown name {name!r}; known samplers: {', '.join(SAMPLERS)}")
    return SAMPLERS[name]


def get_sampler(name: str, **options: Any) -> Sampler:
    """The sampler registered as ``name``, built with ``options``.

    Args:
      name: a key of ``SAMPLERS`` (``"ddpm"``, ``"ddim"``, ``"dpmpp_2m"``, ``"heun"``).
      **options: the sampler's options (its dataclass fields), e.g. ``eta=0.5`` for
        ``"ddim"``; the others keep their defaults.

    Returns:
      The frozen sampler object.

    Raises:
      ValueError: an unknown ``name`` (the message lists the known ones), an option the
        sampler does not take (the message names it and lists the sampler's options), or
        a bad option value (named by the sampler's own check).
      TypeError: an option of the wrong type (named by the sampler's own check).
    """
    cls = _lookup(name)
    known = sampler_options(name)
    for option in options:
        if option not in known:
            raise ValueError(f"{option}: not an option of the {name!r} sampler; its options are {known}")
    return cls(**options)


def as_sampler(sampler: Sampler | str) -> Sampler:
    """``sampler`` itself, or the default-option sampler registered under that name.

    Raises:
      ValueError: an unknown name (listing the known ones).
      TypeError: naming ``sampler`` when it is neither a ``Sampler`` nor a string.
    """
    if isinstance(sampler, Sampler):
        return sampler
    if isinstance(sampler, str):
        return get_sampler(sampler)
    raise TypeError(f"sampler: expected a genjax.samplers.Sampler or one of {tuple(SAMPLERS)}, got {sampler!r}")


__all__ = ["SAMPLERS", "as_sampler", "get_sampler", "sampler_options"]
