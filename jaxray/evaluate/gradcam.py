"""Grad-CAM (Selvaraju et al., 2017): where in the image the network found its evidence.

For the class explained, the gradient of its score with respect to the backbone's last
convolutional map A (`backbone.conv_features`) is averaged over the map's positions, one weight
per channel; the map is the ReLU of the channels summed with those weights, upsampled to the
input image and scaled to [0, 1]. Only the positive part is kept: the regions that raise the
class score. The models stay architecture only: this module reaches them through
`conv_features` and `pool`, which every backbone exposes with
`backbone(x) == backbone.pool(backbone.conv_features(x))`.

The score explained is the logit, not the probability: a softmax saturates on confident
predictions and its gradient vanishes with it. For a sigmoid head (one logit, for class 1) class
1's score is that logit and class 0's its negation, the logit of "not class 1".
"""

import functools
import textwrap

import jax
import jax.numpy as jnp
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import ml_collections  # noqa: E402
import numpy as np  # noqa: E402
from flax import nnx  # noqa: E402
from PIL import Image  # noqa: E402

from jaxray.data import pipeline  # noqa: E402
from jaxray.train import steps  # noqa: E402

OVERLAY_ALPHA = 0.4  # weight of the heatmap's colour over the grayscale image


def heatmaps(graphdef, state, config: ml_collections.ConfigDict, images_uint8,
             class_index) -> np.ndarray:
  """Grad-CAM of `class_index` (B,) for `images_uint8` (B, S, S, 1), as the eval pipeline feeds
  them (S = input.image_size): (B, S, S) float32 in [0, 1], 1 at each image's peak, all zero
  where no position raises the class score.

  The model runs in inference mode (BatchNorm's running statistics, no dropout), merged from
  `state.params` and `state.batch_stats` as the eval step does. A state replicated over a mesh,
  of one process or several, is read from this process's first copy, so one process can call
  this alone. Compiles once per batch shape.
  """
  params, batch_stats = jax.tree.map(_local_copy, (state.params, state.batch_stats))
  images = np.asarray(images_uint8)
  size = config.input.image_size
  if images.ndim != 4 or images.shape[1:] != (size, size, 1):
    raise ValueError(f"Grad-CAM takes (B, {size}, {size}, 1) uint8 images as the eval pipeline "
                     f"feeds them, got {images.shape}")
  return np.asarray(_heatmaps(graphdef, ml_collections.FrozenConfigDict(config), params,
                              batch_stats, images, np.asarray(class_index, np.int32)))


def model_inputs(examples, image_size: int) -> np.ndarray:
  """Stored examples ({"image": (H, W, 1) uint8}) as evaluation feeds them: (N, S, S, 1) uint8."""
  to_input = pipeline.ToModelInput(image_size)
  return np.stack([to_input.map_with_index(i, e)["image"] for i, e in enumerate(examples)])


def of_examples(run, state, examples, classes) -> np.ndarray:
  """Grad-CAM heatmaps (N, S, S) of `classes` on stored examples, under `state`."""
  size = run.config.input.image_size
  if not examples:
    return np.zeros((0, size, size), np.float32)
  return of_inputs(run, state, model_inputs(examples, size), classes)


def of_inputs(run, state, images, classes) -> np.ndarray:
  """Grad-CAM heatmaps (N, S, S) of `classes` on model inputs (N, S, S, 1) uint8, in batches of
  one shape (the last padded), so it compiles once."""
  classes = np.asarray(classes, np.int32)
  batch = min(len(images), run.eval_batch_size)
  padding = -len(images) % batch
  padded = np.concatenate([images, np.zeros((padding,) + images.shape[1:], images.dtype)])
  classes = np.concatenate([classes, np.zeros(padding, np.int32)])
  maps = [heatmaps(run.graphdef, state, run.config, padded[start:start + batch],
                   classes[start:start + batch])
          for start in range(0, len(padded), batch)]
  return np.concatenate(maps)[:len(images)]


def _local_copy(x):
  return x.addressable_data(0) if isinstance(x, jax.Array) else x


@functools.partial(jax.jit, static_argnames=("graphdef", "config"))
def _heatmaps(graphdef, config, params, batch_stats, images_uint8, class_index):
  model = nnx.merge(graphdef, params, batch_stats)
  features = model.backbone.conv_features(steps.model_inputs(images_uint8, config), train=False)

  def class_score(feature_map):
    # Each example's score depends on its own map only (inference mode), so the gradient of
    # the sum is every example's own gradient.
    logits = model.head(model.backbone.pool(feature_map), train=False).astype(jnp.float32)
    return jnp.sum(target_scores(logits, class_index, config.model.loss))

  gradients = jax.grad(class_score)(features)
  weights = jnp.mean(gradients.astype(jnp.float32), axis=(1, 2))  # (B, C)
  cam = nnx.relu(jnp.einsum("bhwc,bc->bhw", features.astype(jnp.float32), weights))
  size = config.input.image_size
  cam = jax.image.resize(cam, (cam.shape[0], size, size), method="bilinear")
  return normalise(cam)


def target_scores(logits, class_index, loss: str):
  """The score Grad-CAM explains, per example: the class's logit (softmax head), or for a
  sigmoid head's one logit (class 1), the logit for class 1 and its negation for class 0. With
  several sigmoid outputs (a multi-label head), the finding's own logit."""
  if loss == "softmax" or (loss == "sigmoid" and logits.shape[1] > 1):
    return jnp.take_along_axis(logits, class_index[:, None], axis=1)[:, 0]
  if loss == "sigmoid":
    return jnp.where(class_index == 1, logits[:, 0], -logits[:, 0])
  raise ValueError(f"model.loss must be 'softmax' or 'sigmoid', got {loss!r}")


def normalise(maps):
  """(B, H, W) non-negative maps divided by each one's maximum; an all-zero map stays zero."""
  peak = jnp.max(maps, axis=(1, 2), keepdims=True)
  return jnp.where(peak > 0, maps / jnp.where(peak > 0, peak, 1.0), 0.0)


def overlay(image_uint8_2d, heatmap, alpha: float = OVERLAY_ALPHA) -> np.ndarray:
  """A grayscale image with `heatmap` in the jet colormap over it: (H, W, 3) float RGB in
  [0, 1] at the image's size.

  A heatmap of another size (the model's S x S against the stored image) is stretched to the
  image bilinearly: the pipeline squeezed the whole image to S x S, so stretching back maps each
  heatmap position onto the pixels it came from.
  """
  image = np.squeeze(np.asarray(image_uint8_2d)).astype(np.float32) / 255.0
  heat = np.asarray(heatmap, np.float32)
  if heat.shape != image.shape:
    heat = np.asarray(Image.fromarray(heat).resize(
        (image.shape[1], image.shape[0]), Image.Resampling.BILINEAR))
  colour = plt.get_cmap("jet")(np.clip(heat, 0.0, 1.0))[..., :3]
  return np.clip((1.0 - alpha) * image[..., None] + alpha * colour, 0.0, 1.0)  # float rounding


def save_overlay(image_uint8_2d, heatmap, path, title: str = "") -> None:
  """One image with its Grad-CAM overlaid, as a PNG, with a colour bar for the map's scale."""
  fig, ax = plt.subplots(figsize=(5, 4.2), layout="constrained")
  ax.imshow(overlay(image_uint8_2d, heatmap))
  ax.axis("off")
  if title:
    ax.set_title(textwrap.fill(title, 48), fontsize=9)
  bar = fig.colorbar(plt.cm.ScalarMappable(cmap="jet"), ax=ax, shrink=0.8)
  bar.set_label("Grad-CAM (1 = the image's peak)", fontsize=8)
  fig.savefig(path, dpi=110)
  plt.close(fig)
