"""The two entry points the rest of jaxray uses: load ImageNet weights, and how to feed them.

config.model.pretrained:
  source: "" (random init), "torchvision_resnet18", "keras_vgg16" or "keras_mobilenet"
  path:   optional local file: the original download (.pth / .h5) or an already converted .npz.
          Without it, the converted cache is used, filled by a download on first use.
"""

import os

from absl import logging
from flax import nnx

from jaxray.weights import convert
from jaxray.weights import hub

# The input normalisation each source's weights were trained with, in the data config's format.
# Pretrained features are only meaningful on inputs normalised the same way.
_PREPROCESSING = {
    # torchvision: RGB in [0, 1], then per-channel ImageNet mean/std.
    "torchvision_resnet18": dict(kind="mean_std", mean=(0.485, 0.456, 0.406),
                                 std=(0.229, 0.224, 0.225)),
    # keras.applications.vgg16.preprocess_input: 0-255, RGB->BGR, minus the BGR ImageNet mean.
    "keras_vgg16": dict(kind="caffe"),
    # keras.applications.mobilenet.preprocess_input: 0-255 scaled to [-1, 1].
    "keras_mobilenet": dict(kind="inception"),
}


def preprocessing(source: str) -> dict | None:
  """The input normalisation `source`'s weights expect; None for "" (no pretrained weights)."""
  if not source:
    return None
  hub.get_source(source)  # a clear error for unknown names
  return dict(_PREPROCESSING[source])


def load_pretrained(model: nnx.Module, cfg_model) -> None:
  """Overwrites `model.backbone` in place with the weights named by cfg_model.pretrained.

  Does nothing when no source is set. The classification head is never touched (it is task
  specific); the ImageNet top of the file is loaded only into a backbone built with
  model.include_top.

  Raises:
    ValueError: unknown source, or a source for another architecture than model.name.
    hub.WeightsUnavailableError: not cached, no path given and no network; says what to do.
    convert.WeightsMismatchError: the file does not fit the model; names the file and key.
  """
  pretrained = cfg_model.pretrained
  name = pretrained.source
  if not name:
    return
  source = hub.get_source(name)
  if cfg_model.name != source.model_name:
    raise ValueError(f"model.pretrained.source={name!r} holds {source.model_name} weights, but "
                     f"model.name is {cfg_model.name!r}")
  path = pretrained.path
  if path:
    path = os.path.expanduser(path)
    if not os.path.isfile(path):
      raise FileNotFoundError(f"model.pretrained.path={path!r} does not exist")
    if path.endswith(".npz"):
      weights, _ = convert.load_npz(path)
    else:
      weights, _ = hub.read_original(source, path)
    origin = path
  else:
    origin, weights = hub.fetch(source, include_top=bool(cfg_model.include_top))
  backbone = getattr(model, "backbone", model)
  convert.assign(backbone, weights, origin)
  logging.info("Loaded %s weights from %s", name, origin)
