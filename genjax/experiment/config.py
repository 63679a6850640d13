"""Config files: loading ``path[:argument]``, ``--config.a.b=value`` overrides, the shared fields.

Each family's own fields and defaults live in its module (``default_config()`` in
``genjax.experiment.vae``, ``.discrete``, ``.gan``, ``.ddpm``, ``.sohl_dickstein``).
"""

from __future__ import annotations

import ast
import importlib.util
import math
import pathlib
import sys
from collections.abc import Sequence

import ml_collections

REQUIRED_FIELDS = ("seed", "parallel", "train.num_steps", "train.batch_size", "train.log_every", "train.checkpoint_every")


class ConfigError(ValueError):
    """A config file, field or override is invalid."""


def load_config_file(spec: str) -> ml_collections.ConfigDict:
    """Loads ``path[:argument]``: calls the file's ``get_config()`` or ``get_config(argument)``.

    Returns:
      The config, locked so that misspelt fields cannot be added later.
    """
    path_str, _, arg = spec.partition(":")
    path = pathlib.Path(path_str)
    if not path.is_file():
        raise FileNotFoundError(f"--config: no config file at '{path_str}' (expected a Python file defining get_config())")
    if path.suffix != ".py":
        raise ConfigError(f"--config: expected a Python config file (*.py), got '{path_str}'")
    module_spec = importlib.util.spec_from_file_location(f"genjax_config_{abs(hash(path.absolute()))}", path)
    if module_spec is None or module_spec.loader is None:
        raise ConfigError(f"--config: '{path_str}' cannot be imported as a Python module")
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[module_spec.name] = module
    try:
        module_spec.loader.exec_module(module)
    except Exception as err:
        raise ConfigError(f"--config: '{path_str}' failed to load: {type(err).__name__}: {err}") from None
    if not hasattr(module, "get_config"):
        raise ConfigError(f"--config: '{path_str}' does not define get_config()")
    try:
        config = module.get_config(arg) if arg else module.get_config()
    except ValueError as err:
        raise ConfigError(f"--config: '{spec}': {err}") from None
    except Exception as err:  # a config file's own bug: name it, with the file
        raise ConfigError(f"--config: '{spec}': get_config() raised {type(err).__name__}: {err}") from None
    if not isinstance(config, ml_collections.ConfigDict):
        raise ConfigError(f"--config: '{spec}': get_config() returned a {type(config).__name__}, expected an ml_collections.ConfigDict")
    for field in REQUIRED_FIELDS:
        if _lookup(config, field) is _MISSING:
            raise ConfigError(f"--config: '{path_str}' lacks the required field '{field}'")
    config.lock()
    return config


_MISSING = object()


def _lookup(config: ml_collections.ConfigDict, dotted: str) -> object:
    node: object = config
    for part in dotted.split("."):
        if not isinstance(node, ml_collections.ConfigDict) or part not in node:
            return _MISSING
        node = node[part]
    return node


def _convert(dotted: str, current: object, raw: str) -> object:
    """Converts ``raw`` to the type of the field's current value."""

    def fail(expected: str) -> ConfigError:
        return ConfigError(f"--config.{dotted}: expected {expected}, got {raw!r}")

    if isinstance(current, bool):
        if raw.lower() in ("true", "1", "yes"):
            return True
        if raw.lower() in ("false", "0", "no"):
            return False
        raise fail("a bool (true or false)")
    if isinstance(current, int):
        try:
            return int(raw)
        except ValueError:
            raise fail("an int") from None
    if isinstance(current, float):
        try:
            number = float(raw)
        except ValueError:
            raise fail("a float") from None
        if not math.isfinite(number):
            raise fail("a finite float")
        return number
    if isinstance(current, str):
        return raw
    if isinstance(current, (tuple, list)):
        try:
            value = ast.literal_eval(raw)
        except (ValueError, SyntaxError):
            raise fail("a tuple such as (500, 500)") from None
        value = tuple(value) if isinstance(value, (tuple, list)) else (value,)
        kinds = {type(v) for v in current}
        if kinds and any(type(v) not in kinds for v in value):
            raise fail(f"a tuple of {'/'.join(sorted(k.__name__ for k in kinds))} like {tuple(current)}")
        return type(current)(value)
    try:
        return ast.literal_eval(raw)
    except (ValueError, SyntaxError):
        return raw


def apply_overrides(config: ml_collections.ConfigDict, overrides: Sequence[str]) -> ml_collections.ConfigDict:
    """Applies ``a.b=value`` overrides to a locked config, checking keys and types.

    Args:
      config: the locked config (modified in place and returned).
      overrides: strings ``"a.b=value"`` (the ``--config.`` prefix already removed).

    Raises:
      ConfigError: an unknown key or a value of the wrong type.
    """
    for item in overrides:
        dotted, sep, raw = item.partition("=")
        if not sep:
            raise ConfigError(f"--config.{dotted}: expected --config.{dotted}=VALUE")
        parent_path, _, leaf = dotted.rpartition(".")
        parent = _lookup(config, parent_path) if parent_path else config
        if not isinstance(parent, ml_collections.ConfigDict) or leaf not in parent:
            known = sorted(parent.keys()) if isinstance(parent, ml_collections.ConfigDict) else []
            where = f" (known keys under '{parent_path or '<root>'}': {', '.join(known)})" if known else ""
            raise ConfigError(f"--config.{dotted}: unknown override key{where}")
        current = parent[leaf]
        if isinstance(current, ml_collections.ConfigDict):
            raise ConfigError(f"--config.{dotted}: is a group of fields, override one of {sorted(current.keys())}")
        value = _convert(dotted, current, raw)
        try:
            with parent.unlocked():
                parent[leaf] = value
        except TypeError as err:
            raise ConfigError(f"--config.{dotted}: {err}") from None
    return config


def check_finite(config: ml_collections.ConfigDict, prefix: str = "") -> None:
    """Raises ``ConfigError`` naming the first float field (or tuple item) that is NaN or
    infinite: no genjax hyperparameter takes one, and a NaN learning rate would otherwise
    surface only as a diverged first step."""
    for name, value in config.items():
        dotted = f"{prefix}{name}"
        if isinstance(value, ml_collections.ConfigDict):
            check_finite(value, dotted + ".")
            continue
        items = value if isinstance(value, (tuple, list)) else (value,)
        if any(isinstance(v, float) and not math.isfinite(v) for v in items):
            raise ConfigError(f"{dotted}: expected finite values, got {value!r}")


def base_config() -> ml_collections.ConfigDict:
    """The fields every experiment config shares, at their common defaults.

    ``seed``, ``parallel`` (``"jit"`` or ``"pmap"``), ``num_devices`` (0: all),
    ``fsdp`` (how many devices share each large parameter and optimiser-state leaf; 1:
    replicated, see ``genjax.sharding``);
    ``data``: the offline MNIST copy, dynamically binarised, trained on ``"train"``;
    ``train``: Adam at 1e-3 with a constant schedule, batch 100, the loop's periods and
    the optional EMA; ``eval``: the split, how many of its examples (0: all), the batch
    and the size of the sample grid. A config adds ``model`` and what its family's
    evaluation reads, and overrides what differs.
    """
    c = ml_collections.ConfigDict()
    c.seed = 0
    c.parallel = "jit"
    c.num_devices = 0
    c.fsdp = 1

    c.data = ml_collections.ConfigDict()
    c.data.name = "mnist"
    c.data.source = "offline"
    c.data.data_dir = ""
    c.data.binarize = "dynamic"
    c.data.image_shape = (28, 28, 1)
    c.data.train_split = "train"

    c.train = ml_collections.ConfigDict()
    c.train.num_steps = 10_000
    c.train.batch_size = 100
    c.train.log_every = 100
    c.train.checkpoint_every = 1000
    c.train.keep_checkpoints = 3
    c.train.eval_every = 0
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
    c.eval.batch_size = 100
    c.eval.num_grid = 100
    return c
