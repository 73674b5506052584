"""Orbax checkpoints: one per epoch, keeping the latest (to resume) and the best (to report).

"Best" has Keras `ModelCheckpoint(save_best_only=True)` semantics: the epoch with the best
selection metric, the earliest one on ties. A run killed mid-epoch loses at most that epoch. A
checkpoint damaged afterwards (a file cut short by a copy or a disk fault) is set aside when the
run resumes, which goes on from the newest one kept that reads back (`restore_latest`).
"""

import pathlib
import sys

import jax
import orbax.checkpoint as ocp
from orbax.checkpoint import checkpoint_managers as policies


def selection_key(metrics: dict, metric: str, mode: str):
  """Sort key: larger is better; on ties the earlier epoch wins."""
  value = metrics[metric]
  return (value if mode == "max" else -value, -metrics["epoch"])


def best_epoch(history: list[dict], metric: str, mode: str) -> int:
  return max(history, key=lambda m: selection_key(m, metric, mode))["epoch"]


def manager(workdir, metric: str, mode: str) -> ocp.CheckpointManager:
  if mode not in ("max", "min"):
    raise ValueError(f"selection.mode must be 'max' or 'min', got {mode!r}")
  keep = policies.AnyPreservationPolicy([
      policies.LatestN(n=1),
      policies.BestN(get_metric_fn=lambda m: selection_key(m, metric, mode), n=1),
  ])
  options = ocp.CheckpointManagerOptions(preservation_policy=keep, create=True)
  return ocp.CheckpointManager(pathlib.Path(workdir).absolute() / "checkpoints", options=options)


def save(mgr: ocp.CheckpointManager, epoch: int, state, metrics: dict) -> None:
  mgr.save(epoch, args=ocp.args.StandardSave(state), metrics=metrics)


def restore(mgr: ocp.CheckpointManager, epoch: int, target):
  """`target` (a state with the right structure and shardings) tells orbax what to build."""
  return mgr.restore(epoch, args=ocp.args.StandardRestore(target))


def damaged_error(workdir, epoch: int, error: Exception, what: str) -> ValueError:
  """A user's error for checkpoint `epoch` that does not read back; `what` says what to do."""
  detail = " ".join(str(error).split())[:200] or type(error).__name__
  return ValueError(f"the checkpoint of epoch {epoch} in {pathlib.Path(workdir) / 'checkpoints'} "
                    f"cannot be read ({detail}): it is damaged. {what}")


def restore_selected(mgr: ocp.CheckpointManager, epoch: int, target, workdir, what: str):
  """The state of checkpoint `epoch`, the one a finished run selected; a checkpoint that does not
  read back stops with `damaged_error` (`what`: what to do), never an orbax traceback."""
  try:
    return restore(mgr, epoch, target)
  except Exception as error:  # orbax and TensorStore raise anything for a damaged file
    raise damaged_error(workdir, epoch, error, what) from None


def restore_latest(mgr: ocp.CheckpointManager, target, workdir) -> tuple[int, object]:
  """(epoch, state) of the newest checkpoint that reads back, or (0, `target`) when there is none.

  Newer checkpoints that do not read back (orbax and TensorStore raise anything from a JSON error
  to a bare Exception for a truncated file) are named and moved into WORKDIR/checkpoints_damaged/,
  so their epochs are trained again; when none reads back nothing is moved and the run stops.
  """
  damaged = []
  for epoch in sorted(mgr.all_steps(), reverse=True):
    try:
      state = restore(mgr, epoch, target)
    except Exception as error:  # any failure to read it back
      damaged.append((epoch, error))
      continue
    if damaged:
      if jax.process_index() == 0:  # one process moves; every process then sees the folder
        for bad, error in damaged:
          moved = _set_aside(workdir, bad)
          print(f"Warning: {damaged_error(workdir, bad, error, '')}Moved to {moved}; resuming "
                f"from epoch {epoch}, the newest checkpoint that reads back.", file=sys.stderr,
                flush=True)
      if jax.process_count() > 1:
        from jax.experimental import multihost_utils
        multihost_utils.sync_global_devices("jaxray: damaged checkpoints set aside")
      mgr.reload()
    return epoch, state
  if damaged:
    epoch, error = damaged[0]
    raise damaged_error(workdir, epoch, error, (
        f"No checkpoint of the run reads back (epochs "
        f"{', '.join(str(e) for e, _ in damaged)}): restore {workdir} from a copy, or delete "
        f"it to start the run over."))
  return 0, target


def _set_aside(workdir, epoch: int) -> pathlib.Path:
  folder = pathlib.Path(workdir) / "checkpoints_damaged"
  folder.mkdir(exist_ok=True)
  target, number = folder / str(epoch), 1
  while target.exists():
    number += 1
    target = folder / f"{epoch}_{number}"
  (pathlib.Path(workdir) / "checkpoints" / str(epoch)).rename(target)
  return target


def latest_epoch(workdir) -> int:
  """The newest epoch whose checkpoint completed (orbax renames a step's folder into place only
  once it is written), or 0: read from the folder names, with no orbax manager."""
  folder = pathlib.Path(workdir) / "checkpoints"
  steps = [int(p.name) for p in folder.iterdir() if p.is_dir() and p.name.isdigit()] \
      if folder.is_dir() else []
  return max(steps, default=0)
