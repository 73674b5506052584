"""A backbone followed by a classification head: the shape of every run in the reports.

Report 000 replaces torchvision's `fc` by a 2-way Linear; report 004 puts
Flatten -> (Dense 256 ReLU -> Dropout) x k -> Dense on a Keras convolutional base. Both are a
`Classifier` whose head has zero or more hidden layers. The head's input is the backbone output
flattened, and `features` (the input of the last Dense) is what the t-SNE plots show.
"""

from typing import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from jaxray.models import layers


class MLPHead(nnx.Module):
  """Flatten -> [Dense(hidden) ReLU Dropout]* -> Dense(num_outputs)."""

  def __init__(self, in_features: int, num_outputs: int, hidden: Sequence[int] = (),
               dropout: Sequence[float] = (), init: str = "torch", *, dtype=None,
               rngs: nnx.Rngs):
    if len(dropout) not in (0, len(hidden)):
      raise ValueError(f"model.head.dropout needs one rate per hidden layer {tuple(hidden)}, "
                       f"got {tuple(dropout)}")
    dense = {"torch": layers.torch_linear, "keras": layers.keras_dense}[init]
    rates = tuple(dropout) or (0.0,) * len(hidden)
    self.hidden = nnx.List([])
    self.dropout = nnx.List([])
    width = in_features
    for size, rate in zip(hidden, rates):
      self.hidden.append(dense(width, size, dtype=dtype, rngs=rngs))
      self.dropout.append(nnx.Dropout(rate))
      width = size
    self.out = dense(width, num_outputs, dtype=dtype, rngs=rngs)

  def features(self, x, train: bool = False, dropout_key=None):
    x = x.reshape(x.shape[0], -1)
    keys = (jax.random.split(dropout_key, len(self.hidden)) if dropout_key is not None
            else [None] * len(self.hidden))
    for dense, dropout, key in zip(self.hidden, self.dropout, keys):
      x = nnx.relu(dense(x))
      x = dropout(x, deterministic=not train, rngs=key)
    return x

  def __call__(self, x, train: bool = False, dropout_key=None):
    return self.out(self.features(x, train, dropout_key))


class Classifier(nnx.Module):
  """backbone -> head. `train` switches BatchNorm to batch statistics and enables dropout.

  `return_features` also returns the penultimate-layer features (the input of the output
  Dense), which the t-SNE plots show.
  """

  def __init__(self, backbone: nnx.Module, head: MLPHead, freeze_backbone: bool = False):
    self.backbone = backbone
    self.head = head
    self.freeze_backbone = freeze_backbone

  def __call__(self, x, train: bool = False, dropout_key=None, return_features: bool = False):
    # A frozen base runs in inference mode (as Keras does for `trainable=False`): its BatchNorm
    # statistics stay exactly as loaded.
    features = self.head.features(self.backbone(x, train and not self.freeze_backbone), train,
                                  dropout_key)
    logits = self.head.out(features)
    return (logits, features) if return_features else logits
