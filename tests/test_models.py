import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from flax import nnx
from jax import lax

from jaxray import base_config
from jaxray.models import build_model, resnet


def _model_config(**fields) -> ml_collections.ConfigDict:
  """The base config's model section with `fields` changed."""
  cfg = base_config.get_config().model
  cfg.update(fields)
  return cfg


def _count(module, kind=nnx.Param):
  return sum(x.size for x in jax.tree.leaves(nnx.state(module, kind)))


def test_resnet18_has_torchvision_parameter_count():
  # torchvision.models.resnet18(): 11,689,512 parameters; with a 2-way fc: 11,177,538.
  abstract = nnx.eval_shape(lambda: resnet.resnet18(num_classes=1000, rngs=nnx.Rngs(0)))
  assert _count(abstract) == 11_689_512
  model = nnx.eval_shape(
      lambda: build_model(_model_config(name="resnet18"), 2, 32, seed=0))
  assert _count(model) == 11_177_538
  # BatchNorm running statistics: mean and var for each of the 20 BN layers' channels.
  assert _count(model, nnx.BatchStat) == 2 * 4800


@pytest.mark.parametrize("stem, size", [("imagenet", 64), ("cifar", 28)])
def test_output_and_feature_shapes(stem, size):
  model = build_model(_model_config(name="resnet18", stem=stem), 3, size, 0)
  logits, features = model(jnp.zeros((2, size, size, 3)), return_features=True)
  assert logits.shape == (2, 3) and features.shape == (2, 512)


def test_torchvision_layout_names_and_init():
  net = resnet.resnet18(num_classes=1000, rngs=nnx.Rngs(0))
  assert net.conv1.kernel[...].shape == (7, 7, 3, 64)  # HWIO of torch's (64, 3, 7, 7)
  assert net.layer2[0].downsample.conv.kernel[...].shape == (1, 1, 64, 128)
  assert net.layer1[0].downsample is None
  # kaiming_normal(fan_out, relu): std = sqrt(2 / (out_channels * k * k))
  std = float(np.std(net.layer3[1].conv2.kernel[...]))
  assert std == pytest.approx(np.sqrt(2.0 / (256 * 9)), rel=0.05)
  # nn.Linear default: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weight and bias
  assert float(jnp.abs(net.fc.kernel[...]).max()) <= 1 / np.sqrt(512)
  assert float(jnp.abs(net.fc.bias[...]).max()) > 0


def test_torch_default_conv_init_is_nn_conv2d_s_uniform():
  """conv_init="torch_default": nn.Conv2d's kaiming_uniform_(a=sqrt(5)) = U(+-1/sqrt(fan_in))."""
  cfg = _model_config(name="resnet18", stem="cifar", conv_init="torch_default")
  net = build_model(cfg, 2, 28, seed=0, in_channels=1).backbone
  for kernel, fan_in in ((net.conv1.kernel, 9 * 1), (net.layer3[1].conv2.kernel, 9 * 256),
                         (net.layer2[0].downsample.conv.kernel, 64)):
    values = np.asarray(kernel[...])
    bound = 1 / np.sqrt(fan_in)
    assert np.abs(values).max() <= bound
    assert np.abs(values).max() > 0.95 * bound  # spread over the whole interval, not normal
    assert np.std(values) == pytest.approx(bound / np.sqrt(3), rel=0.05 if fan_in > 9 else 0.3)
  with pytest.raises(ValueError, match="model.conv_init must be one of"):
    build_model(_model_config(name="resnet18", conv_init="he"), 2, 28, 0)


def test_unknown_model_and_bad_head_are_clear_errors():
  with pytest.raises(ValueError, match="Unknown model.name 'resnet19'"):
    build_model(_model_config(name="resnet19"), 2, 32, 0)
  with pytest.raises(ValueError, match="one rate per hidden layer"):
    build_model(_model_config(name="resnet18", head=dict(
        hidden=(256, 256), dropout=(0.5,), init="torch")), 2, 32, 0)
