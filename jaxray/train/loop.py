"""train_and_evaluate: assemble the run, train with a checkpoint per epoch, evaluate, report.

Running the same command twice resumes from the last finished epoch, or, when every epoch is
done, only reports the finished run.
"""

import pathlib
import time

import jax
import ml_collections
from tqdm import tqdm

from jaxray import assembly
from jaxray.data import pipeline, splits
from jaxray.evaluate import final, threshold
from jaxray.evaluate.predictions import predict, summary
from jaxray.train import (checkpoint, events, faults, mesh as mesh_lib, steps,
                          workdir as workdir_lib)


def train_epoch(run, metrics, batches, *, total=None, description=None, show=True):
  """Runs the jitted train step over `batches`, updating `run.state`; the summed metrics.

  At most one step is in flight: without the wait, asynchronous dispatch queues the whole epoch
  in seconds and the progress bar sits at 100% while the steps run. The next batch is already on
  its way to the devices when the wait starts, so they get no idle time to speak of.
  """
  for batch in tqdm(batches, total=total, desc=description, leave=False, disable=not show):
    batch = mesh_lib.to_global(batch, run.mesh)
    jax.block_until_ready(metrics)
    run.state, metrics = run.train_step(run.state, batch, metrics)
  return metrics


def epoch_batches(run, epoch: int):
  """The training batches of `epoch`: a pure function of (seed, epoch), so resuming needs no
  input-pipeline state."""
  config = run.config
  order = (pipeline.balanced_order(run.train_labels, config.seed, epoch)
           if config.class_balance.sampling == "balanced" else None)
  return pipeline.train_batches(run.splits["train"], batch_size=config.input.batch_size,
                                image_size=config.input.image_size, seed=config.seed,
                                epoch=epoch, drop_remainder=config.input.drop_remainder,
                                multiple=run.mesh.size, num_threads=config.input.num_threads,
                                order=order)


def train_and_evaluate(config: ml_collections.ConfigDict, workdir, data_dir=None,
                       overrides=()) -> dict:
  """Runs (or resumes, or reports) the experiment `config` in `workdir`; returns results.json."""
  workdir = pathlib.Path(workdir).expanduser()
  chief = workdir_lib.is_chief()
  threshold.check_config(**config.evaluation.threshold)  # not after the training it would end
  workdir_lib.check(workdir, config)
  finished = workdir_lib.finished_results(workdir, config)
  if finished is not None:
    if chief:
      print(f"{workdir} already holds the finished run ({config.num_epochs} epochs); its "
            f"report is {workdir / 'report.md'}. Delete the folder to run it again.")
    return finished
  workdir_lib.check_writable(workdir)
  run = assembly.assemble(config, data_dir)
  if chief:
    print(f"Dataset {config.dataset.name}: "
          + ", ".join(f"{role} {len(source)}" for role, source in run.splits.items()))
    if run.data_record:
      print(splits.describe(run.data_record))
  workdir_lib.write_config(workdir, config)  # only once the data and the model are usable

  manager = checkpoint.manager(workdir, config.selection.metric, config.selection.mode)
  start_epoch = manager.latest_step() or 0
  # Only the epochs whose checkpoint completed: a crash may have logged one more.
  history = [h for h in workdir_lib.read_history(workdir) if h["epoch"] <= start_epoch]
  if start_epoch:
    run.state = checkpoint.restore(manager, start_epoch, run.state)
    if chief:
      print(f"Resuming {workdir} after epoch {start_epoch} of {config.num_epochs}.")
  runtime_by_epoch = workdir_lib.record_runtime(workdir, run.runtime, start_epoch + 1)
  tensorboard = events.EpochWriter(workdir, first_epoch=start_epoch + 1)

  epochs = tqdm(range(start_epoch + 1, config.num_epochs + 1), desc="epochs",
                initial=start_epoch, total=config.num_epochs, disable=not chief)
  for epoch in epochs:
    started = time.time()
    running = jax.device_put(steps.zero_metrics(), run.replicated)
    running = mesh_lib.to_host(train_epoch(run, running, epoch_batches(run, epoch),
                                           total=run.steps_per_epoch,
                                           description=f"epoch {epoch}", show=chief))
    record = {"epoch": epoch,
              "train_loss": float(running["loss_sum"] / running["count"]),
              "train_accuracy": float(running["correct"] / running["count"]),
              "train_seconds": time.time() - started}
    record.update(summary(predict(run, run.splits["val"], "val"), "val"))
    if config.track_test_per_epoch:
      record.update(summary(predict(run, run.splits["test"], "test"), "test"))
    record["epoch_seconds"] = time.time() - started
    if config.stop_on_nonfinite_loss:
      faults.check_finite(record, history[-1]["epoch"] if history else 0, workdir)
    history.append(record)
    try:
      # metrics.jsonl first: a resume keeps only the epochs whose checkpoint completed.
      workdir_lib.write_history(workdir, history)
      tensorboard.write(record)
      checkpoint.save(manager, epoch, run.state, record)
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

  selected = checkpoint.best_epoch(history, config.selection.metric, config.selection.mode)
  last_test = None  # the final weights on test too, when selection chose another epoch
  if selected != history[-1]["epoch"]:
    last_test = predict(run, run.splits["test"], "test (last epoch)")
  run.state = checkpoint.restore(manager, selected, run.state)
  results = final.evaluate_and_report(run, workdir, history, selected, runtime_by_epoch,
                                      overrides, last_test)
  manager.close()
  return results
