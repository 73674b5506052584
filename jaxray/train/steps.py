"""Pure steps, jitted once per run: train (state, batch, metrics) -> (state, metrics), with the
metrics summed on the device; eval (state, batch) -> per-example outputs.

The model is an NNX module split into its graph definition (static) and two state pytrees,
parameters and BatchNorm statistics, so the steps are plain functions over pytrees that jit,
shard and checkpoint like any other JAX code. Augmentation and normalization happen here, on
the device, keyed by (run seed, step).
"""

import functools
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import ml_collections
import optax
from flax import nnx

from jaxray import ops as ops_lib
from jaxray.data import augment


@flax.struct.dataclass
class TrainState:
  step: jax.Array
  params: Any
  batch_stats: Any
  opt_state: Any
  rng: jax.Array  # raw uint32 key: checkpoints stay plain arrays


def split_model(model: nnx.Module):
  graphdef, params, batch_stats, *rest = nnx.split(model, nnx.Param, nnx.BatchStat, ...)
  if rest and jax.tree.leaves(rest):
    raise ValueError(f"Model has state beyond parameters and BatchNorm statistics: {rest}")
  return graphdef, params, batch_stats


def create_state(model: nnx.Module, tx: optax.GradientTransformation, seed: int):
  graphdef, params, batch_stats = split_model(model)
  state = TrainState(step=jnp.zeros((), jnp.int32), params=params, batch_stats=batch_stats,
                     opt_state=tx.init(params), rng=jax.random.PRNGKey(seed))
  return graphdef, state


def loss_and_probabilities(logits, labels, loss: str):
  """Per-example loss and class probabilities (B, num_classes) for both kinds of head.

  "softmax": C logits, categorical cross-entropy. "sigmoid": one logit for the positive class
  (class 1) with binary cross-entropy, as Keras' Dense(1, sigmoid) + BinaryCrossentropy.
  """
  logits = logits.astype(jnp.float32)
  if loss == "softmax":
    return (optax.softmax_cross_entropy_with_integer_labels(logits, labels),
            jax.nn.softmax(logits))
  if loss == "sigmoid":
    logit = logits[:, 0]
    p = jax.nn.sigmoid(logit)
    return (optax.sigmoid_binary_cross_entropy(logit, labels.astype(jnp.float32)),
            jnp.stack([1.0 - p, p], axis=-1))
  raise ValueError(f"model.loss must be 'softmax' or 'sigmoid', got {loss!r}")


def multilabel_losses(logits, labels, positive_weights=None):
  """(B, K) binary cross-entropy of K sigmoid outputs, zero where a label is unknown, and the
  (B, K) mask of known labels (label 1 present, 0 absent, -1 unknown).

  `positive_weights` (K,) scale each finding's positive term, as PyTorch's
  `BCEWithLogitsLoss(pos_weight=...)`: a finding on 2% of the images then counts as much in the
  loss as its absence does. An unknown label contributes neither loss nor gradient.
  """
  logits = logits.astype(jnp.float32)
  known = labels >= 0
  targets = jnp.where(known, labels, 0).astype(jnp.float32)
  log_p, log_not_p = jax.nn.log_sigmoid(logits), jax.nn.log_sigmoid(-logits)
  positive = 1.0 if positive_weights is None else jnp.asarray(positive_weights, jnp.float32)
  losses = -(positive * targets * log_p + (1.0 - targets) * log_not_p)
  return jnp.where(known, losses, 0.0), known


def per_example(losses, known):
  """Each example's mean loss over its known labels (0 for an example with none)."""
  return losses.sum(-1) / jnp.maximum(known.sum(-1), 1)


def model_inputs(images_uint8, cfg: ml_collections.ConfigDict, key=None,
                 ops: ops_lib.Ops = ops_lib.PLAIN):
  """uint8 batch -> the model's input: equalized if `input.equalize`, augmented when `key` is
  given, then normalized."""
  if cfg.input.equalize:
    images_uint8 = augment.equalize(images_uint8)
  images = augment.to_float(images_uint8)
  if key is not None:
    images = augment.augment(images, key, cfg.augment, store=ops.store)
  return augment.normalize(images, cfg.input.normalization, cfg.input.channels)


def zero_metrics():
  return {"loss_sum": jnp.zeros((), jnp.float32), "correct": jnp.zeros((), jnp.int32),
          "count": jnp.zeros((), jnp.int32)}


def weighted_mean(losses, labels, class_weights=None):
  """The batch loss: the plain mean, or with `class_weights` (one per class) PyTorch's
  `CrossEntropyLoss(weight=w)`: sum_i w[y_i] l_i / sum_i w[y_i]. Dividing by the weights' sum
  keeps the loss's scale, and so the learning rate's meaning, whatever the batch's classes."""
  if class_weights is None:
    return losses.mean()
  weights = jnp.asarray(class_weights, jnp.float32)[labels]
  return (weights * losses).sum() / weights.sum()


def train_step(state: TrainState, batch, metrics, *, graphdef, tx, cfg, ops, class_weights=None):
  """One optimizer step; `metrics` accumulates on the device (no host sync per step).

  `class_weights` (one per class, or None) weight the loss (`weighted_mean`); in a multi-label
  task they are the findings' positive weights (`multilabel_losses`)."""
  step_key = jax.random.fold_in(state.rng, state.step)
  augment_key, dropout_key = jax.random.split(step_key)
  images = model_inputs(batch["image"], cfg, augment_key, ops)
  labels = batch["label"]
  multilabel = cfg.task == "multilabel"

  def loss_fn(params):
    model = nnx.merge(graphdef, params, state.batch_stats, copy=True)
    logits = model(images, train=True, dropout_key=dropout_key)
    if multilabel:  # the mean over every known (image, finding) pair of the batch
      losses, known = multilabel_losses(logits, labels, class_weights)
      return (losses.sum() / jnp.maximum(known.sum(), 1),
              (jax.nn.sigmoid(logits.astype(jnp.float32)), nnx.state(model, nnx.BatchStat)))
    losses, probabilities = loss_and_probabilities(logits, labels, cfg.model.loss)
    if cfg.model.label_smoothing:  # the eval loss stays the plain cross-entropy
      targets = optax.smooth_labels(jax.nn.one_hot(labels, logits.shape[-1]),
                                    cfg.model.label_smoothing)
      losses = optax.softmax_cross_entropy(logits.astype(jnp.float32), targets)
    return (weighted_mean(losses, labels, class_weights),
            (probabilities, nnx.state(model, nnx.BatchStat)))

  (loss, (probabilities, batch_stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
      state.params)
  updates, opt_state = tx.update(grads, state.opt_state, state.params)
  params = optax.apply_updates(state.params, updates)
  if multilabel:  # counted over known labels: train accuracy is that of (image, finding) pairs
    known = labels >= 0
    count = known.sum()
    correct = (((probabilities >= 0.5) == (labels == 1)) & known).sum()
  else:
    count = labels.shape[0]
    correct = (probabilities.argmax(-1) == labels).sum()
  metrics = {"loss_sum": metrics["loss_sum"] + loss * count,
             "correct": metrics["correct"] + correct,
             "count": metrics["count"] + count}
  return state.replace(step=state.step + 1, params=params, batch_stats=batch_stats,
                       opt_state=opt_state), metrics


def eval_step(state: TrainState, batch, *, graphdef, cfg):
  """Per-example loss, probabilities and penultimate features (inference mode). A multi-label
  example's loss is the unweighted mean over its known findings."""
  model = nnx.merge(graphdef, state.params, state.batch_stats)
  logits, features = model(model_inputs(batch["image"], cfg), train=False, return_features=True)
  if cfg.task == "multilabel":  # probabilities (B, K): one per finding, not summing to one
    losses = per_example(*multilabel_losses(logits, batch["label"]))
    probabilities = jax.nn.sigmoid(logits.astype(jnp.float32))
  else:
    losses, probabilities = loss_and_probabilities(logits, batch["label"], cfg.model.loss)
  return {"loss": losses, "probabilities": probabilities, "features": features.astype(jnp.float32),
          "label": batch["label"], "index": batch["index"], "mask": batch["mask"]}


def jit_steps(graphdef, tx, cfg, state_sharding, data_sharding, ops: ops_lib.Ops = ops_lib.PLAIN,
              class_weights=None):
  """The jitted steps, with the state replicated and the batch sharded over the mesh. `ops` is
  what the augmentation uses (the model's own are in `graphdef`); `class_weights` weight the
  training loss (None: unweighted)."""
  train = jax.jit(functools.partial(train_step, graphdef=graphdef, tx=tx, cfg=cfg, ops=ops,
                                    class_weights=class_weights),
                  in_shardings=(state_sharding, data_sharding, state_sharding),
                  out_shardings=(state_sharding, state_sharding), donate_argnums=(0, 2))
  evaluate = jax.jit(functools.partial(eval_step, graphdef=graphdef, cfg=cfg),
                     in_shardings=(state_sharding, data_sharding), out_shardings=data_sharding)
  return train, evaluate

