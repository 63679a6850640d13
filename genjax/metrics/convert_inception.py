"""Converts pytorch-fid's Inception-v3 weights (.pth) to a file genjax can load.

Usage::

    python -m genjax.metrics.convert_inception pt_inception-2015-12-05-6726825d.pth inception_fid.safetensors

The input is the state_dict that pytorch-fid publishes for FID (the TF graph
``inception-2015-12-05`` of Heusel et al. 2017, arXiv:1706.08500, ported to torch), from
https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/pt_inception-2015-12-05-6726825d.pth
. It is read with ``torch.load(path, map_location="cpu", weights_only=True)``, torch's
safe loader, which rebuilds tensors and plain containers only and refuses to run the
arbitrary code a pickle may hold. The tensors are checked against the network of
:mod:`genjax.nn.inception` (names and shapes) before anything is written, and saved
under their torch names as float32 with ``safetensors.numpy.save_file`` (``.safetensors``)
or ``numpy.savez`` (``.npz``). ``num_batches_tracked`` counters are dropped. Load the
result with :func:`genjax.nn.inception.load_inception_params`.

This needs torch (CPU is enough); nothing else in genjax does.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping, Sequence

import numpy as np

from genjax.nn.inception import (
    FID_WEIGHTS_FILENAME,
    inception_variables_from_state_dict,
)

__all__ = ["convert_inception_weights", "main"]


def _to_numpy(state_dict: Mapping[str, object], in_path: str) -> dict[str, np.ndarray]:
    arrays = {}
    for name, value in state_dict.items():
        if not isinstance(name, str) or not hasattr(value, "detach"):
            raise ValueError(f"in_path: expected a torch state_dict of named tensors in {in_path!r}, got entry {name!r} of type {type(value).__name__}")
        if name.endswith(".num_batches_tracked"):
            continue
        arrays[name] = np.ascontiguousarray(value.detach().cpu().float().numpy(), dtype=np.float32)
    return arrays


def convert_inception_weights(in_path: str | os.PathLike[str], out_path: str | os.PathLike[str]) -> int:
    """Converts a torch Inception state_dict file to .safetensors or .npz.

    Args:
      in_path: the ``.pth`` state_dict (e.g. ``pt_inception-2015-12-05-6726825d.pth``),
        read with ``torch.load(..., map_location="cpu", weights_only=True)``.
      out_path: the file to write; ``.safetensors`` (``safetensors.numpy.save_file``)
        or ``.npz``.

    Returns:
      The number of tensors written (472 for the FID network).

    Raises:
      FileNotFoundError: if ``in_path`` does not exist.
      ValueError: if ``out_path`` has another extension, or the tensors are not the FID
        Inception-v3's (names and shapes are checked before writing).
    """
    in_path, out_path = os.fspath(in_path), os.fspath(out_path)
    if not out_path.endswith((".safetensors", ".npz")):
        raise ValueError(f"out_path: expected a .safetensors or .npz file name, got {out_path!r}")
    if not os.path.isfile(in_path):
        raise FileNotFoundError(
            f"in_path: {in_path!r} does not exist; the FID weights are pytorch-fid's {FID_WEIGHTS_FILENAME} "
            f"(https://github.com/mseitzer/pytorch-fid/releases/tag/fid_weights)"
        )
    import torch  # only the converter needs torch

    state_dict = torch.load(in_path, map_location="cpu", weights_only=True)
    if not isinstance(state_dict, Mapping):
        raise ValueError(f"in_path: expected a state_dict (a mapping of names to tensors), got {type(state_dict).__name__}")
    arrays = _to_numpy(state_dict, in_path)
    inception_variables_from_state_dict(arrays)  # raises ValueError naming bad keys
    if out_path.endswith(".safetensors"):
        from safetensors.numpy import save_file

        save_file(arrays, out_path)
    else:
        np.savez(out_path, **arrays)  # type: ignore[arg-type]  # numpy's stub matches **arrays against allow_pickle: bool
    return len(arrays)


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point: ``python -m genjax.metrics.convert_inception IN.pth OUT``."""
    parser = argparse.ArgumentParser(
        prog="python -m genjax.metrics.convert_inception",
        description="Convert pytorch-fid's FID Inception-v3 weights (.pth) to .safetensors or .npz for genjax.",
    )
    parser.add_argument("in_path", help=f"the torch state_dict, e.g. {FID_WEIGHTS_FILENAME}")
    parser.add_argument("out_path", help="output file ending in .safetensors or .npz")
    args = parser.parse_args(argv)
    count = convert_inception_weights(args.in_path, args.out_path)
    print(f"wrote {count} tensors to {args.out_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
