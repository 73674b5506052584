"""A run's folder: config.json, metrics.jsonl and runtime.json (results.json: `results`).

Only process 0 writes; every process reads. A workdir never mixes two configurations (only
`num_epochs` may grow between runs), so resuming continues the run its files describe.
"""

import json
import pathlib

import jax
import ml_collections

from jaxray import jsonfile


def is_chief() -> bool:
  return jax.process_index() == 0


# Fields that change only the final evaluation: a finished run may be evaluated again with
# other values (its checkpoints are not touched), and an unfinished one resumes with them.
EVALUATION_FIELDS = ("evaluation.", "dataset.extra_tests")
# Fields that may change freely: training goes on with the same prepared data either way
# (`dataset.allow_changed_source` only lets a run use data whose raw folder has changed since).
# The experiment's name and its `reference` (the published figures report.md puts beside the
# run's) compute nothing either: every field that does is compared. So a run of a constant
# learning rate grows into a longer experiment that differs from it only there, as
# resnet18_scratch (5 epochs) into resnet18_scratch_15ep.
FREE_FIELDS = ("num_epochs", "dataset.allow_changed_source", "experiment")
FREE_SECTIONS = ("reference.",)


def _flatten(node: dict, prefix: str = "") -> dict:
  flat = {}
  for key, value in node.items():
    if isinstance(value, dict) and key != "normalization":
      flat.update(_flatten(value, f"{prefix}{key}."))
    else:
      flat[f"{prefix}{key}"] = value
  return flat


def check(workdir: pathlib.Path, config: ml_collections.ConfigDict) -> list[str]:
  """Refuses a workdir that holds a run with another configuration, before anything is written;
  returns the evaluation fields (`EVALUATION_FIELDS`) that differ from the run's.

  The refusal names each field, the value the run was started with and the value asked for now.
  """
  path = workdir / "config.json"
  if not path.exists():
    return []
  # Fields added to jaxray since the run was made count with their defaults, which keep the
  # behaviour of before: a run of an older version resumes.
  from jaxray import config as config_lib
  previous = _flatten(json.loads(config_lib.from_workdir(workdir).to_json()))
  current = _flatten(json.loads(config.to_json()))
  changed = sorted(k for k in set(previous) | set(current)
                   if k not in FREE_FIELDS and not k.startswith(FREE_SECTIONS)
                   and previous.get(k) != current.get(k))
  evaluation = [k for k in changed if k.startswith(EVALUATION_FIELDS)]
  training = [k for k in changed if k not in evaluation]
  if training:
    fields = "; ".join(f"{k}: {previous.get(k)!r} in the run, {current.get(k)!r} now"
                       for k in training)
    raise ValueError(f"{workdir} holds a run with a different configuration ({fields}). Pass "
                     f"another --workdir, or delete {workdir} to start over.")
  return evaluation


def check_writable(workdir: pathlib.Path) -> None:
  """A workdir that cannot be created or written stops the run before any work is done."""
  if not is_chief():
    return
  created = [p for p in (workdir, *workdir.parents) if not p.exists()]
  try:
    workdir.mkdir(parents=True, exist_ok=True)
    probe = workdir / ".jaxray_write_test"
    probe.write_text("")
    probe.unlink()
  except OSError as error:
    raise ValueError(f"--workdir={workdir} cannot be written ({error.strerror or error}). Pass "
                     f"a folder you can write to.") from None
  for folder in created:  # nothing is left behind until the data and the model are known usable
    folder.rmdir()


def write_config(workdir: pathlib.Path, config: ml_collections.ConfigDict) -> None:
  """config.json: the requested configuration, `runtime`'s "auto" values included."""
  if is_chief():
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "config.json").write_text(config.to_json(indent=2))


def read_history(workdir: pathlib.Path) -> list[dict]:
  path = workdir / "metrics.jsonl"
  if not path.exists():
    return []
  history = []
  for number, line in enumerate(path.read_text().splitlines(), start=1):
    if not line.strip():
      continue
    history.append(jsonfile.loads(
        line, path, f"It holds one line per trained epoch: restore it from a copy, or delete "
                    f"{workdir} to start the run over.", line=number))
  return history


def check_history(workdir: pathlib.Path, history: list[dict], latest_checkpoint: int) -> None:
  """Refuses metrics.jsonl when it lacks epochs that have a checkpoint: selection reads it, and
  re-deriving it would choose on what was never measured."""
  missing = sorted(set(range(1, latest_checkpoint + 1)) - {h["epoch"] for h in history})
  if missing:
    raise ValueError(
        f"{workdir / 'metrics.jsonl'} lacks epoch(s) {', '.join(map(str, missing))}, although "
        f"checkpoints up to epoch {latest_checkpoint} exist: the checkpoint selection reads "
        f"those lines and they cannot be recomputed. Restore metrics.jsonl from a copy, or "
        f"delete {workdir} to start the run over.")


def write_history(workdir: pathlib.Path, history: list[dict]) -> None:
  """metrics.jsonl, one line per epoch, replaced whole (never half-written)."""
  if is_chief():
    write_atomic(workdir / "metrics.jsonl", "".join(json.dumps(h) + "\n" for h in history))


def record_runtime(workdir: pathlib.Path, record: dict, first_epoch: int) -> list[dict]:
  """Adds this process's resolved runtime to runtime.json when it differs from the last one.

  runtime.json lists each distinct resolution with the first epoch it trained. A resume on
  another machine, or with another jaxlib, can resolve "auto" differently: the run goes on (the
  requested config is the same) and the change is printed here and kept in results.json.
  """
  path = workdir / "runtime.json"
  saved = jsonfile.read(path, "It lists the runtime settings each stretch of epochs trained "
                             "with: restore it from a copy, or delete it (the record then "
                             "starts again at this epoch).") if path.exists() else []
  entries = [e for e in saved if e["first_epoch"] <= first_epoch]
  current = {"first_epoch": first_epoch, "resolved": record["resolved"],
             "backend": record["backend"], "xla_flags": record["xla_flags"],
             "glibc_tunables": record["glibc_tunables"]}
  if entries and entries[-1]["resolved"] == current["resolved"]:
    return entries
  if entries and is_chief():
    resolved = current["resolved"]
    changed = ", ".join(f"{k}={v}" for k, v in sorted(resolved.items())
                        if entries[-1]["resolved"].get(k) != v)
    print(f"Note: the runtime settings resolve differently from when epochs before "
          f"{first_epoch} trained ({changed}); the run goes on with these, and results.json "
          f"lists both.")
  entries.append(current)
  if is_chief():
    write_atomic(path, json.dumps(entries, indent=2))
  return entries


def write_atomic(path: pathlib.Path, text: str) -> None:
  tmp = path.with_name(path.name + ".tmp")
  tmp.write_text(text)
  tmp.replace(path)
