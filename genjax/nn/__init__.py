"""Neural-network building blocks shared by the model families."""

from genjax.nn.conv import ConvDecoder, ConvEncoder
from genjax.nn.diffusers_import import (
    convert_diffusers_state_dict,
    load_diffusers_ddpm_unet,
    load_diffusers_unet,
    unet2d_from_diffusers_config,
    unet_from_diffusers_config,
)
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
from genjax.nn.sd import AutoencoderKL, UNet2DConditionModel, sd15_unet, sd15_vae, sd_unet_tiny, sd_vae_tiny
from genjax.nn.sd_import import (
    autoencoder_kl_from_diffusers_config,
    load_diffusers_autoencoder_kl,
    load_diffusers_sd_unet,
    save_diffusers,
    sd_params_from_diffusers,
    sd_params_to_diffusers,
    sd_unet_from_diffusers_config,
)
from genjax.nn.unet import UNet, ddpm_cifar10, sinusoidal_embedding, unet_tiny
from genjax.nn.unet2d import UNet2DModel

__all__ = [
    "MLP",
    "AutoencoderKL",
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
    "UNet2DConditionModel",
    "UNet2DModel",
    "apply",
    "array_apply",
    "autoencoder_kl_from_diffusers_config",
    "convert_diffusers_state_dict",
    "ddpm_cifar10",
    "inception_features",
    "inception_outputs",
    "load_diffusers_autoencoder_kl",
    "load_diffusers_ddpm_unet",
    "load_diffusers_sd_unet",
    "load_diffusers_unet",
    "load_inception_params",
    "save_diffusers",
    "sd15_unet",
    "sd15_vae",
    "sd_params_from_diffusers",
    "sd_params_to_diffusers",
    "sd_unet_from_diffusers_config",
    "sd_unet_tiny",
    "sd_vae_tiny",
    "sinusoidal_embedding",
    "unet2d_from_diffusers_config",
    "unet_from_diffusers_config",
    "unet_tiny",
]
