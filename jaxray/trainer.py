"""train_and_evaluate: one experiment, end to end. Check the config, assemble the run, train with
a checkpoint per epoch, select, evaluate, save every prediction, report.

Running the same command twice resumes from the last finished epoch, or, when every epoch is
done, only reports the finished run. A finished run whose `evaluation` fields were changed is
evaluated again from its selected checkpoint, with no training.
"""

import contextlib
import pathlib
import signal
import threading
import time

import jax
import ml_collections
import numpy as np
from tqdm import tqdm

from jaxray import assembly, validation
from jaxray.data import splits as splits_lib
from jaxray.evaluate import evaluators, gradcam, report
from jaxray.evaluate.evaluators import shift
from jaxray.evaluate.predictions import predict, summary
from jaxray.rundir import (checkpoint, events, faults, lock, predictions as predictions_csv,
                           results as results_lib, workdir as workdir_lib)
from jaxray.train import epoch as epoch_lib, mesh as mesh_lib, steps


def train_and_evaluate(config: ml_collections.ConfigDict, workdir, data_dir=None,
                       overrides=()) -> dict:
  """Runs (or resumes, or reports) the experiment `config` in `workdir`; returns results.json."""
  validation.validate(config)  # every field, before anything is prepared, trained or written
  workdir = pathlib.Path(workdir).expanduser()
  chief = workdir_lib.is_chief()
  evaluation_changed = workdir_lib.check(workdir, config)
  finished = results_lib.finished(workdir, config.num_epochs)
  if finished is not None and not evaluation_changed:
    if chief:
      print(f"{workdir} already holds the finished run ({config.num_epochs} epochs); its "
            f"report is {workdir / 'report.md'}. Delete the folder to run it again.")
    return finished
  if finished is not None and chief:
    print(f"{workdir} holds the finished run; evaluating its selected checkpoint again with "
          f"the changed evaluation fields ({', '.join(evaluation_changed)}).")
  workdir_lib.check_writable(workdir)
  with lock.hold(workdir) if chief else contextlib.nullcontext():
    run, state = assembly.assemble(config, data_dir)
    if chief:
      print(f"Dataset {config.dataset.name}: "
            + ", ".join(f"{role} {len(source)}" for role, source in run.splits.items()))
      if run.data_record:
        print(splits_lib.describe(run.data_record))
    workdir_lib.write_config(workdir, config)  # only once the data and the model are usable

    manager = checkpoint.manager(workdir, config.selection.metric, config.selection.mode)
    state, history, runtime_by_epoch = train(run, state, manager, workdir)
    selected = checkpoint.best_epoch(history, config.selection.metric, config.selection.mode)
    results = evaluate(run, state, manager, workdir, history, selected, runtime_by_epoch,
                       overrides)
    manager.close()
  return results


def train(run: assembly.Run, state, manager, workdir: pathlib.Path):
  """(the last epoch's state, metrics.jsonl's epochs, runtime.json's entries): the epochs not
  yet trained, from the latest checkpoint, each saved as it ends."""
  config, chief = run.config, workdir_lib.is_chief()
  logged = workdir_lib.read_history(workdir)
  workdir_lib.check_history(workdir, logged, manager.latest_step() or 0)
  # The newest checkpoint that reads back; a damaged newer one is set aside and trained again.
  start_epoch, state = checkpoint.restore_latest(manager, state, workdir)
  # Only the epochs whose checkpoint completed: a crash may have logged one more.
  history = [h for h in logged if h["epoch"] <= start_epoch]
  if start_epoch and chief:
    print(f"Resuming {workdir} after epoch {start_epoch} of {config.num_epochs}.")
  runtime_by_epoch = workdir_lib.record_runtime(workdir, run.runtime, start_epoch + 1)
  tensorboard = events.EpochWriter(workdir, first_epoch=start_epoch + 1)

  epochs = tqdm(range(start_epoch + 1, config.num_epochs + 1), desc="epochs",
                initial=start_epoch, total=config.num_epochs, disable=not chief)
  with _ctrl_c() as stop:
    for epoch in epochs:
      state, record = _train_one_epoch(run, state, epoch, stop, chief)
      if stop():  # the partial epoch is not saved; the last complete checkpoint stays
        manager.wait_until_finished()
        tensorboard.close()
        raise KeyboardInterrupt(epoch - 1)
      record.update(summary(predict(run, state, run.splits["val"], "val", with_ids=False),
                            "val"))
      if config.track_test_per_epoch:
        record.update(summary(predict(run, state, run.splits["test"], "test", with_ids=False),
                              "test"))
      record["epoch_seconds"] = time.time() - record.pop("started")
      if config.stop_on_nonfinite_loss:
        faults.check_finite(record, history[-1]["epoch"] if history else 0, workdir)
      history.append(record)
      try:
        # metrics.jsonl first: a resume keeps only the epochs whose checkpoint completed.
        workdir_lib.write_history(workdir, history)
        tensorboard.write(record)
        checkpoint.save(manager, epoch, state, record)
        faults.kill_point("checkpoint_save", epoch)  # while orbax writes in the background
      except (OSError, ValueError) as error:  # orbax reports a full disk as a ValueError
        raise faults.disk_full_error(error, workdir, manager.latest_step()) from error
      epochs.set_postfix(train_acc=f"{record['train_accuracy']:.3f}",
                         val_acc=f"{record['val_accuracy']:.3f}")
  tensorboard.close()
  try:
    manager.wait_until_finished()
  except (OSError, ValueError) as error:
    raise faults.disk_full_error(error, workdir, manager.latest_step()) from error
  return state, history, runtime_by_epoch


def _train_one_epoch(run, state, epoch: int, stop, chief: bool):
  """(state, the epoch's training figures) after one epoch of the jitted step."""
  started = time.time()
  running = jax.device_put(steps.zero_metrics(), run.replicated)
  state, running = epoch_lib.train_epoch(run, state, running, epoch_lib.epoch_batches(run, epoch),
                                         total=run.steps_per_epoch, description=f"epoch {epoch}",
                                         show=chief, stop=stop)
  running = mesh_lib.to_host(running)
  return state, {"epoch": epoch, "started": started,
                 "train_loss": float(running["loss_sum"] / running["count"]),
                 "train_accuracy": float(running["correct"] / running["count"]),
                 "train_seconds": time.time() - started}


@contextlib.contextmanager
def _ctrl_c():
  """A `stop()` that turns true at the first Ctrl-C, so training stops between two steps, waits
  for the checkpoint in flight and exits cleanly; a second Ctrl-C interrupts at once."""
  pressed = []
  if threading.current_thread() is not threading.main_thread():
    yield lambda: False
    return

  def handler(signum, frame):
    pressed.append(signum)
    signal.signal(signal.SIGINT, previous)

  previous = signal.signal(signal.SIGINT, handler)
  try:
    yield lambda: bool(pressed)
  finally:
    signal.signal(signal.SIGINT, previous)

def evaluate(run: assembly.Run, last_state, manager, workdir: pathlib.Path, history: list[dict],
             selected: int, runtime_by_epoch: list[dict], overrides=()) -> dict:
  """The selected checkpoint's predictions, then `report_predictions`. Returns results.json's
  content (empty on processes other than 0)."""
  names = run.config.evaluation.evaluators
  # Every process predicts (the eval step is one program over all devices); process 0 evaluates.
  predictions = {}
  if selected != history[-1]["epoch"]:  # the last weights on test too, never used to select
    predictions["test_last_epoch"] = predict(run, last_state, run.splits["test"],
                                             "test (last epoch)")
  state = checkpoint.restore_selected(manager, selected, last_state, workdir, (
      f"It holds the epoch the selection chose, so the run cannot be evaluated: restore "
      f"{workdir} from a copy, or delete it to train the run again."))
  for split in ("val", "test"):
    predictions[split] = predict(run, state, run.splits[split], split)
  for name, examples in run.extra_tests.items():
    predictions[f"extra_{name}"] = predict(run, state, examples, name)
  if "train_sample" in evaluators.needed_predictions(names):
    predictions["train_sample"] = predict(run, state, _train_sample(run), "train (sample)",
                                          with_ids=False)
  if not workdir_lib.is_chief():
    return {}
  return report_predictions(run, state, predictions, workdir, history, selected,
                            runtime_by_epoch, overrides)


def report_predictions(run: assembly.Run, state, predictions: dict, workdir: pathlib.Path,
                       history: list[dict], selected: int, runtime_by_epoch: list[dict],
                       overrides=()) -> dict:
  """Runs the config's evaluators on `predictions` (of the selected checkpoint `state`), then
  writes the predictions CSVs, report.md, TensorBoard's evaluation events and, last,
  results.json, whose content it returns."""
  config = run.config
  results = results_lib.build(
      config=config, class_names=run.class_names, history=history, selected_epoch=selected,
      run_record={"runtime": dict(run.runtime, by_epoch=runtime_by_epoch),
                  "data": run.data_record, "class_balance": run.balance_record},
      overrides=overrides)
  context = evaluators.Context(
      config=config, class_names=run.class_names, workdir=workdir, history=history,
      selected_epoch=selected, predictions=predictions, results=results,
      examples=lambda split, positions: [
          run.splits[split][int(predictions[split]["index"][k])] for k in positions],
      explain=lambda examples, classes: gradcam.of_examples(run, state, examples, classes))
  evaluators.run_all(config.evaluation.evaluators, context)
  results["artifacts"] = context.artifacts
  threshold = results_lib.decision_rule(results)["value"]
  results["predictions"] = {
      split: predictions_csv.write(workdir, split, predictions[split], run.class_names,
                                   threshold, results.get("thresholds"))
      for split in predictions if split != "train_sample"}
  report.write(workdir / "report.md", results, history)
  faults.kill_point("final_evaluation")
  events.write_evaluation(workdir, results)  # TensorBoard: the test figures and every PNG
  results_lib.write(workdir, results)  # last: it marks the run finished
  for warning in shift.warnings(results):
    print(f"\nWarning: {warning}")
  return results


def _train_sample(run: assembly.Run):
  """A seeded sample of at most `evaluation.tsne_max_train` training examples, in index order."""
  config = run.config
  size = len(run.splits["train"])
  sample = np.random.default_rng(config.seed).choice(
      size, min(size, config.evaluation.tsne_max_train), replace=False)
  return splits_lib.Subset(run.splits["train"], np.sort(sample))
