"""Writes the golden outputs of the reference frameworks for `tests/test_weights.py`. Run by hand.

Needs torch + torchvision and tensorflow + keras (+ tf_keras for the tiny legacy .h5), which are
not dependencies of jaxray: use a separate virtualenv, e.g.

  python3 -m venv /tmp/refvenv
  /tmp/refvenv/bin/pip install torch torchvision tensorflow-cpu tf-keras h5py
  cd tests/golden && /tmp/refvenv/bin/python make_golden.py

For each architecture it loads the deterministic weights of `synthetic.py` into the real
torchvision / keras.applications model (checking first that every name and shape of the spec is
the reference's), runs the seeded inputs with and without the ImageNet top, and stores only the
outputs (and argmax) in <arch>.npz. The inputs and weights are regenerated from their seeds by
the test. It also writes two tiny files really produced by the frameworks, for the readers:
tiny_torch.pth (torch.save) and tiny_keras.h5 (tf_keras Model.save_weights, legacy layout).
"""

import collections
import os
import subprocess
import sys

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import synthetic  # noqa: E402  (this directory)

HERE = os.path.dirname(os.path.abspath(__file__))


def _save(name, **arrays):
  path = os.path.join(HERE, name)
  np.savez_compressed(path, **arrays)
  print(f"wrote {path} ({os.path.getsize(path) / 1024:.0f} KiB)")


def _torch_versions():
  import torch
  import torchvision
  return f"torch {torch.__version__}, torchvision {torchvision.__version__}, numpy {np.__version__}"


def _keras_versions():
  import keras
  import tensorflow as tf
  return f"tensorflow {tf.__version__}, keras {keras.__version__}, numpy {np.__version__}"


def golden_resnet18():
  import torch
  import torchvision

  torch.set_num_threads(2)
  state = synthetic.torchvision_resnet18_weights()
  model = torchvision.models.resnet18(weights=None)
  reference = model.state_dict()
  assert list(reference) == list(state), "spec keys differ from torchvision's resnet18"
  for key, value in reference.items():
    assert tuple(value.shape) == state[key].shape, (key, value.shape, state[key].shape)
  model.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in state.items()})
  model.eval()

  def run(shape):
    x = torch.from_numpy(synthetic.inputs(shape).transpose(0, 3, 1, 2).copy())
    with torch.no_grad():
      return model(x).numpy()

  top = run(synthetic.TOP_INPUT["resnet18"])
  model.fc = torch.nn.Identity()
  notop = run(synthetic.NOTOP_INPUT)
  return top, notop


def _set_keras_weights(model, layers):
  with_weights = [layer for layer in model.layers if layer.get_weights()]
  assert [layer.name for layer in with_weights] == list(layers), (
      "spec layers differ from keras':", [layer.name for layer in with_weights], list(layers))
  for layer in with_weights:
    reference = [w.shape for w in layer.get_weights()]
    ours = [a.shape for a in layers[layer.name]]
    assert [tuple(s) for s in reference] == ours, (layer.name, reference, ours)
    layer.set_weights(layers[layer.name])


def golden_keras(arch):
  import keras
  import tensorflow as tf

  tf.config.threading.set_intra_op_parallelism_threads(2)
  build = dict(vgg16=keras.applications.VGG16, mobilenet=keras.applications.MobileNet)[arch]
  weights = dict(vgg16=synthetic.keras_vgg16_weights,
                 mobilenet=synthetic.keras_mobilenet_weights)[arch]
  outputs = []
  for include_top, shape in ((True, synthetic.TOP_INPUT[arch]), (False, synthetic.NOTOP_INPUT)):
    kwargs = dict(classifier_activation=None) if include_top else {}
    model = build(weights=None, include_top=include_top, input_shape=shape[1:] + (3,), **kwargs)
    _set_keras_weights(model, weights(include_top))
    outputs.append(np.asarray(model(synthetic.inputs(shape), training=False)))
    del model
    keras.backend.clear_session()
  return outputs


def write_tiny_torch():
  """A small state dict with the cases the reader must get right."""
  import torch

  base = torch.arange(12, dtype=torch.float32).reshape(3, 4)
  state = collections.OrderedDict()
  state["dense.weight"] = base
  state["dense.weight_t"] = base.t()  # non-contiguous: strides (1, 4), shares base's storage
  state["rows"] = base[1:]  # storage_offset 4
  state["half"] = torch.tensor([0.5, -1.25, 2.0], dtype=torch.float16)
  state["steps"] = torch.tensor([3, -7, 2**40], dtype=torch.int64)
  state["count"] = torch.tensor(42, dtype=torch.int64)  # 0-d, like num_batches_tracked
  state["param"] = torch.nn.Parameter(torch.full((2, 2), 0.25))
  path = os.path.join(HERE, "tiny_torch.pth")
  torch.save(state, path)
  print(f"wrote {path} ({os.path.getsize(path)} bytes)")


def write_tiny_keras():
  """A conv + BatchNorm + depthwise model saved by Keras 2 (tf_keras) in the legacy layout."""
  import tf_keras

  model = tf_keras.Sequential([
      tf_keras.Input((6, 6, 2)),
      tf_keras.layers.Conv2D(3, 3, use_bias=False, name="conv1"),
      tf_keras.layers.BatchNormalization(name="conv1_bn"),
      tf_keras.layers.ReLU(6.0, name="conv1_relu"),
      tf_keras.layers.DepthwiseConv2D(3, use_bias=False, name="conv_dw_1"),
  ])
  for layer in model.layers:
    values = []
    offset = 0.0
    for weight in layer.get_weights():
      values.append(np.arange(weight.size, dtype=np.float32).reshape(weight.shape) + offset)
      offset += 100.0
    layer.set_weights(values)
  path = os.path.join(HERE, "tiny_keras.h5")
  model.save_weights(path)
  print(f"wrote {path} ({os.path.getsize(path)} bytes)")


def main(stage):
  # torch and tensorflow can crash when imported into one process: one process per framework.
  if stage == "torch":
    top, notop = golden_resnet18()
    _save("resnet18.npz", top=top, top_argmax=top.argmax(-1), notop=notop,
          versions=_torch_versions())
    write_tiny_torch()
  elif stage == "keras":
    for arch in ("vgg16", "mobilenet"):
      top, notop = golden_keras(arch)
      _save(f"{arch}.npz", top=top, top_argmax=top.argmax(-1), notop=notop,
            versions=_keras_versions())
    write_tiny_keras()
  else:
    for stage in ("torch", "keras"):
      subprocess.run([sys.executable, os.path.abspath(__file__), stage], check=True)


if __name__ == "__main__":
  main(sys.argv[1] if len(sys.argv) > 1 else "all")
