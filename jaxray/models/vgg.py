"""VGG16 in Flax NNX, layer for layer `keras.applications.VGG16`.

Report 004 fine-tunes the Keras VGG16 convolutional base, so the attribute names are the Keras
layer names (block1_conv1 ... block5_conv3, fc1, fc2, predictions): a Keras `.h5` weight file
then maps one to one onto this module. Keras' "same" padding of a stride-1 3x3 conv is one pixel
on every side, which is written out explicitly here.
"""

import jax
from flax import nnx

from jaxray.models import layers
from jaxray.models import register_backbone

# (width, number of 3x3 convs) per block; every block ends in a 2x2/2 max-pool.
VGG16_BLOCKS = ((64, 2), (128, 2), (256, 3), (512, 3), (512, 3))


def keras_conv(in_ch, out_ch, kernel, *, dtype, rngs):
  """keras.layers.Conv2D(padding="same") with its defaults: glorot_uniform kernel, zero bias."""
  pad = kernel // 2
  return nnx.Conv(in_ch, out_ch, (kernel, kernel), padding=((pad, pad), (pad, pad)),
                  kernel_init=jax.nn.initializers.glorot_uniform(), dtype=dtype, rngs=rngs)


class VGG16(nnx.Module):
  """keras.applications.VGG16.

  With `include_top` the network ends like the ImageNet model: flatten, fc1 and fc2 (4096,
  ReLU) and `predictions`, returned as logits (Keras applies the softmax inside the layer; here
  it is left to the loss). The flatten ties fc1 to the input size, hence `image_size`. Without
  the top it returns the last pooled feature map, (N, image_size//32, image_size//32, 512).
  """

  def __init__(self, include_top: bool = False, image_size: int = 224, num_classes: int = 1000,
               in_channels: int = 3, *, dtype=None, rngs: nnx.Rngs):
    self.include_top = include_top
    blocks = []
    width_in = in_channels
    for block, (width, convs) in enumerate(VGG16_BLOCKS, start=1):
      names = tuple(f"block{block}_conv{index}" for index in range(1, convs + 1))
      for name in names:
        setattr(self, name, keras_conv(width_in, width, 3, dtype=dtype, rngs=rngs))
        width_in = width
      blocks.append(names)
    self.blocks = tuple(blocks)  # conv layer names, block by block
    side = image_size // 2 ** len(VGG16_BLOCKS)
    if side < 1:
      raise ValueError(f"VGG16 needs input.image_size >= 32 (five 2x2 pools), got {image_size}")
    self.flat_features = side * side * width_in  # the last pooled map, flattened
    if include_top:
      self.fc1 = layers.keras_dense(self.flat_features, 4096, dtype=dtype, rngs=rngs)
      self.fc2 = layers.keras_dense(4096, 4096, dtype=dtype, rngs=rngs)
      self.predictions = layers.keras_dense(4096, num_classes, dtype=dtype, rngs=rngs)
      self.num_features = num_classes
    else:
      self.num_features = self.flat_features

  def conv_features(self, x, train: bool = False):
    """The last convolutional layer's output, block5_conv3 after its ReLU (the layer Keras'
    Grad-CAM example explains): (N, image_size//16, image_size//16, 512), before block5_pool."""
    del train  # No BatchNorm nor dropout: train and inference are the same function.
    for block, names in enumerate(self.blocks):
      if block:
        x = _max_pool_2x2(x)
      for name in names:
        x = nnx.relu(getattr(self, name)(x))
    return x

  def pool(self, feature_map):
    """block5_conv3's map -> what the network returns: block5_pool's map, or the top's logits."""
    x = _max_pool_2x2(feature_map)
    if not self.include_top:
      return x
    x = x.reshape(x.shape[0], -1)  # NHWC flattened in H, W, C order, as keras Flatten does.
    x = nnx.relu(self.fc1(x))
    x = nnx.relu(self.fc2(x))
    return self.predictions(x)

  def __call__(self, x, train: bool = False):
    return self.pool(self.conv_features(x, train))


def _max_pool_2x2(x):
  """The 2x2/2 max-pool that ends every block (block1_pool ... block5_pool)."""
  return nnx.max_pool(x, (2, 2), strides=(2, 2), padding="VALID")


@register_backbone("vgg16")
def _vgg16(cfg, image_size, in_channels, dtype, rngs, ops):
  """The Keras convolutional base (no top) unless model.include_top is set. The runtime's CPU
  kernels were written and measured for ResNet: this network keeps the plain operations."""
  del ops
  net = VGG16(include_top=cfg.include_top, image_size=image_size,
              in_channels=in_channels, dtype=dtype, rngs=rngs)
  return net, net.num_features
