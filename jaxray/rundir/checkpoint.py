"""Orbax checkpoints: one per epoch, keeping the latest (to resume) and the best (to report).

"Best" has Keras `ModelCheckpoint(save_best_only=True)` semantics: the epoch with the best
selection metric, the earliest one on ties. A run killed mid-epoch loses at most that epoch.
"""

import pathlib

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


def latest_epoch(workdir) -> int:
  """The newest epoch whose checkpoint completed (orbax renames a step's folder into place only
  once it is written), or 0: read from the folder names, with no orbax manager."""
  folder = pathlib.Path(workdir) / "checkpoints"
  steps = [int(p.name) for p in folder.iterdir() if p.is_dir() and p.name.isdigit()] \
      if folder.is_dir() else []
  return max(steps, default=0)
