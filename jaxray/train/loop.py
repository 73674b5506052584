"""train_and_evaluate: prepare data, train with per-epoch checkpoints, evaluate, report.

Running the same command twice resumes from the last finished epoch, or, when every epoch is
done, only re-writes the evaluation of the selected checkpoint.
"""

import json
import pathlib
import time

import jax
import ml_collections
import numpy as np
from tqdm import tqdm

from jaxray import data, models
from jaxray.data import pipeline
from jaxray.evaluate import metrics as metrics_lib, plots, report
from jaxray.train import checkpoint, mesh as mesh_lib, optimizer, steps as steps_lib


class Subset:
  """A random-access source restricted to `indices` (t-SNE's sample of the training split)."""

  def __init__(self, source, indices):
    self.source, self.indices = source, np.asarray(indices)

  def __len__(self):
    return len(self.indices)

  def __getitem__(self, i):
    return self.source[int(self.indices[i])]


def _is_chief() -> bool:
  return jax.process_index() == 0


def _sync(name: str) -> None:
  """Waits for every process (multi-host runs); a no-op with one process."""
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils
    multihost_utils.sync_global_devices(name)


def _check_workdir(workdir: pathlib.Path, config: ml_collections.ConfigDict) -> None:
  """Never mix two configurations in one workdir: only num_epochs may grow between runs."""
  path = workdir / "config.json"
  if path.exists():
    previous = json.loads(path.read_text())
    current = json.loads(config.to_json())
    changed = sorted(k for k in set(previous) | set(current)
                     if k != "num_epochs" and previous.get(k) != current.get(k))
    if changed:
      raise ValueError(f"{workdir} holds a run with a different configuration (fields: "
                       f"{', '.join(changed)}). Pass another --workdir, or delete {workdir} to "
                       f"start over.")


def _write_config(workdir: pathlib.Path, config: ml_collections.ConfigDict) -> None:
  if _is_chief():
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "config.json").write_text(config.to_json(indent=2))


def _read_history(workdir: pathlib.Path) -> list[dict]:
  path = workdir / "metrics.jsonl"
  if not path.exists():
    return []
  return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _write_history(workdir: pathlib.Path, history: list[dict]) -> None:
  if _is_chief():
    tmp = workdir / "metrics.jsonl.tmp"
    tmp.write_text("".join(json.dumps(h) + "\n" for h in history))
    tmp.replace(workdir / "metrics.jsonl")


def _load_data(config: ml_collections.ConfigDict, data_dir):
  """Process 0 prepares the dataset if needed (in a folder every process sees) while the others
  wait; then they open it. Several processes never write one dataset at the same time."""
  def load():
    return data.load(config.dataset.name, data_dir, config.dataset.get("prepared_dir") or None,
                     config.dataset.get("config") or None)
  if jax.process_count() == 1:
    return load()
  loaded = load() if _is_chief() else None
  _sync("jaxray: dataset prepared")
  return loaded or load()


def train_epoch(train_fn, state, metrics, batches, mesh, *, total=None, description=None,
                show=True):
  """Runs the jitted train step over `batches`: the new state and the summed metrics (on device).

  At most one step is in flight: without the wait, asynchronous dispatch queues the whole epoch
  in seconds and the progress bar sits at 100% while the steps run. The next batch is already on
  its way to the devices when the wait starts, so they get no idle time to speak of.
  """
  for batch in tqdm(batches, total=total, desc=description, leave=False, disable=not show):
    batch = mesh_lib.to_global(batch, mesh)
    jax.block_until_ready(metrics)
    state, metrics = train_fn(state, batch, metrics)
  return state, metrics


def predict(eval_fn, state, source, config, mesh, description="eval", *, batch_size) -> dict:
  """Every example of `source` once: label, probabilities, features, loss, index (host numpy)."""
  batches = pipeline.eval_batches(source, batch_size=batch_size,
                                  image_size=config.input.image_size,
                                  num_threads=config.input.num_threads)
  outputs = []
  for batch in tqdm(batches, total=pipeline.num_eval_steps(len(source), batch_size),
                    desc=description, leave=False, disable=not _is_chief()):
    outputs.append(mesh_lib.to_host(eval_fn(state, mesh_lib.to_global(batch, mesh))))
  merged = {k: np.concatenate([o[k] for o in outputs]) for k in outputs[0]}
  keep = merged.pop("mask").astype(bool)
  merged = {k: v[keep] for k, v in merged.items()}
  order = np.argsort(merged["index"], kind="stable")
  return {k: v[order] for k, v in merged.items()}


def _split_summary(prediction: dict, split: str) -> dict:
  summary = {f"{split}_loss": float(prediction["loss"].mean()),
             f"{split}_accuracy": float((prediction["probabilities"].argmax(-1)
                                         == prediction["label"]).mean())}
  if prediction["probabilities"].shape[1] == 2 and len(np.unique(prediction["label"])) == 2:
    summary[f"{split}_roc_auc"] = metrics_lib.binary_metrics(
        prediction["label"], prediction["probabilities"])["roc_auc"]
  return summary


def _platform() -> dict:
  device = jax.devices()[0]
  return {"backend": jax.default_backend(), "device_kind": device.device_kind,
          "device_count": jax.device_count(), "process_count": jax.process_count()}


def _finished_results(workdir: pathlib.Path, config: ml_collections.ConfigDict) -> dict | None:
  path = workdir / "results.json"
  if not path.exists():
    return None
  results = json.loads(path.read_text())
  return results if results.get("epochs_trained") == config.num_epochs else None


def train_and_evaluate(config: ml_collections.ConfigDict, workdir, data_dir=None,
                       overrides=()) -> dict:
  """Runs (or resumes, or reports) the experiment `config` in `workdir`; returns results.json."""
  workdir = pathlib.Path(workdir).expanduser()
  _check_workdir(workdir, config)
  finished = _finished_results(workdir, config)
  if finished is not None:
    if _is_chief():
      print(f"{workdir} already holds the finished run ({config.num_epochs} epochs); its "
            f"report is {workdir / 'report.md'}. Delete the folder to run it again.")
    return finished
  mesh = mesh_lib.create_mesh()
  mesh_lib.check_batch_size(config.input.batch_size, mesh, "input.batch_size")
  mesh_lib.check_batch_size(config.input.eval_batch_size, mesh, "input.eval_batch_size")

  sources, info = _load_data(config, data_dir)
  class_names = tuple(info.features["label"].names)
  splits = {role: sources[config.dataset[f"{role}_split"]] for role in ("train", "val", "test")}
  if _is_chief():
    print(f"Dataset {config.dataset.name}: "
          + ", ".join(f"{role} {len(source)}" for role, source in splits.items()))
  # input.eval_batch_size is an upper bound: validation runs every epoch, so its batches are
  # evened out to pad as little as possible; every split uses that one compiled shape.
  eval_batch_size = pipeline.even_batch_size(len(splits["val"]), config.input.eval_batch_size,
                                             mesh.size)

  num_outputs = 1 if config.model.loss == "sigmoid" else len(class_names)
  model = models.build_model(config.model, num_outputs, config.input.image_size, config.seed,
                             config.input.get("channels", 3))
  if config.model.pretrained.source:
    from jaxray import weights  # only runs that start from ImageNet weights need it
    weights.load_pretrained(model, config.model)
  drop_remainder = config.input.get("drop_remainder", False)
  steps_per_epoch = pipeline.steps_per_epoch(len(splits["train"]), config.input.batch_size,
                                             drop_remainder, mesh.size)
  tx = optimizer.build(config.optimizer, steps_per_epoch, config.model.freeze_backbone)
  graphdef, state = steps_lib.create_state(model, tx, config.seed)
  replicated = mesh_lib.replicated(mesh)
  state = jax.device_put(state, replicated)
  train_fn, eval_fn = steps_lib.jit_steps(graphdef, tx, config, replicated,
                                          mesh_lib.data_sharded(mesh))
  _write_config(workdir, config)  # only once the data and the model are known to be usable

  selection = config.selection
  manager = checkpoint.manager(workdir, selection.metric, selection.mode)
  history = _read_history(workdir)
  start_epoch = manager.latest_step() or 0
  if start_epoch:
    state = checkpoint.restore(manager, start_epoch, state)
    history = [h for h in history if h["epoch"] <= start_epoch]
    if _is_chief():
      print(f"Resuming {workdir} after epoch {start_epoch} of {config.num_epochs}.")

  epochs = tqdm(range(start_epoch + 1, config.num_epochs + 1), desc="epochs",
                initial=start_epoch, total=config.num_epochs, disable=not _is_chief())
  for epoch in epochs:
    started = time.time()
    running = jax.device_put(steps_lib.zero_metrics(), replicated)
    batches = pipeline.train_batches(splits["train"], batch_size=config.input.batch_size,
                                     image_size=config.input.image_size, seed=config.seed,
                                     epoch=epoch, drop_remainder=drop_remainder,
                                     multiple=mesh.size, num_threads=config.input.num_threads)
    state, running = train_epoch(train_fn, state, running, batches, mesh, total=steps_per_epoch,
                                 description=f"epoch {epoch}", show=_is_chief())
    running = mesh_lib.to_host(running)
    record = {"epoch": epoch,
              "train_loss": float(running["loss_sum"] / running["count"]),
              "train_accuracy": float(running["correct"] / running["count"]),
              "train_seconds": time.time() - started}
    record.update(_split_summary(predict(eval_fn, state, splits["val"], config, mesh, "val",
                                         batch_size=eval_batch_size),
                                 "val"))
    if config.track_test_per_epoch:
      record.update(_split_summary(predict(eval_fn, state, splits["test"], config, mesh,
                                           "test", batch_size=eval_batch_size), "test"))
    record["epoch_seconds"] = time.time() - started
    checkpoint.save(manager, epoch, state, record)
    history.append(record)
    _write_history(workdir, history)
    epochs.set_postfix(train_acc=f"{record['train_accuracy']:.3f}",
                       val_acc=f"{record['val_accuracy']:.3f}")
  manager.wait_until_finished()

  selected = checkpoint.best_epoch(history, selection.metric, selection.mode)
  last_test = None  # the final weights on test too, when selection chose another epoch
  if selected != history[-1]["epoch"]:
    last_test = predict(eval_fn, state, splits["test"], config, mesh, "test (last epoch)",
                        batch_size=eval_batch_size)
  state = checkpoint.restore(manager, selected, state)
  results = _final_evaluation(config, workdir, eval_fn, state, splits, class_names, mesh,
                              history, selected, overrides, eval_batch_size, last_test)
  manager.close()
  return results


def _final_evaluation(config, workdir, eval_fn, state, splits, class_names, mesh, history,
                      selected, overrides, eval_batch_size, last_test=None) -> dict:
  """Evaluates the selected checkpoint on val and test and writes every artifact.

  `last_test` holds the last epoch's test predictions when selection chose an earlier epoch:
  results.json and report.md give its figures beside the selected ones (never used to select),
  so what the selection rule gained or lost is in the run's own record.
  """
  predictions = {split: predict(eval_fn, state, splits[split], config, mesh, split,
                                batch_size=eval_batch_size)
                 for split in ("val", "test")}
  rng = np.random.default_rng(config.seed)
  train_size = len(splits["train"])
  sample = np.sort(rng.choice(train_size, min(train_size, config.evaluation.tsne_max_train),
                              replace=False))
  predictions["train"] = predict(eval_fn, state, Subset(splits["train"], sample), config, mesh,
                                 "train (t-SNE sample)", batch_size=eval_batch_size)
  if not _is_chief():
    return {}
  evaluation = config.evaluation
  results = {
      "experiment": config.experiment,
      "overrides": list(overrides),
      "class_names": list(class_names),
      "platform": _platform(),
      "selected_epoch": selected,
      "selection": config.selection.to_dict(),
      "epochs_trained": len(history),
      "mean_epoch_seconds": float(np.mean([h["epoch_seconds"] for h in history])),
      "mean_train_seconds": float(np.mean([h["train_seconds"] for h in history])),
      "reference": config.reference.to_dict(),
  }
  for split in ("val", "test"):
    p = predictions[split]
    results[split] = metrics_lib.evaluate(p["label"], p["probabilities"], class_names,
                                          bootstrap_samples=evaluation.bootstrap_samples,
                                          seed=config.seed)
    results[split]["loss"] = float(p["loss"].mean())  # report 004 quotes test loss
  if last_test is None:  # the selected epoch is the last: its figures, not a second bootstrap
    last_figures = {k: v for k, v in results["test"].items() if k != "loss"}
  else:
    last_figures = metrics_lib.evaluate(last_test["label"], last_test["probabilities"],
                                        class_names, seed=config.seed,
                                        bootstrap_samples=evaluation.bootstrap_samples)
  results["last_epoch"] = {"epoch": history[-1]["epoch"], "test": last_figures}
  (workdir / "results.json").write_text(json.dumps(results, indent=2))

  test = predictions["test"]
  plots.curves(history, workdir / "curves.png")
  plots.confusion_matrix(results["test"]["confusion_matrix"], class_names,
                         workdir / "confusion_matrix.png", title=f"{config.experiment}: test")
  plots.roc_curve(test["label"], test["probabilities"], class_names, workdir / "roc.png")
  shown = _failure_cases(test, evaluation.failure_cases)
  examples = [splits["test"][int(test["index"][k])] for k in shown]
  plots.failure_grid([e["image"] for e in examples], test["label"][shown],
                     test["probabilities"][shown].argmax(-1), class_names,
                     workdir / "failure_cases.png",
                     titles=[_text(e.get("file_name", "")) for e in examples])
  plots.tsne({"test": test["features"], "train": predictions["train"]["features"]},
             {"test": test["label"], "train": predictions["train"]["label"]}, class_names,
             workdir / "tsne.png", seed=config.seed)
  report.write(workdir / "report.md", results, history, config.reference.to_dict())
  return results


def _failure_cases(prediction: dict, count: int) -> np.ndarray:
  """The most confident mistakes first, then correct examples, as report 000's grid mixes both."""
  predicted = prediction["probabilities"].argmax(-1)
  confidence = prediction["probabilities"].max(-1)
  wrong = np.flatnonzero(predicted != prediction["label"])
  right = np.flatnonzero(predicted == prediction["label"])
  wrong = wrong[np.argsort(-confidence[wrong], kind="stable")][:max(count // 2, count - len(right))]
  right = right[:count - len(wrong)]
  return np.concatenate([wrong, right]).astype(int)


def _text(value) -> str:
  return value.decode() if isinstance(value, bytes) else str(value)
