"""Neural-network building blocks shared by the model families."""

from genjax.nn.conv import ConvDecoder, ConvEncoder
from genjax.nn.mlp import MLP

__all__ = ["MLP", "ConvEncoder", "ConvDecoder"]
