"""``apply``: a ``flax.linen.Module`` method called on variables, typed as that method.

Flax types ``Module.apply`` as returning the output or an ``(output, mutated
variables)`` pair, whatever ``mutable`` is. Without ``mutable`` it returns only the
output, so the models call their modules through ``apply``, which type checkers see
as taking the method's arguments and returning what the method returns.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar, cast

import flax.linen as nn
import jax
from typing_extensions import TypeVarTuple, Unpack

from genjax.types import Params

M = TypeVar("M", bound=nn.Module)
R = TypeVar("R")
Args = TypeVarTuple("Args")


def apply(module: M, variables: Params, method: Callable[[M, Unpack[Args]], R], *args: Unpack[Args]) -> R:
    """``module.apply(variables, *args, method=method)``, with no mutable collections.

    Args:
      module: the Flax module.
      variables: its variables (what ``module.init`` returned).
      method: the unbound method to call, e.g. ``VAE.encode`` or ``MLP.__call__``.
      *args: the method's positional arguments.

    Returns:
      What ``method`` returns.
    """
    return cast(R, module.apply(variables, *args, method=method))


def array_apply(module: nn.Module) -> Callable[..., jax.Array]:
    """``module.apply`` itself, typed as returning an array: for passing a network as a
    function (``generator(params, z)``) or calling it with ``rngs=`` and keyword
    arguments, which ``apply`` above does not take. Only for modules whose method returns
    one array and with no mutable collections."""
    return cast(Callable[..., jax.Array], module.apply)
