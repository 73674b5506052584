"""`assemble`: everything a run trains and evaluates with, built from its config in one place.

The trainer (jaxray/trainer.py), the bench (jaxray/bench/) and the multi-process test worker all
start from here, so what they measure or test is what `python -m jaxray.main` runs: the data
sources, the device mesh, the kernels the `runtime` section chose, the model with its pretrained
weights, the optimizer and the jitted steps (the parts, a `Run`), and the replicated initial
training state, returned beside them. The parts never change once built; the state goes in and
out of the steps.
"""

import dataclasses
from typing import Any, Callable, Mapping, Sequence

import jax
import ml_collections
from jax.sharding import Mesh, NamedSharding

from jaxray import data, models, ops as ops_lib, runtime
from jaxray.data import folder_test, pipeline, splits as splits_lib
from jaxray.train import balance, mesh as mesh_lib, optimizer, steps


@dataclasses.dataclass(frozen=True)
class Run:
  """A run's parts, built once: what its steps compute with, never the state they update.

  Adding to training (EMA of the weights, gradient accumulation) changes `steps.TrainState`,
  the step functions and a config field; this record only carries the compiled steps.
  """

  config: ml_collections.ConfigDict
  mesh: Mesh
  splits: Mapping[str, Any]  # role ("train", "val", "test") -> random-access source
  class_names: tuple[str, ...]
  runtime: dict  # jaxray.runtime.record: requested and resolved settings of this process
  ops: ops_lib.Ops
  graphdef: Any
  tx: Any  # optax.GradientTransformation
  train_step: Callable  # (state, batch, metrics) -> (state, metrics), jitted
  eval_step: Callable  # (state, batch) -> per-example outputs, jitted
  steps_per_epoch: int
  eval_batch_size: int  # every split is evaluated with this one compiled batch shape
  # how the splits were made (jaxray.data.splits.select); empty for splits given in memory
  data_record: dict = dataclasses.field(default_factory=dict)
  # the train split's labels when class_balance needs them (balanced sampling), else None
  train_labels: Any = None
  balance_record: dict = dataclasses.field(default_factory=dict)  # jaxray.train.balance.record
  # name -> in-memory examples of `dataset.extra_tests` (jaxray.data.folder_test)
  extra_tests: Mapping[str, Any] = dataclasses.field(default_factory=dict)

  @property
  def replicated(self) -> NamedSharding:
    return mesh_lib.replicated(self.mesh)


def load_splits(config: ml_collections.ConfigDict, data_dir=None):
  """(role -> source, class names, record) of the experiment's dataset, prepared first if
  needed. The record says how validation was made (jaxray.data.splits.select) and, as `source`,
  what the prepared data was made from and whether that raw folder has changed since
  (jaxray.data.source).

  With several processes, process 0 prepares (in a folder every process sees) while the others
  wait, then they all open it: no two processes ever write one dataset.
  """
  def load():
    return data.load_with_source(
        config.dataset.name, data_dir, config.dataset.prepared_dir or None,
        config.dataset.config or None, allow_changed_source=config.dataset.allow_changed_source,
        min_image_side=config.dataset.min_image_side, settings=config.dataset.to_dict())

  if jax.process_count() == 1:
    sources, info, source = load()
  else:
    from jax.experimental import multihost_utils
    loaded = load() if jax.process_index() == 0 else None
    multihost_utils.sync_global_devices("jaxray: dataset prepared")
    sources, info, source = loaded or load()
  check_task(config, data.is_multilabel(info))
  splits, record = splits_lib.select(sources, config.dataset)
  record = dict(record, source=source)
  return splits, data.class_names(config.dataset.name, config.dataset.config, info), record


def check_task(config: ml_collections.ConfigDict, multilabel_data: bool) -> None:
  """A multi-label dataset trains only under task "multilabel", and that task only on one."""
  if multilabel_data != (config.task == "multilabel"):
    kind = "several findings per image" if multilabel_data else "one class per image"
    wanted = "multilabel" if multilabel_data else "single_label"
    raise ValueError(f"task={config.task!r}, but dataset {config.dataset.name!r} has {kind}: "
                     f"set --set task={wanted}"
                     + (" (with model.loss=sigmoid)" if multilabel_data else "") + ".")


def load_extra_tests(config: ml_collections.ConfigDict, class_names) -> dict:
  """name -> examples of each `dataset.extra_tests` folder; skipped files are printed."""
  extra = {}
  for spec in config.dataset.extra_tests:
    name, examples, skipped = folder_test.load(spec, class_names, config.dataset.min_image_side)
    if jax.process_index() == 0:
      print(f"Extra test set {name}: {len(examples)} images"
            + (f", {len(skipped)} skipped" if skipped else "") + ".")
      for path, reason in skipped[:20]:
        print(f"  skipped {path}: {reason}")
    extra[name] = examples
  return extra


def assemble(config: ml_collections.ConfigDict, data_dir=None, *,
             splits: Mapping[str, Any] | None = None,
             class_names: Sequence[str] | None = None) -> tuple[Run, steps.TrainState]:
  """(the run `config` describes, its initial state replicated over the mesh). `splits` and
  `class_names` replace the dataset when given (in-memory sources for the bench and tests);
  otherwise it is loaded from `data_dir`."""
  mesh = mesh_lib.create_mesh()
  data_record = {}
  extra_tests = {}
  if splits is None:
    splits, class_names, data_record = load_splits(config, data_dir)
    extra_tests = load_extra_tests(config, class_names)
  # input.eval_batch_size is an upper bound: validation runs every epoch, so its batches are
  # evened out to pad as little as possible; every split uses that one compiled shape.
  eval_batch_size = pipeline.even_batch_size(len(splits["val"]) or config.input.eval_batch_size,
                                             config.input.eval_batch_size, mesh.size)

  steps_per_epoch = pipeline.steps_per_epoch(len(splits["train"]), config.input.batch_size,
                                             config.input.drop_remainder, mesh.size)
  train_labels = weights = None
  if balance.needs_labels(config.class_balance):
    train_labels = balance.read_labels(splits["train"])
    if config.class_balance.loss_weights == "balanced":
      weights = (balance.positive_weights(train_labels) if config.task == "multilabel"
                 else balance.loss_weights(train_labels, len(class_names)))
  return _network(config, mesh, splits, class_names, steps_per_epoch, eval_batch_size,
                  load_weights=True, class_weights=weights, data_record=data_record,
                  train_labels=train_labels, extra_tests=extra_tests,
                  balance_record=balance.record(config.class_balance, train_labels,
                                                len(class_names), weights))


def assemble_for_inference(config: ml_collections.ConfigDict, class_names: Sequence[str],
                           batch_size: int) -> tuple[Run, steps.TrainState]:
  """(the run `config` describes with no dataset, a state to restore into): for predicting on
  files (jaxray.predict). The state has the training state's structure, so a checkpoint of the
  run restores into it; ImageNet weights are not fetched, since the checkpoint replaces them."""
  mesh = mesh_lib.create_mesh()
  batch_size = -(-batch_size // mesh.size) * mesh.size  # a multiple of the device count
  return _network(config, mesh, {}, class_names, 1, batch_size, load_weights=False)


def _network(config, mesh, splits, class_names, steps_per_epoch, eval_batch_size, *,
             load_weights: bool, class_weights=None, **records) -> tuple[Run, steps.TrainState]:
  """(the model, optimizer and jitted steps of a run on `mesh`, its replicated initial state).
  `records` fill the Run's record fields (data_record, train_labels, balance_record)."""
  backend = jax.default_backend()
  record = runtime.record(config.runtime, backend)
  kernels = ops_lib.from_runtime(record["resolved"])  # the kernels the record says ran
  num_outputs = (1 if config.model.loss == "sigmoid" and config.task != "multilabel"
                 else len(class_names))
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
  run = Run(config=config, mesh=mesh, splits=dict(splits), class_names=tuple(class_names),
            runtime=record, ops=kernels, graphdef=graphdef, tx=tx, train_step=train_step,
            eval_step=eval_step, steps_per_epoch=steps_per_epoch,
            eval_batch_size=eval_batch_size, **records)
  return run, state
