"""`assemble`: everything a run trains and evaluates with, built from its config in one place.

The trainer (jaxray/train/loop.py), the bench (jaxray/bench/) and the multi-process test worker
all start from here, so what they measure or test is what `python -m jaxray.main` runs: the data
sources, the device mesh, the kernels the `runtime` section chose, the model with its pretrained
weights, the optimizer, the replicated state and the jitted steps.
"""

import dataclasses
from typing import Any, Callable, Mapping, Sequence

import jax
import ml_collections
from jax.sharding import Mesh, NamedSharding

from jaxray import data, models, ops as ops_lib, runtime
from jaxray.data import pipeline, splits as splits_lib
from jaxray.train import balance, mesh as mesh_lib, optimizer, steps


@dataclasses.dataclass
class Run:
  """A run ready to train: its parts, and the state that training replaces step by step."""

  config: ml_collections.ConfigDict
  mesh: Mesh
  splits: Mapping[str, Any]  # role ("train", "val", "test") -> random-access source
  class_names: tuple[str, ...]
  runtime: dict  # jaxray.runtime.record: requested and resolved settings of this process
  ops: ops_lib.Ops
  graphdef: Any
  tx: Any  # optax.GradientTransformation
  state: steps.TrainState  # replicated over the mesh
  train_step: Callable  # (state, batch, metrics) -> (state, metrics), jitted
  eval_step: Callable  # (state, batch) -> per-example outputs, jitted
  steps_per_epoch: int
  eval_batch_size: int  # every split is evaluated with this one compiled batch shape
  # how the splits were made (jaxray.data.splits.select); empty for splits given in memory
  data_record: dict = dataclasses.field(default_factory=dict)
  # the train split's labels when class_balance needs them (balanced sampling), else None
  train_labels: Any = None
  balance_record: dict = dataclasses.field(default_factory=dict)  # jaxray.train.balance.record

  @property
  def replicated(self) -> NamedSharding:
    return mesh_lib.replicated(self.mesh)


def load_splits(config: ml_collections.ConfigDict, data_dir=None):
  """(role -> source, class names, record) of the experiment's dataset, prepared first if
  needed. The record says how validation was made (jaxray.data.splits.select).

  With several processes, process 0 prepares (in a folder every process sees) while the others
  wait, then they all open it: no two processes ever write one dataset.
  """
  splits_lib.check_fraction(config.dataset.val_from_train.fraction)  # before preparing

  def load():
    return data.load(config.dataset.name, data_dir, config.dataset.prepared_dir or None,
                     config.dataset.config or None)

  if jax.process_count() == 1:
    sources, info = load()
  else:
    from jax.experimental import multihost_utils
    loaded = load() if jax.process_index() == 0 else None
    multihost_utils.sync_global_devices("jaxray: dataset prepared")
    sources, info = loaded or load()
  splits, record = splits_lib.select(sources, config.dataset)
  return splits, data.class_names(config.dataset.name, config.dataset.config, info), record


def assemble(config: ml_collections.ConfigDict, data_dir=None, *,
             splits: Mapping[str, Any] | None = None,
             class_names: Sequence[str] | None = None) -> Run:
  """The run `config` describes. `splits` and `class_names` replace the dataset when given
  (in-memory sources for the bench and tests); otherwise it is loaded from `data_dir`."""
  mesh = mesh_lib.create_mesh()
  mesh_lib.check_batch_size(config.input.batch_size, mesh, "input.batch_size")
  mesh_lib.check_batch_size(config.input.eval_batch_size, mesh, "input.eval_batch_size")
  data_record = {}
  if splits is None:
    splits, class_names, data_record = load_splits(config, data_dir)
  # input.eval_batch_size is an upper bound: validation runs every epoch, so its batches are
  # evened out to pad as little as possible; every split uses that one compiled shape.
  eval_batch_size = pipeline.even_batch_size(len(splits["val"]) or config.input.eval_batch_size,
                                             config.input.eval_batch_size, mesh.size)

  steps_per_epoch = pipeline.steps_per_epoch(len(splits["train"]), config.input.batch_size,
                                             config.input.drop_remainder, mesh.size)
  balance.check(config.class_balance)
  train_labels = weights = None
  if balance.needs_labels(config.class_balance):
    train_labels = balance.read_labels(splits["train"])
    if config.class_balance.loss_weights == "balanced":
      weights = balance.loss_weights(train_labels, len(class_names))
  run = _network(config, mesh, splits, class_names, steps_per_epoch, eval_batch_size,
                 load_weights=True, class_weights=weights)
  run.data_record = data_record
  run.train_labels = train_labels
  run.balance_record = balance.record(config.class_balance, train_labels, len(class_names),
                                      weights)
  return run


def assemble_for_inference(config: ml_collections.ConfigDict, class_names: Sequence[str],
                           batch_size: int) -> Run:
  """The run `config` describes, with no dataset: for restoring a checkpoint and predicting on
  files (jaxray.predict). Its state has the training state's structure, so a checkpoint of the
  run restores into it; ImageNet weights are not fetched, since the checkpoint replaces them."""
  mesh = mesh_lib.create_mesh()
  batch_size = -(-batch_size // mesh.size) * mesh.size  # a multiple of the device count
  return _network(config, mesh, {}, class_names, 1, batch_size, load_weights=False)


def _network(config, mesh, splits, class_names, steps_per_epoch, eval_batch_size, *,
             load_weights: bool, class_weights=None) -> Run:
  """The model, optimizer, replicated state and jitted steps of a run, on `mesh`."""
  backend = jax.default_backend()
  record = runtime.record(config.runtime, backend)
  kernels = ops_lib.from_runtime(record["resolved"])  # the kernels the record says ran
  num_outputs = 1 if config.model.loss == "sigmoid" else len(class_names)
  model = models.build_model(config.model, num_outputs, config.input.image_size, config.seed,
                             config.input.channels, kernels)
  if load_weights and config.model.pretrained.source:
    from jaxray import weights  # only runs that start from ImageNet weights need it
    weights.load_pretrained(model, config.model)

  tx = optimizer.build(config.optimizer, steps_per_epoch, config.model.freeze_backbone,
                       config.num_epochs)
  graphdef, state = steps.create_state(model, tx, config.seed)
  replicated = mesh_lib.replicated(mesh)
  state = jax.device_put(state, replicated)
  train_step, eval_step = steps.jit_steps(graphdef, tx, config, replicated,
                                          mesh_lib.data_sharded(mesh), kernels, class_weights)
  return Run(config=config, mesh=mesh, splits=dict(splits), class_names=tuple(class_names),
             runtime=record, ops=kernels, graphdef=graphdef, tx=tx, state=state,
             train_step=train_step, eval_step=eval_step, steps_per_epoch=steps_per_epoch,
             eval_batch_size=eval_batch_size)
