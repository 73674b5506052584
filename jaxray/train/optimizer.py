"""The optimizer, built from `config.optimizer` with optax.

`weight_decay` means what it meant in the reports' frameworks: PyTorch's `Adam(weight_decay=...)`
adds `weight_decay * param` to the gradient before the Adam moments (L2 regularisation), which
is `add_decayed_weights` *before* `adam`. Decoupled decay (AdamW) is a different optimizer and
must be asked for by name. A frozen backbone gets zero updates (`set_to_zero`).
"""

import jax
import ml_collections
import optax


def learning_rate_schedule(cfg: ml_collections.ConfigDict, steps_per_epoch: int,
                           num_epochs: int | None = None):
  """Constant; piecewise constant with boundaries given in epochs (MedMNIST: x0.1 at 50, 75); or
  a cosine decay from the peak to zero over the run's `num_epochs`."""
  schedule = cfg.schedule
  if schedule == "constant":
    return cfg.learning_rate
  if schedule == "piecewise_constant":
    boundaries = {int(epoch * steps_per_epoch): float(cfg.decay_factor)
                  for epoch in cfg.decay_epochs}
    return optax.piecewise_constant_schedule(cfg.learning_rate, boundaries)
  if schedule == "cosine":
    if not num_epochs:
      raise ValueError("optimizer.schedule='cosine' needs the run's num_epochs")
    return optax.cosine_decay_schedule(cfg.learning_rate, max(1, num_epochs * steps_per_epoch))
  raise ValueError(f"optimizer.schedule must be 'constant', 'piecewise_constant' or 'cosine', "
                   f"got {schedule!r}")


def build(cfg: ml_collections.ConfigDict, steps_per_epoch: int, freeze_backbone: bool = False,
          num_epochs: int | None = None) -> optax.GradientTransformation:
  lr = learning_rate_schedule(cfg, steps_per_epoch, num_epochs)
  b1, b2, eps = cfg.b1, cfg.b2, cfg.eps
  name, weight_decay = cfg.name, cfg.weight_decay
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
