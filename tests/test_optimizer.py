import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from jaxray.train import optimizer


def _cfg(**kw):
  base = dict(name="adam", learning_rate=1e-2, b1=0.9, b2=0.999, eps=1e-8, weight_decay=0.0,
              schedule="constant", decay_epochs=(), decay_factor=0.1)
  return ml_collections.ConfigDict(base | kw)


def torch_adam_l2(param, grads, lr, wd, b1=0.9, b2=0.999, eps=1e-8):
  """torch.optim.Adam(weight_decay=wd) written out: L2 added to the gradient, then Adam."""
  m = v = np.zeros_like(param)
  for t, g in enumerate(grads, start=1):
    g = g + wd * param
    m = b1 * m + (1 - b1) * g
    v = b2 * v + (1 - b2) * g * g
    param = param - lr * (m / (1 - b1**t)) / (np.sqrt(v / (1 - b2**t)) + eps)
  return param


def _run(tx, param, grads):
  state = tx.init(param)
  for g in grads:
    updates, state = tx.update(jnp.asarray(g), state, param)
    param = optax.apply_updates(param, updates)
  return np.asarray(param)


def test_weight_decay_is_pytorch_adam_l2():
  rng = np.random.default_rng(0)
  param = rng.normal(size=(5,)).astype(np.float32)
  grads = [rng.normal(size=(5,)).astype(np.float32) for _ in range(6)]
  ours = _run(optimizer.build(_cfg(weight_decay=0.1), 10), jnp.asarray(param), grads)
  np.testing.assert_allclose(ours, torch_adam_l2(param, grads, 1e-2, 0.1), rtol=1e-5)
  adamw = _run(optimizer.build(_cfg(name="adamw", weight_decay=0.1), 10), jnp.asarray(param),
               grads)
  assert not np.allclose(adamw, ours, rtol=1e-4)  # decoupled decay is another optimizer


def test_piecewise_constant_schedule_in_epochs():
  schedule = optimizer.learning_rate_schedule(
      _cfg(schedule="piecewise_constant", learning_rate=1e-3, decay_epochs=(50, 75)), 37)
  assert schedule(50 * 37 - 1) == pytest.approx(1e-3)
  assert schedule(50 * 37) == pytest.approx(1e-4)
  assert schedule(75 * 37 + 5) == pytest.approx(1e-5)


def test_frozen_backbone_gets_no_update():
  params = {"backbone": {"w": jnp.ones(3)}, "head": {"w": jnp.ones(3)}}
  tx = optimizer.build(_cfg(weight_decay=1e-2), 10, freeze_backbone=True)
  grads = jax.tree.map(jnp.ones_like, params)
  updates, _ = tx.update(grads, tx.init(params), params)
  assert float(jnp.abs(updates["backbone"]["w"]).max()) == 0
  assert float(jnp.abs(updates["head"]["w"]).min()) > 0


def test_unknown_optimizer_is_a_clear_error():
  with pytest.raises(ValueError, match="optimizer.name"):
    optimizer.build(_cfg(name="sgd"), 10)
