"""Model registry: builds a `Classifier` from the `config.model` section of an experiment.

Backbones register a constructor that takes the input shape and returns the module and the size
of its flattened output, so heads never need to know which backbone they sit on.
"""

from typing import Callable

import jax.numpy as jnp
from flax import nnx
import ml_collections

from jaxray import ops as ops_lib
from jaxray.models import resnet
from jaxray.models.classifier import Classifier, MLPHead

# name -> fn(model_config, image_size, in_channels, dtype, rngs, ops)
#   -> (backbone, flattened feature size)
BACKBONES: dict[str, Callable] = {}


def register_backbone(name: str):
  def wrap(fn):
    BACKBONES[name] = fn
    return fn
  return wrap


@register_backbone("resnet18")
def _resnet18(cfg, image_size, in_channels, dtype, rngs, ops):
  net = resnet.resnet18(stem=cfg.stem, in_channels=in_channels, conv_init=cfg.conv_init,
                        dtype=dtype, rngs=rngs, ops=ops)
  return net, net.num_features


@register_backbone("resnet34")
def _resnet34(cfg, image_size, in_channels, dtype, rngs, ops):
  net = resnet.resnet34(stem=cfg.stem, in_channels=in_channels, conv_init=cfg.conv_init,
                        dtype=dtype, rngs=rngs, ops=ops)
  return net, net.num_features


def compute_dtype(name: str):
  try:
    return {"float32": jnp.float32, "bfloat16": jnp.bfloat16}[name]
  except KeyError:
    raise ValueError(f"model.dtype must be 'float32' or 'bfloat16', got {name!r}") from None


def build_model(cfg: ml_collections.ConfigDict, num_outputs: int, image_size: int,
                seed: int, in_channels: int = 3, ops: ops_lib.Ops = ops_lib.PLAIN) -> Classifier:
  """The experiment's network, randomly initialised from `seed` (weights are loaded later).

  `in_channels` is what the input pipeline feeds (`input.channels`): 3 for the grayscale image
  replicated, as ImageNet weights expect; 1 where a paper's network takes the image as it is.
  `ops` are the kernels the run's `runtime` section chose (jaxray.ops.from_runtime of the resolved runtime record).
  """
  if cfg.name not in BACKBONES:
    raise ValueError(f"Unknown model.name {cfg.name!r}; available: {sorted(BACKBONES)}")
  dtype = compute_dtype(cfg.dtype)
  rngs = nnx.Rngs(params=seed)
  backbone, width = BACKBONES[cfg.name](cfg, image_size, in_channels, dtype, rngs, ops)
  head = MLPHead(width, num_outputs, hidden=tuple(cfg.head.hidden),
                 dropout=tuple(cfg.head.dropout), init=cfg.head.init, dtype=dtype, rngs=rngs)
  return Classifier(backbone, head, freeze_backbone=bool(cfg.freeze_backbone))


from jaxray.models import vgg, mobilenet  # noqa: registers backbones
