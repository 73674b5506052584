"""Deterministic stand-ins for the ImageNet weights, in the reference frameworks' own layouts.

The real weights cannot be downloaded in CI, and what the golden tests check is the mapping
(transposes, names, padding, BatchNorm statistics), which any weights exercise as long as every
array is different. So both `make_golden.py` (with torch and Keras) and `test_weights.py` (with
jaxray only) draw the same arrays from numpy seeds, in torchvision's state-dict layout and in
the per-layer lists of a Keras `.h5`. `make_golden.py` checks these specs against the real
torchvision / keras.applications models, so a wrong shape here cannot go unnoticed.

Scales keep activations O(1) through the depth of each network (He-normal kernels, BatchNorm
statistics near identity), so float32 differences stay far below the 1e-4 tolerance.
"""

import numpy as np

SEEDS = dict(resnet18=0, vgg16=1, mobilenet=2)
INPUT_SEED = 5
# (batch, height, width): the ImageNet size for full models, an odd size for the conv bases
# (odd sizes exercise the asymmetric padding of strided convs).
TOP_INPUT = dict(resnet18=(2, 224, 224), vgg16=(1, 224, 224), mobilenet=(2, 224, 224))
NOTOP_INPUT = (2, 77, 77)


def inputs(shape, seed: int = INPUT_SEED) -> np.ndarray:
  """NHWC float32 images: already normalised inputs, as a network sees them.

  Noise around a per-image colour offset: with random weights, pure noise images all land in
  the same class, and the offsets make the argmax differ between images.
  """
  batch, height, width = shape
  rng = np.random.default_rng(seed)
  noise = rng.standard_normal((batch, height, width, 3), np.float32)
  return noise + np.float32(1.5) * rng.standard_normal((batch, 1, 1, 3), np.float32)


# ---------------------------------------------------------------------------------------------
# Specs: (name, shape, role) in the reference layout. Roles set the distribution.


def torchvision_resnet18_spec() -> list[tuple[str, tuple, str]]:
  spec = []

  def bn(prefix, width, gamma="gamma"):
    spec.extend([(f"{prefix}.weight", (width,), gamma), (f"{prefix}.bias", (width,), "beta"),
                 (f"{prefix}.running_mean", (width,), "mean"),
                 (f"{prefix}.running_var", (width,), "var"),
                 (f"{prefix}.num_batches_tracked", (), "count")])

  spec.append(("conv1.weight", (64, 3, 7, 7), "conv_oihw"))
  bn("bn1", 64)
  in_ch = 64
  for stage, width in enumerate((64, 128, 256, 512), start=1):
    for block in range(2):
      prefix = f"layer{stage}.{block}"
      stride = 2 if stage > 1 and block == 0 else 1
      spec.append((f"{prefix}.conv1.weight", (width, in_ch, 3, 3), "conv_oihw"))
      bn(f"{prefix}.bn1", width)
      spec.append((f"{prefix}.conv2.weight", (width, width, 3, 3), "conv_oihw"))
      bn(f"{prefix}.bn2", width, "gamma_residual")
      if stride != 1 or in_ch != width:
        spec.append((f"{prefix}.downsample.0.weight", (width, in_ch, 1, 1), "conv_oihw"))
        bn(f"{prefix}.downsample.1", width)
      in_ch = width
  spec += [("fc.weight", (1000, 512), "head_oi"), ("fc.bias", (1000,), "bias")]
  return spec


def keras_vgg16_spec(include_top: bool) -> list[tuple[str, list[tuple[tuple, str]]]]:
  layers = []
  in_ch = 3
  for block, (width, convs) in enumerate(((64, 2), (128, 2), (256, 3), (512, 3), (512, 3)), 1):
    for index in range(1, convs + 1):
      layers.append((f"block{block}_conv{index}",
                     [((3, 3, in_ch, width), "conv_hwio"), ((width,), "bias")]))
      in_ch = width
  if include_top:
    layers += [("fc1", [((7 * 7 * 512, 4096), "dense"), ((4096,), "bias")]),
               ("fc2", [((4096, 4096), "dense"), ((4096,), "bias")]),
               ("predictions", [((4096, 1000), "head_io"), ((1000,), "bias")])]
  return layers


def keras_mobilenet_spec(include_top: bool) -> list[tuple[str, list[tuple[tuple, str]]]]:
  def bn(name, width):
    return (name, [((width,), "gamma"), ((width,), "beta"), ((width,), "mean"),
                   ((width,), "var")])

  layers = [("conv1", [((3, 3, 3, 32), "conv_hwio")]), bn("conv1_bn", 32)]
  in_ch = 32
  widths = (64, 128, 128, 256, 256, 512, 512, 512, 512, 512, 512, 1024, 1024)
  for block, width in enumerate(widths, start=1):
    layers += [(f"conv_dw_{block}", [((3, 3, in_ch, 1), "depthwise")]),
               bn(f"conv_dw_{block}_bn", in_ch),
               (f"conv_pw_{block}", [((1, 1, in_ch, width), "conv_hwio")]),
               bn(f"conv_pw_{block}_bn", width)]
    in_ch = width
  if include_top:
    layers.append(("conv_preds", [((1, 1, 1024, 1000), "head_hwio"), ((1000,), "bias")]))
  return layers


# ---------------------------------------------------------------------------------------------
# Values


def _draw(rng: np.random.Generator, shape: tuple, role: str, gain: float = 2.0) -> np.ndarray:
  normal = lambda std: (rng.standard_normal(shape, np.float32) * np.float32(std))
  if role == "conv_oihw":  # fan_in = in * kh * kw
    return normal(np.sqrt(gain / np.prod(shape[1:])))
  if role in ("conv_hwio", "dense"):  # fan_in = kh * kw * in
    return normal(np.sqrt(gain / np.prod(shape[:-1])))
  if role == "depthwise":  # one 3x3 filter per channel
    return normal(np.sqrt(2.0 / (shape[0] * shape[1])))
  if role == "head_oi":
    return normal(np.sqrt(1.0 / shape[1]))
  if role in ("head_io", "head_hwio"):
    return normal(np.sqrt(1.0 / np.prod(shape[:-1])))
  if role in ("bias", "beta", "mean"):
    return normal(0.1)
  if role == "gamma_residual":  # small residual branches keep the sum O(1) over 8 blocks
    return rng.uniform(0.1, 0.3, shape).astype(np.float32)
  if role in ("gamma", "var"):
    return rng.uniform(0.5, 1.5, shape).astype(np.float32)
  if role == "count":
    return np.array(int(rng.integers(0, 1000)), np.int64)
  raise ValueError(role)


def torchvision_resnet18_weights(seed: int = SEEDS["resnet18"]) -> dict[str, np.ndarray]:
  """A torchvision resnet18 state dict: {key: array}, num_batches_tracked included."""
  rng = np.random.default_rng(seed)
  return {name: _draw(rng, shape, role) for name, shape, role in torchvision_resnet18_spec()}


def _keras_weights(spec, seed, gain=2.0):
  rng = np.random.default_rng(seed)
  return {layer: [_draw(rng, shape, role, gain) for shape, role in arrays]
          for layer, arrays in spec}


def keras_vgg16_weights(include_top: bool, seed: int = SEEDS["vgg16"]):
  """{layer name: [arrays in get_weights() order]}, as `jaxray.weights.keras_h5` returns.

  The conv layers draw the same values with and without the top (the top comes last). The gain
  below He's 2 shrinks activations over the 15 layers without BatchNorm to O(1), which keeps
  float32 round-off (dot products of length up to 25088) well under the tolerance.
  """
  return _keras_weights(keras_vgg16_spec(include_top), seed, gain=1.6)


def keras_mobilenet_weights(include_top: bool, seed: int = SEEDS["mobilenet"]):
  return _keras_weights(keras_mobilenet_spec(include_top), seed)


def write_keras_h5(path: str, layers: dict[str, list[np.ndarray]]) -> None:
  """Writes `layers` in the legacy keras.applications layout, as Keras 2 `save_weights` does."""
  import h5py  # pylint: disable=g-import-not-at-top

  with h5py.File(path, "w") as f:
    f.attrs["layer_names"] = np.array([name.encode() for name in layers])
    f.attrs["backend"] = b"tensorflow"
    f.attrs["keras_version"] = b"2.21.0"
    for name, arrays in layers.items():
      group = f.create_group(name)
      weight_names = [f"{name}/w{index}:0" for index in range(len(arrays))]
      group.attrs["weight_names"] = np.array([w.encode() for w in weight_names])
      for weight, array in zip(weight_names, arrays):
        group[weight] = array
