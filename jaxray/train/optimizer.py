"""The optimizer, built from `config.optimizer` with optax.

`weight_decay` means what it meant in the reports' frameworks: PyTorch's `Adam(weight_decay=...)`
adds `weight_decay * param` to the gradient before the Adam moments (L2 regularisation), which
is `add_decayed_weights` *before* `adam`. Decoupled decay (AdamW) is a different optimizer and
must be asked for by name. A frozen backbone gets zero updates (`set_to_zero`).
"""

import jax
import ml_collections
import optax


def learning_rate_schedule(cfg: ml_collections.ConfigDict, steps_per_epoch: int):
  """Constant, or piecewise constant with boundaries given in epochs (MedMNIST: x0.1 at 50, 75)."""
  schedule = cfg.get("schedule", "constant")
  if schedule == "constant":
    return cfg.learning_rate
  if schedule == "piecewise_constant":
    boundaries = {int(epoch * steps_per_epoch): float(cfg.decay_factor)
                  for epoch in cfg.decay_epochs}
    return optax.piecewise_constant_schedule(cfg.learning_rate, boundaries)
  raise ValueError(f"optimizer.schedule must be 'constant' or 'piecewise_constant', "
                   f"got {schedule!r}")


def build(cfg: ml_collections.ConfigDict, steps_per_epoch: int,
          freeze_backbone: bool = False) -> optax.GradientTransformation:
  lr = learning_rate_schedule(cfg, steps_per_epoch)
  b1, b2, eps = cfg.get("b1", 0.9), cfg.get("b2", 0.999), cfg.get("eps", 1e-8)
  name, weight_decay = cfg.get("name", "adam"), cfg.get("weight_decay", 0.0)
  if name == "adam":
    tx = optax.adam(lr, b1=b1, b2=b2, eps=eps)
    if weight_decay:
      tx = optax.chain(optax.add_decayed_weights(weight_decay), tx)
  elif name == "adamw":
    tx = optax.adamw(lr, b1=b1, b2=b2, eps=eps, weight_decay=weight_decay)
  else:
    raise ValueError(f"optimizer.name must be 'adam' or 'adamw', got {name!r}")
  if freeze_backbone:
    tx = optax.multi_transform({"trainable": tx, "frozen": optax.set_to_zero()},
                               _backbone_frozen_labels)
  return tx


def _backbone_frozen_labels(params):
  """"frozen" for every parameter under `backbone`, "trainable" for the head."""
  return jax.tree_util.tree_map_with_path(
      lambda path, _: "frozen" if getattr(path[0], "key", None) == "backbone" else "trainable",
      params)
