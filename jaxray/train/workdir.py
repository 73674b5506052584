"""A run's folder: config.json, metrics.jsonl, runtime.json and results.json.

Only process 0 writes; every process reads. A workdir never mixes two configurations (only
`num_epochs` may grow between runs), so resuming continues the run its files describe.
"""

import json
import pathlib

import jax
import ml_collections


def is_chief() -> bool:
  return jax.process_index() == 0


def check(workdir: pathlib.Path, config: ml_collections.ConfigDict) -> None:
  """Refuses a workdir that holds a run with another configuration, before anything is written."""
  path = workdir / "config.json"
  if path.exists():
    # Fields added to jaxray since the run was made count with their defaults, which keep the
    # behaviour of before: a run of an older version resumes.
    from jaxray import config as config_lib
    previous = json.loads(config_lib.from_workdir(workdir).to_json())
    current = json.loads(config.to_json())
    changed = sorted(k for k in set(previous) | set(current)
                     if k != "num_epochs" and previous.get(k) != current.get(k))
    if changed:
      raise ValueError(f"{workdir} holds a run with a different configuration (fields: "
                       f"{', '.join(changed)}). Pass another --workdir, or delete {workdir} to "
                       f"start over.")


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
  return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def write_history(workdir: pathlib.Path, history: list[dict]) -> None:
  """metrics.jsonl, one line per epoch, replaced whole (never half-written)."""
  if is_chief():
    _write_atomic(workdir / "metrics.jsonl", "".join(json.dumps(h) + "\n" for h in history))


def record_runtime(workdir: pathlib.Path, record: dict, first_epoch: int) -> list[dict]:
  """Adds this process's resolved runtime to runtime.json when it differs from the last one.

  runtime.json lists each distinct resolution with the first epoch it trained. A resume on
  another machine, or with another jaxlib, can resolve "auto" differently: the run goes on (the
  requested config is the same) and the change is printed here and kept in results.json.
  """
  path = workdir / "runtime.json"
  entries = [e for e in json.loads(path.read_text()) if e["first_epoch"] <= first_epoch] \
      if path.exists() else []
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
    _write_atomic(path, json.dumps(entries, indent=2))
  return entries


def finished_results(workdir: pathlib.Path, config: ml_collections.ConfigDict) -> dict | None:
  """results.json when it holds the finished run of `config.num_epochs` epochs, else None."""
  path = workdir / "results.json"
  if not path.exists():
    return None
  results = json.loads(path.read_text())
  return results if results.get("epochs_trained") == config.num_epochs else None


def write_results(workdir: pathlib.Path, results: dict) -> None:
  _write_atomic(workdir / "results.json", json.dumps(results, indent=2))


def _write_atomic(path: pathlib.Path, text: str) -> None:
  tmp = path.with_name(path.name + ".tmp")
  tmp.write_text(text)
  tmp.replace(path)
