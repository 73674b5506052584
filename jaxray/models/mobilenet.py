"""MobileNet v1 (alpha 1.0, depth multiplier 1) in Flax NNX, exactly `keras.applications.MobileNet`.

Attribute names are the Keras layer names (conv1, conv1_bn, conv_dw_1, conv_dw_1_bn, conv_pw_1,
..., conv_preds) so that a Keras `.h5` weight file maps one to one.

Padding follows the Keras code exactly, because a one-pixel shift changes every feature map:
the strided depthwise convs are ZeroPadding2D(((0, 1), (0, 1))) then "valid" (one extra row and
column at the bottom/right only, whatever the input size), while the stem conv1 is a stride-2
"same" conv (Keras 2.4+ and Keras 3; the 2018 keras-applications code zero-padded it like the
depthwise convs). The two agree on even sizes, such as 224, but not on odd ones: "same" then
pads one pixel on every side.
"""

import jax
import jax.numpy as jnp
from flax import nnx

from jaxray.models import register_backbone

# keras.layers.BatchNormalization defaults (Keras and Flax both use momentum for the old value).
_BN = dict(epsilon=1e-3, momentum=0.99)
_GLOROT = jax.nn.initializers.glorot_uniform()
# Keras pads the strided depthwise convs by one pixel at the bottom and right only
# (ZeroPadding2D + "valid"); its stride-1 "same" 3x3 convs pad one pixel on every side.
_PAD_BOTTOM_RIGHT = ((0, 1), (0, 1))
_PAD_SAME_3X3 = ((1, 1), (1, 1))

# (pointwise output width, depthwise stride) of blocks conv_dw_1/conv_pw_1 ... conv_dw_13/conv_pw_13.
MOBILENET_BLOCKS = ((64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2), (512, 1), (512, 1),
                    (512, 1), (512, 1), (512, 1), (1024, 2), (1024, 1))


def _relu6(x):
  return jnp.clip(x, 0.0, 6.0)


class MobileNet(nnx.Module):
  """keras.applications.MobileNet(alpha=1.0, depth_multiplier=1).

  Without the top it returns the last feature map, (N, s, s, 1024) with s = output_size(image
  size), which is image_size // 32 for sizes such as 224 (7).
  With `include_top` it ends like the ImageNet model: global average pool, dropout 1e-3, the
  1x1 `conv_preds` conv and a flatten, returned as logits (the softmax is left to the loss).

  Dropout only runs when `train` and a `dropout_key` are both given: `Classifier` does not pass
  keys to backbones, and at rate 1e-3 the difference is negligible.
  """

  def __init__(self, include_top: bool = False, num_classes: int = 1000, in_channels: int = 3,
               dropout: float = 1e-3, *, dtype=None, rngs: nnx.Rngs):
    self.include_top = include_top
    # "SAME" here is TF's (and Keras') "same": for stride 2 it pads (0, 1) on even sizes and
    # (1, 1) on odd ones.
    self.conv1 = nnx.Conv(in_channels, 32, (3, 3), strides=2, padding="SAME", use_bias=False,
                          kernel_init=_GLOROT, dtype=dtype, rngs=rngs)
    self.conv1_bn = nnx.BatchNorm(32, dtype=dtype, rngs=rngs, **_BN)
    width_in = 32
    for block, (width, stride) in enumerate(MOBILENET_BLOCKS, start=1):
      # Depthwise: one 3x3 filter per channel (feature_group_count = channels).
      setattr(self, f"conv_dw_{block}", nnx.Conv(
          width_in, width_in, (3, 3), strides=stride, use_bias=False,
          padding=_PAD_SAME_3X3 if stride == 1 else _PAD_BOTTOM_RIGHT,
          feature_group_count=width_in, kernel_init=_GLOROT, dtype=dtype, rngs=rngs))
      setattr(self, f"conv_dw_{block}_bn", nnx.BatchNorm(width_in, dtype=dtype, rngs=rngs, **_BN))
      setattr(self, f"conv_pw_{block}", nnx.Conv(
          width_in, width, (1, 1), padding="VALID", use_bias=False, kernel_init=_GLOROT,
          dtype=dtype, rngs=rngs))
      setattr(self, f"conv_pw_{block}_bn", nnx.BatchNorm(width, dtype=dtype, rngs=rngs, **_BN))
      width_in = width
    if include_top:
      self.dropout = nnx.Dropout(dropout)
      self.conv_preds = nnx.Conv(width_in, num_classes, (1, 1), padding="VALID",
                                 kernel_init=_GLOROT, dtype=dtype, rngs=rngs)
      self.num_features = num_classes
    self.width = width_in

  def conv_features(self, x, train: bool = False):
    """The last pointwise block's output, conv_pw_13_relu: (N, s, s, 1024)."""
    x = _relu6(self.conv1_bn(self.conv1(x), use_running_average=not train))
    for block in range(1, len(MOBILENET_BLOCKS) + 1):
      x = getattr(self, f"conv_dw_{block}")(x)
      x = _relu6(getattr(self, f"conv_dw_{block}_bn")(x, use_running_average=not train))
      x = getattr(self, f"conv_pw_{block}")(x)
      x = _relu6(getattr(self, f"conv_pw_{block}_bn")(x, use_running_average=not train))
    return x

  def pool(self, feature_map, train: bool = False, dropout_key=None):
    """conv_pw_13_relu's map -> what the network returns: the map itself without the top (the
    head flattens it), or the top's logits."""
    if not self.include_top:
      return feature_map
    x = jnp.mean(feature_map, axis=(1, 2), keepdims=True)  # GlobalAveragePooling2D(keepdims=True)
    x = self.dropout(x, deterministic=not (train and dropout_key is not None), rngs=dropout_key)
    x = self.conv_preds(x)
    return x.reshape(x.shape[0], -1)

  def __call__(self, x, train: bool = False, dropout_key=None):
    return self.pool(self.conv_features(x, train), train, dropout_key)


@register_backbone("mobilenet")
def _mobilenet(cfg, image_size, in_channels, dtype, rngs, ops):
  """The Keras convolutional base (no top) unless model.include_top is set. The runtime's CPU
  kernels were written and measured for ResNet: this network keeps the plain operations."""
  del ops
  include_top = cfg.include_top
  if output_size(image_size) < 1:
    raise ValueError(f"MobileNet needs input.image_size >= 32 (five stride-2 convs), got "
                     f"{image_size}")
  net = MobileNet(include_top=include_top, in_channels=in_channels, dtype=dtype, rngs=rngs)
  if include_top:
    return net, net.num_features
  return net, output_size(image_size) ** 2 * net.width


def output_size(image_size: int) -> int:
  """Side of the final feature map: ceil(s/2) for the "same" stem, then floor(s/2) per stride.

  Equal to image_size // 32 for even sizes up to the last stride, e.g. 224 -> 7.
  """
  side = -(-image_size // 2)
  for _, stride in MOBILENET_BLOCKS:
    if stride == 2:
      side //= 2
  return side
