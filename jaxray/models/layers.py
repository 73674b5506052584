"""Layers shared by the model definitions, initialised the way the reference frameworks do.

Runs "from scratch" must start from the same distribution as the PyTorch/Keras runs they
reproduce, so the initialisers below are the references' defaults, not Flax's.
"""

import math

import jax
from flax import nnx

# torchvision ResNet: kaiming_normal_(mode="fan_out", nonlinearity="relu") on every conv.
torch_conv_init = jax.nn.initializers.variance_scaling(2.0, "fan_out", "normal")
# nn.Conv2d as constructed: kaiming_uniform_(a=sqrt(5)), i.e. U(-1/sqrt(fan_in), 1/sqrt(fan_in))
# (variance_scaling's uniform bound is sqrt(3 * scale / fan_in)).
# Networks that never re-initialise their convolutions (kuangliu's CIFAR ResNet, which MedMNIST
# v2's ResNet-18 (28) is) start from this one.
torch_default_conv_init = jax.nn.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform")

CONV_INITS = {"torchvision": torch_conv_init, "torch_default": torch_default_conv_init}


def conv_init(name: str):
  """`model.conv_init` -> the initializer of every convolution kernel of a ResNet."""
  try:
    return CONV_INITS[name]
  except KeyError:
    raise ValueError(f"model.conv_init must be one of {sorted(CONV_INITS)}, got {name!r}") from None


def torch_linear(in_features: int, out_features: int, *, dtype=None, rngs: nnx.Rngs) -> nnx.Linear:
  """nn.Linear with PyTorch's default init: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weight and bias."""
  bound = 1.0 / math.sqrt(in_features)
  init = jax.nn.initializers.uniform(2 * bound)

  def shifted(key, shape, dtype=jax.numpy.float32):
    return init(key, shape, dtype) - bound

  return nnx.Linear(in_features, out_features, kernel_init=shifted, bias_init=shifted,
                    dtype=dtype, rngs=rngs)


def keras_dense(in_features: int, out_features: int, *, dtype=None, rngs: nnx.Rngs) -> nnx.Linear:
  """keras.layers.Dense defaults: glorot_uniform kernel, zero bias."""
  return nnx.Linear(in_features, out_features, kernel_init=jax.nn.initializers.glorot_uniform(),
                    dtype=dtype, rngs=rngs)
