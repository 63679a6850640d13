"""Neural-network building blocks shared by the model families."""

from genjax.nn.conv import ConvDecoder, ConvEncoder
from genjax.nn.diffusers_import import convert_diffusers_state_dict, load_diffusers_unet, unet_from_diffusers_config
from genjax.nn.gan_nets import (
    DCGANCritic,
    DCGANGenerator,
    MLPCritic,
    MLPGenerator,
    ResNetCritic,
    ResNetGenerator,
)
from genjax.nn.inception import (
    FIDInceptionV3,
    InceptionOutput,
    inception_features,
    inception_outputs,
    load_inception_params,
)
from genjax.nn.mlp import MLP
from genjax.nn.module import apply, array_apply
from genjax.nn.unet import UNet, ddpm_cifar10, sinusoidal_embedding, unet_tiny

__all__ = [
    "MLP",
    "ConvDecoder",
    "ConvEncoder",
    "DCGANCritic",
    "DCGANGenerator",
    "FIDInceptionV3",
    "InceptionOutput",
    "MLPCritic",
    "MLPGenerator",
    "ResNetCritic",
    "ResNetGenerator",
    "UNet",
    "apply",
    "array_apply",
    "convert_diffusers_state_dict",
    "ddpm_cifar10",
    "inception_features",
    "inception_outputs",
    "load_diffusers_unet",
    "load_inception_params",
    "sinusoidal_embedding",
    "unet_from_diffusers_config",
    "unet_tiny",
]
