"""Report 004's heads: a frozen backbone stays frozen; the binary head is Keras' sigmoid + BCE."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest
from flax import nnx

from jaxray import base_config, ops
from jaxray.models.classifier import Classifier, MLPHead
from jaxray.train import optimizer, steps

IMAGE_SIZE = 32


class TinyBackbone(nnx.Module):
  """Conv -> BatchNorm -> ReLU -> 4x4 average pool: parameters and BatchNorm statistics."""

  def __init__(self, *, rngs: nnx.Rngs):
    self.conv = nnx.Conv(3, 8, (3, 3), strides=2, rngs=rngs)
    self.bn = nnx.BatchNorm(8, momentum=0.9, rngs=rngs)

  def __call__(self, x, train: bool = False):
    x = nnx.relu(self.bn(self.conv(x), use_running_average=not train))
    return nnx.avg_pool(x, (4, 4), strides=(4, 4))  # (N, 4, 4, 8) -> 128 features


def _config(loss: str) -> ml_collections.ConfigDict:
  config = base_config.get_config()
  config.input.normalization = dict(kind="inception")
  config.model.loss = loss
  config.optimizer.learning_rate = 1e-2
  config.optimizer.eps = 1e-7
  return config


def _model(num_outputs: int, freeze_backbone: bool, hidden=(16,), dropout=(0.5,)):
  rngs = nnx.Rngs(params=0)
  head = MLPHead(4 * 4 * 8, num_outputs, hidden=hidden, dropout=dropout, init="keras", rngs=rngs)
  return Classifier(TinyBackbone(rngs=rngs), head, freeze_backbone=freeze_backbone)


def _separable_batch(batch_size: int = 8):
  """Class 1 images are bright, class 0 dark, with noise: any working head learns it."""
  rng = np.random.default_rng(0)
  labels = np.arange(batch_size) % 2
  base = np.where(labels[:, None, None, None] == 1, 170, 70)
  noise = rng.integers(-40, 40, (batch_size, IMAGE_SIZE, IMAGE_SIZE, 1))
  images = np.clip(base + noise, 0, 255).astype(np.uint8)
  return {"image": jnp.asarray(images), "label": jnp.asarray(labels, jnp.int32)}


def _train(model, cfg, num_steps: int):
  tx = optimizer.build(cfg.optimizer, steps_per_epoch=num_steps,
                       freeze_backbone=model.freeze_backbone)
  graphdef, state = steps.create_state(model, tx, seed=0)
  train_step = jax.jit(lambda s, b, m: steps.train_step(s, b, m, graphdef=graphdef, tx=tx,
                                                        cfg=cfg, ops=ops.PLAIN))
  initial = jax.tree.map(np.array, state)  # host copies of the starting point
  batch = _separable_batch()
  losses = []
  for _ in range(num_steps):
    state, metrics = train_step(state, batch, steps.zero_metrics())
    losses.append(float(metrics["loss_sum"] / metrics["count"]))
  return initial, state, losses


def _leaves_equal(a, b) -> bool:
  la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
  return len(la) == len(lb) and all(np.array_equal(np.asarray(x), np.asarray(y))
                                    for x, y in zip(la, lb))


def test_frozen_backbone_parameters_and_batchnorm_stats_stay_bit_identical():
  initial, state, _ = _train(_model(4, freeze_backbone=True), _config("softmax"), num_steps=3)
  assert _leaves_equal(initial.params["backbone"], state.params["backbone"])
  assert _leaves_equal(initial.batch_stats, state.batch_stats)
  assert jax.tree.leaves(initial.batch_stats)  # the backbone does have BatchNorm statistics
  assert not _leaves_equal(initial.params["head"], state.params["head"])  # the head trains


def test_trainable_backbone_moves_parameters_and_batchnorm_stats():
  """The control: without freezing, the same steps change both (so the test above can fail)."""
  initial, state, _ = _train(_model(4, freeze_backbone=False), _config("softmax"), num_steps=3)
  assert not _leaves_equal(initial.params["backbone"], state.params["backbone"])
  assert not _leaves_equal(initial.batch_stats, state.batch_stats)


def test_sigmoid_head_loss_is_binary_cross_entropy_of_its_single_logit():
  logits = jnp.array([[2.0], [-1.0], [0.3], [-4.0]])
  labels = jnp.array([1, 0, 0, 1])
  losses, probabilities = steps.loss_and_probabilities(logits, labels, "sigmoid")
  expected = optax.sigmoid_binary_cross_entropy(logits[:, 0], labels.astype(jnp.float32))
  np.testing.assert_allclose(losses, expected, rtol=1e-6)
  # Keras' BinaryCrossentropy on the sigmoid output, written out.
  p = jax.nn.sigmoid(logits[:, 0])
  np.testing.assert_allclose(losses, -(labels * jnp.log(p) + (1 - labels) * jnp.log(1 - p)),
                             rtol=1e-5)
  assert probabilities.shape == (4, 2)
  np.testing.assert_allclose(probabilities[:, 1], p, rtol=1e-6)
  np.testing.assert_allclose(probabilities.sum(-1), 1.0, rtol=1e-6)


@pytest.mark.parametrize("freeze_backbone", [False, True])
def test_binary_head_trains_with_sigmoid_bce(freeze_backbone):
  model = _model(1, freeze_backbone=freeze_backbone)
  assert model.head.out.kernel[...].shape == (16, 1)  # one logit, Keras' Dense(1, sigmoid)
  _, state, losses = _train(model, _config("sigmoid"), num_steps=15)
  assert losses[-1] < 0.5 * losses[0], losses
