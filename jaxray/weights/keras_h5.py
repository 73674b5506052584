"""Reads Keras legacy HDF5 weight files (the `keras.applications` downloads) into numpy.

The layout, written by Keras 2's `model.save_weights("x.h5")` and used by every
keras.applications download:
  root attrs: layer_names (the model's layers in order), backend, keras_version
  /<layer>    attr weight_names, e.g. ["conv1_bn/gamma:0", "conv1_bn/beta:0", ...]
  /<layer>/<weight name>  the array
A full `model.save("x.h5")` nests the same thing under /model_weights.

Weights are returned per layer in `weight_names` order, which is the order of the layer's
`get_weights()` (Conv2D: kernel, bias; BatchNormalization: gamma, beta, moving_mean,
moving_variance). The order, not the names, is what Keras itself relies on when it loads these
files, and the oldest files use other names (VGG16's are "block1_conv1_W_1:0").
"""

import os

import h5py
import numpy as np


def _text(values) -> list[str]:
  """An HDF5 string-array attribute (bytes or str, fixed or variable length) as a str list."""
  return [v.decode("utf8") if isinstance(v, bytes) else str(v) for v in np.asarray(values).ravel()]


def _attribute(group: h5py.Group, name: str) -> list[str] | None:
  """Keras splits attributes over the 64 KiB header limit into name0, name1, ...; join them."""
  if name in group.attrs:
    return _text(group.attrs[name])
  if f"{name}0" not in group.attrs:
    return None
  values, chunk = [], 0
  while f"{name}{chunk}" in group.attrs:
    values += _text(group.attrs[f"{name}{chunk}"])
    chunk += 1
  return values


def read_weights(path: str | os.PathLike) -> dict[str, list[np.ndarray]]:
  """{layer name: [weight arrays]} for every layer that has weights, in the model's layer order.

  Raises:
    ValueError: the file is not a Keras legacy HDF5 weight file.
  """
  path = os.fspath(path)
  try:
    handle = h5py.File(path, "r")
  except OSError as e:
    raise ValueError(f"{path}: not an HDF5 file ({e})") from None
  with handle as f:
    root = f["model_weights"] if "layer_names" not in f.attrs and "model_weights" in f else f
    layer_names = _attribute(root, "layer_names")
    if layer_names is None:
      hint = (" (it looks like a Keras 3 '.weights.h5' file: save legacy weights with tf_keras' "
              "model.save_weights('x.h5') instead)" if "layers" in f else "")
      raise ValueError(f"{path}: no 'layer_names' attribute: not a Keras legacy HDF5 weight "
                       f"file{hint}")
    layers = {}
    for layer in layer_names:
      if layer not in root:
        raise ValueError(f"{path}: layer {layer!r} is listed in layer_names but has no group")
      group = root[layer]
      weight_names = _attribute(group, "weight_names") or []
      arrays = []
      for weight in weight_names:
        if weight not in group:
          raise ValueError(f"{path}: weight {layer}/{weight} is listed but missing")
        arrays.append(np.asarray(group[weight]))
      if arrays:
        layers[layer] = arrays
  return layers
