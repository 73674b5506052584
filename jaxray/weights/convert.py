"""Maps reference-framework weights onto the Flax models, and loads them with full checking.

A converter turns a file's arrays into `Weights`: arrays keyed by the path of the matching
variable in the Flax model's nnx state (e.g. ("layer1", 0, "conv1", "kernel")), already in Flax
layout, each remembering the name it had in the file so that errors can point at it. `assign`
then checks the result against the model, every key and every shape, before touching the model:
a ResNet-34 file, a 7x7 stem into the CIFAR stem, or a Keras file without the top into a model
with one all fail with the file and the key named, instead of half-loading.

Layout changes:
  PyTorch conv weight (out, in, kh, kw)  -> Flax kernel (kh, kw, in, out)
  PyTorch linear weight (out, in)         -> Flax kernel (in, out)
  PyTorch BatchNorm weight, bias, running_mean, running_var -> scale, bias, mean, var
  Keras Conv2D/Dense kernel               -> unchanged (already HWIO / (in, out))
  Keras DepthwiseConv2D kernel (kh, kw, in, 1) -> Flax grouped conv kernel (kh, kw, 1, in)
  Keras BatchNormalization gamma, beta, moving_mean, moving_variance -> scale, bias, mean, var
"""

import dataclasses
import re
from typing import Iterable, Mapping

import jax.numpy as jnp
import numpy as np
from flax import nnx

Path = tuple[str | int, ...]


class WeightsMismatchError(ValueError):
  """A weight file does not fit the model: wrong architecture, missing key or wrong shape."""


@dataclasses.dataclass
class Weights:
  """Arrays keyed by Flax state path, plus the name each one has in the source file."""
  arrays: dict[Path, np.ndarray] = dataclasses.field(default_factory=dict)
  names: dict[Path, str] = dataclasses.field(default_factory=dict)
  # Layers that only the classification top has: skipped when the model is built without one.
  top_layers: frozenset[str] = frozenset()

  def add(self, path: Path, array: np.ndarray, name: str):
    if path in self.arrays:
      raise WeightsMismatchError(f"{name!r} and {self.names[path]!r} both map to "
                                 f"{format_path(path)}")
    self.arrays[path] = np.asarray(array)
    self.names[path] = name

  @property
  def has_top(self) -> bool:
    return any(path[0] in self.top_layers for path in self.arrays)


def format_path(path: Path) -> str:
  return "/".join(str(p) for p in path)


def parse_path(text: str) -> Path:
  return tuple(int(p) if p.isdigit() else p for p in text.split("/"))


# ---------------------------------------------------------------------------------------------
# torchvision ResNet


TORCHVISION_RESNET_TOP = frozenset({"fc"})
_TORCH_BN_NAMES = {"weight": "scale", "bias": "bias", "running_mean": "mean",
                   "running_var": "var"}


def from_torchvision_resnet(state_dict: Mapping[str, np.ndarray]) -> Weights:
  """A torchvision ResNet state dict (e.g. resnet18-f37072fd.pth) as `jaxray.models.resnet`."""
  weights = Weights(top_layers=TORCHVISION_RESNET_TOP)
  for key, array in state_dict.items():
    parts = key.split(".")
    *module, leaf = parts
    if leaf == "num_batches_tracked":
      continue  # only used by torch when momentum=None
    # torchvision's shortcut is Sequential(conv, bn); ours names its two members.
    if len(module) >= 2 and module[-2] == "downsample":
      module[-1] = {"0": "conv", "1": "bn"}.get(module[-1], module[-1])
    path = tuple(int(p) if p.isdigit() else p for p in module)
    array = np.asarray(array)
    if leaf == "weight" and array.ndim == 4:
      weights.add(path + ("kernel",), array.transpose(2, 3, 1, 0), key)
    elif leaf == "weight" and array.ndim == 2:
      weights.add(path + ("kernel",), array.T, key)
    elif leaf in _TORCH_BN_NAMES and array.ndim == 1:
      # BatchNorm weight -> scale; conv/linear and BatchNorm biases are both "bias".
      weights.add(path + (_TORCH_BN_NAMES[leaf],), array, key)
    else:
      raise WeightsMismatchError(f"unexpected key {key!r} with shape {array.shape} "
                                 "(not a torchvision ResNet state dict?)")
  return weights


# ---------------------------------------------------------------------------------------------
# Keras applications (legacy .h5 layout, one list of arrays per layer)


KERAS_VGG16_TOP = frozenset({"fc1", "fc2", "predictions"})
KERAS_MOBILENET_TOP = frozenset({"conv_preds"})
_KERAS_BN = ("scale", "bias", "mean", "var")  # gamma, beta, moving_mean, moving_variance
_VGG16_LAYER = re.compile(r"block[1-5]_conv[1-3]|fc1|fc2|predictions")
_MOBILENET_CONV = re.compile(r"conv1|conv_pw_\d+|conv_preds")
_MOBILENET_DEPTHWISE = re.compile(r"conv_dw_\d+")
_MOBILENET_BN = re.compile(r"conv1_bn|conv_(dw|pw)_\d+_bn")


def _keras_dense_or_conv(weights: Weights, layer: str, arrays: list[np.ndarray]):
  names = ("kernel", "bias")[: len(arrays)]
  if not 1 <= len(arrays) <= 2:
    raise WeightsMismatchError(f"layer {layer!r} has {len(arrays)} weights, expected kernel "
                               "and optionally bias")
  for index, (name, array) in enumerate(zip(names, arrays)):
    weights.add((layer, name), array, f"{layer}[{index}]")


def from_keras_vgg16(layers: Mapping[str, list[np.ndarray]]) -> Weights:
  """keras.applications.VGG16 weights (from `keras_h5.read_weights`) as `jaxray.models.vgg`."""
  weights = Weights(top_layers=KERAS_VGG16_TOP)
  for layer, arrays in layers.items():
    if not _VGG16_LAYER.fullmatch(layer):
      raise WeightsMismatchError(f"unexpected layer {layer!r} (not a Keras VGG16 weight file?)")
    _keras_dense_or_conv(weights, layer, arrays)
  return weights


def from_keras_mobilenet(layers: Mapping[str, list[np.ndarray]]) -> Weights:
  """keras.applications.MobileNet weights as `jaxray.models.mobilenet`."""
  weights = Weights(top_layers=KERAS_MOBILENET_TOP)
  for layer, arrays in layers.items():
    if _MOBILENET_BN.fullmatch(layer):
      if len(arrays) != 4:
        raise WeightsMismatchError(f"BatchNormalization layer {layer!r} has {len(arrays)} "
                                   "weights, expected gamma, beta, moving_mean, moving_variance")
      for index, (name, array) in enumerate(zip(_KERAS_BN, arrays)):
        weights.add((layer, name), array, f"{layer}[{index}]")
    elif _MOBILENET_DEPTHWISE.fullmatch(layer):
      kernel = arrays[0] if len(arrays) == 1 else None
      if kernel is None or kernel.ndim != 4 or kernel.shape[3] != 1:
        raise WeightsMismatchError(f"DepthwiseConv2D layer {layer!r} should hold one "
                                   "(kh, kw, channels, 1) kernel, got "
                                   f"{[np.shape(a) for a in arrays]}")
      weights.add((layer, "kernel"), kernel.transpose(0, 1, 3, 2), f"{layer}[0]")
    elif _MOBILENET_CONV.fullmatch(layer):
      _keras_dense_or_conv(weights, layer, arrays)
    else:
      raise WeightsMismatchError(f"unexpected layer {layer!r} (not a Keras MobileNet v1 "
                                 "weight file?)")
  return weights


# ---------------------------------------------------------------------------------------------
# Loading into a model


def _nested(flat: Mapping[Path, object]) -> dict:
  tree = {}
  for path, value in flat.items():
    node = tree
    for key in path[:-1]:
      node = node.setdefault(key, {})
    node[path[-1]] = value
  return tree


def _listing(paths: Iterable[Path], limit: int = 5) -> str:
  paths = sorted(paths, key=format_path)
  shown = ", ".join(format_path(p) for p in paths[:limit])
  return shown + (f", ... ({len(paths)} in all)" if len(paths) > limit else "")


def assign(module: nnx.Module, weights: Weights, origin: str) -> None:
  """Sets every parameter and BatchNorm statistic of `module` from `weights`, or raises.

  The whole file is checked before anything is written, so a failure leaves `module` as it was.
  Layers of the classification top (`weights.top_layers`) are skipped when `module` has none.

  Raises:
    WeightsMismatchError: naming `origin` and the first offending key.
  """
  state = nnx.state(module, nnx.Any(nnx.Param, nnx.BatchStat))
  expected = dict(nnx.to_flat_state(state))
  missing = [p for p in expected if p not in weights.arrays]
  if missing:
    has_top = any(p[0] in weights.top_layers for p in expected)
    hint = (" The model has a classification top but the file has none: use the file with the "
            "top, or build the model without it (model.include_top=False)."
            if has_top and not weights.has_top else "")
    raise WeightsMismatchError(f"{origin}: no weights for {_listing(missing)} of the model."
                               f"{hint}")
  unexpected = [p for p in weights.arrays if p not in expected and p[0] not in weights.top_layers]
  if unexpected:
    raise WeightsMismatchError(
        f"{origin}: the model has no variable for "
        + ", ".join(f"{weights.names[p]!r} (-> {format_path(p)})" for p in unexpected[:5])
        + (f", ... ({len(unexpected)} in all)" if len(unexpected) > 5 else "")
        + ": the file is for a different architecture")
  values = {}
  for path, variable in expected.items():
    array = weights.arrays[path]
    if array.shape != variable.shape:
      raise WeightsMismatchError(
          f"{origin}: {weights.names[path]!r} has shape {array.shape} in Flax layout but the "
          f"model's {format_path(path)} has shape {variable.shape}")
    if not np.issubdtype(array.dtype, np.floating):
      raise WeightsMismatchError(f"{origin}: {weights.names[path]!r} has dtype {array.dtype}, "
                                 "expected floating point")
    values[path] = jnp.asarray(array, dtype=variable.dtype)
  nnx.replace_by_pure_dict(state, _nested(values))
  nnx.update(module, state)


# ---------------------------------------------------------------------------------------------
# Converted-weights files (the cache): one .npz, keys are Flax paths


_META_KEY = "__jaxray_meta__"


def save_npz(path: str, weights: Weights, meta: str) -> None:
  """Writes converted weights; `meta` (JSON text) records where they came from."""
  arrays = {format_path(p): a for p, a in weights.arrays.items()}
  names = {f"__name__/{format_path(p)}": np.array(n) for p, n in weights.names.items()}
  with open(path, "wb") as f:
    np.savez(f, **arrays, **names, **{_META_KEY: np.array(meta)},
             __top_layers__=np.array(sorted(weights.top_layers), dtype=str))


def load_npz(path: str) -> tuple[Weights, str]:
  """Reads `save_npz` output (never unpickles: allow_pickle=False)."""
  with np.load(path, allow_pickle=False) as data:
    weights = Weights(top_layers=frozenset(str(s) for s in data["__top_layers__"]))
    for key in data.files:
      if key in (_META_KEY, "__top_layers__") or key.startswith("__name__/"):
        continue
      name_key = f"__name__/{key}"
      name = str(data[name_key]) if name_key in data.files else key
      weights.add(parse_path(key), data[key], name)
    meta = str(data[_META_KEY]) if _META_KEY in data.files else "{}"
  return weights, meta
