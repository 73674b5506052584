"""ResNet-18/34 in Flax NNX, layer for layer the torchvision architecture.

Attribute names follow torchvision's state-dict keys (conv1, bn1, layer1..layer4, downsample,
fc) so that ported ImageNet weights map one to one, and padding is explicit as in torchvision
(never "SAME", which pads asymmetrically for strided convs and would shift every feature map).

`ops` (jaxray/ops) supplies the convolution, the stem's max-pool and `store`, which marks the
activations a CPU run keeps in memory once; with `ops.PLAIN` they are lax's convolution,
nnx.max_pool and the identity.
"""

from typing import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from jaxray import ops as ops_lib
from jaxray.models import layers

# torchvision BatchNorm2d: eps 1e-5, running stats updated with momentum 0.1 (Flax: 0.9).
_BN = dict(epsilon=1e-5, momentum=0.9)


def conv(in_ch, out_ch, kernel, stride=1, padding=0, *, dtype, rngs, kernel_init, ops):
  return nnx.Conv(in_ch, out_ch, (kernel, kernel), strides=stride,
                  padding=((padding, padding), (padding, padding)), use_bias=False,
                  kernel_init=kernel_init, dtype=dtype, rngs=rngs,
                  conv_general_dilated=ops.conv_general_dilated)


def batch_norm(features, *, dtype, rngs):
  return nnx.BatchNorm(features, dtype=dtype, rngs=rngs, **_BN)


class Downsample(nnx.Module):
  """The 1x1 strided projection on the shortcut (torchvision's `downsample` Sequential)."""

  def __init__(self, in_ch, out_ch, stride, *, dtype, rngs, kernel_init, ops):
    self.conv = conv(in_ch, out_ch, 1, stride, dtype=dtype, rngs=rngs, kernel_init=kernel_init,
                     ops=ops)
    self.bn = batch_norm(out_ch, dtype=dtype, rngs=rngs)

  def __call__(self, x, train: bool):
    return self.bn(self.conv(x), use_running_average=not train)


class BasicBlock(nnx.Module):
  """Two 3x3 convs with an identity (or projected) shortcut."""

  def __init__(self, in_ch, out_ch, stride=1, *, dtype, rngs, kernel_init, ops):
    self.ops = ops
    self.conv1 = conv(in_ch, out_ch, 3, stride, 1, dtype=dtype, rngs=rngs,
                      kernel_init=kernel_init, ops=ops)
    self.bn1 = batch_norm(out_ch, dtype=dtype, rngs=rngs)
    self.conv2 = conv(out_ch, out_ch, 3, 1, 1, dtype=dtype, rngs=rngs, kernel_init=kernel_init,
                      ops=ops)
    self.bn2 = batch_norm(out_ch, dtype=dtype, rngs=rngs)
    needs_projection = stride != 1 or in_ch != out_ch
    self.downsample = (Downsample(in_ch, out_ch, stride, dtype=dtype, rngs=rngs,
                                  kernel_init=kernel_init, ops=ops)
                       if needs_projection else None)

  def __call__(self, x, train: bool):
    shortcut = x if self.downsample is None else self.downsample(x, train)
    y = self.ops.store(nnx.relu(self.bn1(self.conv1(x), use_running_average=not train)))
    y = self.bn2(self.conv2(y), use_running_average=not train)
    return self.ops.store(nnx.relu(y + shortcut))


class ResNet(nnx.Module):
  """torchvision ResNet with BasicBlocks.

  stem="imagenet" is torchvision's 7x7/2 conv + 3x3/2 max-pool; stem="cifar" is the 3x3/1 conv
  without max-pool used for 28-px inputs (MedMNIST's ResNet-18 (28)). With `num_classes` the
  model ends in torchvision's `fc` layer (the ImageNet head); without, it returns the 512-d
  pooled features for a separate classification head. `conv_init` names the convolutions'
  initializer (`layers.CONV_INITS`): torchvision's Kaiming-normal fan-out, or PyTorch's
  nn.Conv2d default for networks that keep it.
  """

  def __init__(self, stage_sizes: Sequence[int], num_classes: int | None = None,
               stem: str = "imagenet", in_channels: int = 3, conv_init: str = "torchvision", *,
               dtype=None, rngs: nnx.Rngs, ops: ops_lib.Ops = ops_lib.PLAIN):
    if stem not in ("imagenet", "cifar"):
      raise ValueError(f"model.stem must be 'imagenet' or 'cifar', got {stem!r}")
    self.stem = stem
    self.ops = ops
    kernel_init = layers.conv_init(conv_init)
    if stem == "imagenet":
      self.conv1 = conv(in_channels, 64, 7, 2, 3, dtype=dtype, rngs=rngs, kernel_init=kernel_init,
                        ops=ops)
    else:
      self.conv1 = conv(in_channels, 64, 3, 1, 1, dtype=dtype, rngs=rngs, kernel_init=kernel_init,
                        ops=ops)
    self.bn1 = batch_norm(64, dtype=dtype, rngs=rngs)
    widths = (64, 128, 256, 512)
    in_ch = 64
    for index, (width, blocks) in enumerate(zip(widths, stage_sizes)):
      stage = []
      for block in range(blocks):
        stride = 2 if (index > 0 and block == 0) else 1
        stage.append(BasicBlock(in_ch, width, stride, dtype=dtype, rngs=rngs,
                                kernel_init=kernel_init, ops=ops))
        in_ch = width
      setattr(self, f"layer{index + 1}", nnx.List(stage))
    self.num_features = in_ch
    self.fc = (layers.torch_linear(in_ch, num_classes, dtype=dtype, rngs=rngs)
               if num_classes else None)

  def conv_features(self, x, train: bool = False):
    """The last convolutional stage's output, layer4's (N, H/32, W/32, 512) map (H/8 for the
    cifar stem), before pooling."""
    x = self.ops.store(nnx.relu(self.bn1(self.conv1(x), use_running_average=not train)))
    if self.stem == "imagenet":
      x = self.ops.max_pool_3x3_s2(x)
    for stage in (self.layer1, self.layer2, self.layer3, self.layer4):
      for block in stage:
        x = block(x, train)
    return x

  def pool(self, feature_map):
    """layer4's map -> what the network returns: pooled features, or `fc`'s logits."""
    x = jnp.mean(feature_map, axis=(1, 2))  # adaptive average pool to 1x1, then flatten
    return self.fc(x) if self.fc is not None else x

  def __call__(self, x, train: bool = False):
    return self.pool(self.conv_features(x, train))


def resnet18(**kwargs) -> ResNet:
  return ResNet((2, 2, 2, 2), **kwargs)


def resnet34(**kwargs) -> ResNet:
  return ResNet((3, 4, 6, 3), **kwargs)
