"""Ported ImageNet weights: numerics against torchvision/Keras, readers, safety, cache, errors.

The golden outputs in tests/golden/ come from the real torchvision and keras.applications
models (`tests/golden/make_golden.py`, run by hand) on the seeded weights and inputs of
`tests/golden/synthetic.py`; here the same arrays go through jaxray's converters into the Flax
models, which must reproduce those outputs to 1e-4. No torch, TensorFlow or network needed.
"""

import dataclasses
import hashlib
import io
import os
import pathlib
import pickle
import sys
import urllib.error
import zipfile

import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from flax import nnx

from jaxray import base_config, models
from jaxray import weights
from jaxray.models import mobilenet, resnet, vgg
from jaxray.weights import __main__ as cli
from jaxray.weights import convert, hub, keras_h5, pth

GOLDEN = pathlib.Path(__file__).parent / "golden"
sys.path.insert(0, str(GOLDEN))
import synthetic  # noqa: E402

TOLERANCE = 1e-4


@pytest.fixture(autouse=True)
def no_network(monkeypatch, tmp_path):
  """Every test gets an empty cache and a network that fails: nothing here may download."""
  monkeypatch.setenv("JAXRAY_CACHE", str(tmp_path / "cache"))
  monkeypatch.delenv("JAXRAY_OFFLINE", raising=False)

  def refuse(url, timeout):
    raise urllib.error.URLError(f"network disabled in tests ({url})")

  monkeypatch.setattr(hub, "_urlopen", refuse)


def golden(arch):
  with np.load(GOLDEN / f"{arch}.npz") as data:
    return {key: data[key] for key in data.files}


def abstract(make):
  """The module's structure without initialising it: assign() provides every value."""
  return nnx.eval_shape(make)


@nnx.jit
def forward(module, x):
  """Inference; one compiled program is faster than op-by-op dispatch of a deep network."""
  return module(x, train=False)


def build(cfg, image_size):
  """build_model's Classifier, uninitialised: the tests load every backbone value themselves."""
  return nnx.eval_shape(lambda: models.build_model(cfg, 2, image_size, 0))


def model_config(name, source="", path="", **kwargs):
  """The base config's model section with these fields."""
  cfg = base_config.get_config().model
  cfg.update(dict(name=name, pretrained=dict(source=source, path=path), **kwargs))
  return cfg


def check_close(actual, expected, what):
  actual = np.asarray(actual, np.float32)
  assert actual.shape == expected.shape, what
  diff = float(np.max(np.abs(actual - expected)))
  print(f"{what}: max abs diff {diff:.2e} (|golden| <= {np.max(np.abs(expected)):.1f})")
  assert diff <= TOLERANCE, f"{what}: max abs diff {diff} > {TOLERANCE}"


# ---------------------------------------------------------------------------------------------
# Numerics against the reference frameworks


def test_resnet18_with_top_matches_torchvision():
  flax_weights = convert.from_torchvision_resnet(synthetic.torchvision_resnet18_weights())
  model = abstract(lambda: resnet.resnet18(num_classes=1000, rngs=nnx.Rngs(0)))
  convert.assign(model, flax_weights, "synthetic resnet18")
  logits = forward(model, jnp.asarray(synthetic.inputs(synthetic.TOP_INPUT["resnet18"])))
  expected = golden("resnet18")
  check_close(logits, expected["top"], "resnet18 logits")
  np.testing.assert_array_equal(np.argmax(logits, -1), expected["top_argmax"])


def test_resnet18_backbone_from_converted_npz_matches_torchvision(tmp_path):
  """The no-top case, through build_model + load_pretrained with an already converted file."""
  converted = tmp_path / "resnet18_converted.npz"
  convert.save_npz(str(converted),
                   convert.from_torchvision_resnet(synthetic.torchvision_resnet18_weights()),
                   "{}")
  cfg = model_config("resnet18", "torchvision_resnet18", str(converted))
  model = build(cfg, synthetic.NOTOP_INPUT[1])
  weights.load_pretrained(model, cfg)
  features = forward(model.backbone, jnp.asarray(synthetic.inputs(synthetic.NOTOP_INPUT)))
  check_close(features, golden("resnet18")["notop"], "resnet18 features")


def test_vgg16_with_top_matches_keras():
  flax_weights = convert.from_keras_vgg16(synthetic.keras_vgg16_weights(include_top=True))
  model = abstract(lambda: vgg.VGG16(include_top=True, image_size=224, rngs=nnx.Rngs(0)))
  convert.assign(model, flax_weights, "synthetic vgg16")
  logits = forward(model, jnp.asarray(synthetic.inputs(synthetic.TOP_INPUT["vgg16"])))
  expected = golden("vgg16")
  check_close(logits, expected["top"], "vgg16 logits")
  np.testing.assert_array_equal(np.argmax(logits, -1), expected["top_argmax"])


def test_vgg16_backbone_from_h5_matches_keras(tmp_path):
  """The no-top case, through an .h5 file, build_model and load_pretrained."""
  path = tmp_path / "vgg16_notop.h5"
  synthetic.write_keras_h5(str(path), synthetic.keras_vgg16_weights(include_top=False))
  cfg = model_config("vgg16", "keras_vgg16", str(path))
  model = build(cfg, synthetic.NOTOP_INPUT[1])
  weights.load_pretrained(model, cfg)
  x = jnp.asarray(synthetic.inputs(synthetic.NOTOP_INPUT))
  check_close(forward(model.backbone, x), golden("vgg16")["notop"], "vgg16 features")


def test_mobilenet_with_top_matches_keras():
  flax_weights = convert.from_keras_mobilenet(synthetic.keras_mobilenet_weights(True))
  model = abstract(lambda: mobilenet.MobileNet(include_top=True, rngs=nnx.Rngs(0)))
  convert.assign(model, flax_weights, "synthetic mobilenet")
  logits = forward(model, jnp.asarray(synthetic.inputs(synthetic.TOP_INPUT["mobilenet"])))
  expected = golden("mobilenet")
  check_close(logits, expected["top"], "mobilenet logits")
  np.testing.assert_array_equal(np.argmax(logits, -1), expected["top_argmax"])


def test_mobilenet_backbone_from_h5_matches_keras(tmp_path):
  """Odd input size (77): Keras' "same" stem and bottom/right-padded strided convs."""
  path = tmp_path / "mobilenet_notop.h5"
  synthetic.write_keras_h5(str(path), synthetic.keras_mobilenet_weights(include_top=False))
  cfg = model_config("mobilenet", "keras_mobilenet", str(path))
  model = build(cfg, synthetic.NOTOP_INPUT[1])
  weights.load_pretrained(model, cfg)
  x = jnp.asarray(synthetic.inputs(synthetic.NOTOP_INPUT))
  check_close(forward(model.backbone, x), golden("mobilenet")["notop"], "mobilenet features")


@pytest.mark.parametrize("name,size,width", [("vgg16", 224, 7 * 7 * 512),
                                             ("vgg16", 77, 2 * 2 * 512),
                                             ("mobilenet", 224, 7 * 7 * 1024),
                                             ("mobilenet", 63, 2 * 2 * 1024)])
def test_registered_flattened_size_fits_the_head(name, size, width):
  """The registry's width is the head's input: it must be the backbone's real output size."""
  cfg = model_config(name)

  def shapes():
    model = models.build_model(cfg, 2, size, 0)
    x = jnp.zeros((1, size, size, 3))
    return model.backbone(x, False), model(x)

  features, logits = nnx.eval_shape(shapes)
  assert np.prod(features.shape[1:]) == width
  assert logits.shape == (1, 2)


# ---------------------------------------------------------------------------------------------
# Readers on files written by the frameworks themselves


def test_pth_reader_on_real_torch_file():
  state = pth.load_state_dict(GOLDEN / "tiny_torch.pth")
  base = np.arange(12, dtype=np.float32).reshape(3, 4)
  assert list(state) == ["dense.weight", "dense.weight_t", "rows", "half", "steps", "count",
                         "param"]
  np.testing.assert_array_equal(state["dense.weight"], base)
  np.testing.assert_array_equal(state["dense.weight_t"], base.T)  # strides (1, 4)
  np.testing.assert_array_equal(state["rows"], base[1:])  # storage offset 4
  assert state["half"].dtype == np.float16
  np.testing.assert_array_equal(state["half"], np.array([0.5, -1.25, 2.0], np.float16))
  assert state["steps"].dtype == np.int64
  np.testing.assert_array_equal(state["steps"], [3, -7, 2**40])
  assert state["count"].shape == () and state["count"] == 42
  np.testing.assert_array_equal(state["param"], np.full((2, 2), 0.25, np.float32))
  state["rows"][0, 0] = -1  # arrays own their memory: no aliasing between entries
  assert state["dense.weight"][1, 0] == 4


def test_keras_h5_reader_on_real_keras_file():
  layers = keras_h5.read_weights(GOLDEN / "tiny_keras.h5")
  assert list(layers) == ["conv1", "conv1_bn", "conv_dw_1"]  # weightless ReLU skipped
  (kernel,) = layers["conv1"]
  np.testing.assert_array_equal(kernel, np.arange(54, dtype=np.float32).reshape(3, 3, 2, 3))
  gamma, beta, mean, var = layers["conv1_bn"]  # get_weights() order, 100 apart
  np.testing.assert_array_equal(np.stack([gamma, beta, mean, var]),
                                np.arange(3, dtype=np.float32) + 100 * np.arange(4)[:, None])
  flax_weights = convert.from_keras_mobilenet(layers)
  depthwise = flax_weights.arrays[("conv_dw_1", "kernel")]
  assert depthwise.shape == (3, 3, 1, 3)  # Keras (3, 3, 3, 1)
  np.testing.assert_array_equal(depthwise, layers["conv_dw_1"][0].transpose(0, 1, 3, 2))
  assert flax_weights.arrays[("conv1_bn", "var")][0] == 300


# ---------------------------------------------------------------------------------------------
# The .pth reader never executes pickled code


def _zip_with_pickle(path, payload: bytes):
  with zipfile.ZipFile(path, "w") as archive:
    archive.writestr("archive/data.pkl", payload)
    archive.writestr("archive/byteorder", "little")


class _Exploit:
  def __init__(self, command):
    self.command = command

  def __reduce__(self):
    return (os.system, (self.command,))


def test_pth_reader_refuses_code_execution(tmp_path):
  marker = tmp_path / "pwned"
  path = tmp_path / "evil.pth"
  _zip_with_pickle(path, pickle.dumps({"w": _Exploit(f"touch {marker}")}, protocol=2))
  with pytest.raises(pth.UnsafePickleError, match=r"refusing to load global .*system"):
    pth.load_state_dict(path)
  assert not marker.exists()


def test_pth_reader_refuses_builtins(tmp_path):
  path = tmp_path / "evil.pth"
  _zip_with_pickle(path, b"cbuiltins\neval\n(Vprint('pwned')\ntR.")
  with pytest.raises(pth.UnsafePickleError, match="builtins.eval"):
    pth.load_state_dict(path)


def test_pth_reader_rejects_out_of_bounds_tensor(tmp_path):
  """A tensor whose strides reach past its storage must not read foreign memory."""
  original = zipfile.ZipFile(GOLDEN / "tiny_torch.pth")
  prefix = [n for n in original.namelist() if n.endswith("data.pkl")][0][: -len("data.pkl")]
  payload = original.read(prefix + "data.pkl")
  # "count" is the only 0-d tensor (size and stride both "()"), at offset 0 of its own
  # 1-element storage; move it to offset 9.
  path = tmp_path / "overrun.pth"
  with zipfile.ZipFile(path, "w") as archive:
    for name in original.namelist():
      data = original.read(name)
      if name == prefix + "data.pkl":
        data = payload.replace(b"K\x00))\x89", b"K\x09))\x89", 1)
        assert data != payload
      archive.writestr(name, data)
  with pytest.raises(pickle.UnpicklingError, match="overruns its storage"):
    pth.load_state_dict(path)


def test_pth_reader_rejects_legacy_and_junk(tmp_path):
  path = tmp_path / "old.pth"
  path.write_bytes(pickle.dumps({"w": 1}))
  with pytest.raises(ValueError, match="not a zip-format PyTorch file"):
    pth.load_state_dict(path)


# ---------------------------------------------------------------------------------------------
# Wrong files fail clearly, naming the file and the key


def test_resnet18_weights_into_resnet34_names_missing_key(tmp_path):
  flax_weights = convert.from_torchvision_resnet(synthetic.torchvision_resnet18_weights())
  model = abstract(lambda: resnet.resnet34(rngs=nnx.Rngs(0)))
  with pytest.raises(weights.WeightsMismatchError, match=r"r18\.pth: no weights for layer1/2/"):
    convert.assign(model, flax_weights, "r18.pth")


def test_shape_mismatch_names_file_and_key():
  flax_weights = convert.from_torchvision_resnet(synthetic.torchvision_resnet18_weights())
  model = abstract(lambda: resnet.resnet18(stem="cifar", rngs=nnx.Rngs(0)))
  with pytest.raises(weights.WeightsMismatchError,
                     match=r"r18\.pth: 'conv1\.weight' has shape \(7, 7, 3, 64\).*\(3, 3, 3, 64\)"):
    convert.assign(model, flax_weights, "r18.pth")


def test_failed_assign_leaves_model_untouched():
  state = synthetic.torchvision_resnet18_weights()
  model = abstract(lambda: resnet.resnet18(rngs=nnx.Rngs(0)))
  convert.assign(model, convert.from_torchvision_resnet(state), "good.pth")
  before = np.asarray(model.conv1.kernel[...]).copy()
  partial = {k: v * 2 for k, v in state.items() if k != "layer4.1.bn2.running_var"}
  with pytest.raises(weights.WeightsMismatchError, match="partial.pth: no weights for "
                     r"layer4/1/bn2/var"):
    convert.assign(model, convert.from_torchvision_resnet(partial), "partial.pth")
  np.testing.assert_array_equal(model.conv1.kernel[...], before)


def test_unexpected_key_is_named():
  state = synthetic.torchvision_resnet18_weights()
  state["layer5.0.conv1.weight"] = np.zeros((8, 8, 3, 3), np.float32)
  model = abstract(lambda: resnet.resnet18(rngs=nnx.Rngs(0)))
  with pytest.raises(weights.WeightsMismatchError, match=r"x\.pth: .*'layer5\.0\.conv1\.weight'"):
    convert.assign(model, convert.from_torchvision_resnet(state), "x.pth")


def test_wrong_architecture_file_is_named(tmp_path):
  path = tmp_path / "actually_vgg.h5"
  synthetic.write_keras_h5(str(path), synthetic.keras_vgg16_weights(include_top=False))
  cfg = model_config("mobilenet", "keras_mobilenet", str(path))
  model = build(cfg, 64)
  with pytest.raises(weights.WeightsMismatchError,
                     match=r"actually_vgg\.h5: unexpected layer 'block1_conv1'"):
    weights.load_pretrained(model, cfg)


def test_notop_file_into_model_with_top_explains():
  flax_weights = convert.from_keras_mobilenet(synthetic.keras_mobilenet_weights(False))
  model = abstract(lambda: mobilenet.MobileNet(include_top=True, rngs=nnx.Rngs(0)))
  with pytest.raises(weights.WeightsMismatchError, match="conv_preds/bias.*has none"):
    convert.assign(model, flax_weights, "notop.h5")


def test_source_for_another_architecture():
  cfg = model_config("vgg16", "torchvision_resnet18")
  with pytest.raises(ValueError, match="holds resnet18 weights"):
    weights.load_pretrained(None, cfg)
  with pytest.raises(ValueError, match="Unknown model.pretrained.source"):
    weights.load_pretrained(None, model_config("vgg16", "imagenet21k"))


def test_no_source_is_a_no_op():
  weights.load_pretrained(None, model_config("vgg16", ""))


# ---------------------------------------------------------------------------------------------
# Download, checksum and cache, with the network replaced


def test_offline_without_file_names_url_and_flag(monkeypatch):
  cfg = model_config("resnet18", "torchvision_resnet18")
  with pytest.raises(weights.WeightsUnavailableError) as error:
    weights.load_pretrained(None, cfg)
  message = str(error.value)
  assert "https://download.pytorch.org/models/resnet18-f37072fd.pth" in message
  assert "--set model.pretrained.path=/path/to/resnet18-f37072fd.pth" in message
  assert "python -m jaxray.weights convert --source=torchvision_resnet18" in message

  monkeypatch.setenv("JAXRAY_OFFLINE", "1")
  with pytest.raises(weights.WeightsUnavailableError, match="(?s)vgg16_weights_tf_dim_ordering_tf_"
                     "kernels_notop.h5.*--set model.pretrained.path="):
    weights.load_pretrained(None, model_config("vgg16", "keras_vgg16"))


def test_cli_convert_then_load_from_cache(tmp_path, capsys):
  original = tmp_path / "downloads" / "my_mobilenet_notop.h5"
  original.parent.mkdir()
  layers = synthetic.keras_mobilenet_weights(include_top=False)
  synthetic.write_keras_h5(str(original), layers)
  assert cli.main(["convert", "--source=keras_mobilenet", f"--file={original}"]) == 0
  cached = pathlib.Path(os.environ["JAXRAY_CACHE"]) / "keras_mobilenet_notop.npz"
  assert str(cached) in capsys.readouterr().out

  cfg = model_config("mobilenet", "keras_mobilenet")  # no path: must come from the cache
  model = build(cfg, 64)
  weights.load_pretrained(model, cfg)
  np.testing.assert_array_equal(model.backbone.conv_dw_3.kernel[...],
                                layers["conv_dw_3"][0].transpose(0, 1, 3, 2))
  np.testing.assert_array_equal(model.backbone.conv_pw_13_bn.var[...], layers["conv_pw_13_bn"][3])


def test_cli_convert_refuses_incomplete_file(tmp_path, capsys):
  path = tmp_path / "mobilenet_truncated.h5"
  layers = synthetic.keras_mobilenet_weights(include_top=False)
  del layers["conv_pw_13_bn"]
  synthetic.write_keras_h5(str(path), layers)
  assert cli.main(["convert", "--source=keras_mobilenet", f"--file={path}"]) == 1
  assert "mobilenet_truncated.h5: no weights for conv_pw_13_bn/bias" in capsys.readouterr().err
  assert not (pathlib.Path(os.environ["JAXRAY_CACHE"]) / "keras_mobilenet_notop.npz").exists()


def test_download_is_checked_converted_and_cached(tmp_path, monkeypatch):
  payload_path = tmp_path / "payload.h5"
  layers = synthetic.keras_mobilenet_weights(include_top=False)
  synthetic.write_keras_h5(str(payload_path), layers)
  payload = payload_path.read_bytes()
  source = hub.SOURCES["keras_mobilenet"]
  good = dataclasses.replace(source, notop=dataclasses.replace(
      source.notop, md5=hashlib.md5(payload).hexdigest(), official_hash=True))
  monkeypatch.setitem(hub.SOURCES, "keras_mobilenet", good)
  requested = []

  def serve(url, timeout):
    requested.append(url)
    return io.BytesIO(payload)

  monkeypatch.setattr(hub, "_urlopen", serve)
  cfg = model_config("mobilenet", "keras_mobilenet")
  model = build(cfg, 64)
  weights.load_pretrained(model, cfg)
  assert requested == [source.notop.url]
  np.testing.assert_array_equal(model.backbone.conv1.kernel[...], layers["conv1"][0])
  cache = pathlib.Path(os.environ["JAXRAY_CACHE"])
  assert sorted(p.name for p in cache.iterdir()) == ["keras_mobilenet_notop.npz"]

  weights.load_pretrained(model, cfg)  # second time: from the cache, no request
  assert len(requested) == 1


def test_corrupt_download_is_rejected_and_not_cached(tmp_path, monkeypatch):
  monkeypatch.setattr(hub, "_urlopen", lambda url, timeout: io.BytesIO(b"truncated"))
  model = build(model_config("vgg16", "keras_vgg16"), 64)
  with pytest.raises(ValueError, match="checksum mismatch.*6d6bbae143d832006294945121d1f1fc"):
    weights.load_pretrained(model, model_config("vgg16", "keras_vgg16"))
  cache = pathlib.Path(os.environ["JAXRAY_CACHE"])
  assert not any(p.is_file() for p in cache.rglob("*"))


def test_canonical_file_name_is_checksummed(tmp_path):
  path = tmp_path / "resnet18-f37072fd.pth"
  path.write_bytes(b"not the real file")
  with pytest.raises(ValueError, match="does not start with f37072fd"):
    weights.load_pretrained(None, model_config("resnet18", "torchvision_resnet18", str(path)))


def test_preprocessing_per_source():
  assert weights.preprocessing("torchvision_resnet18") == dict(
      kind="mean_std", mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
  assert weights.preprocessing("keras_vgg16") == dict(kind="caffe")
  assert weights.preprocessing("keras_mobilenet") == dict(kind="inception")
  assert weights.preprocessing("") is None
  with pytest.raises(ValueError):
    weights.preprocessing("nope")
