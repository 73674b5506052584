"""Experiments: `experiments/NAME.py` files whose `get_config()` returns a ConfigDict.

`--experiment=NAME` loads `experiments/NAME.py` (installed with jaxray as the package
`experiments`); `--experiment=path/to/file.py` loads a file of your own by path, as
ml_collections' `config_flags` does. Every experiment starts from `jaxray.base_config` and may not
add fields of its own (except the published figures under `reference`), so library code can rely
on every field being there.

Overrides come from the command line as `--set key.path=value`; values are parsed as Python
literals (numbers, tuples, booleans, strings) and checked against the type already in the config,
so a typo in a key or a value of the wrong type stops the run before anything is written.
"""

import ast
import difflib
import importlib
import importlib.util
import pathlib
import pkgutil

import ml_collections

import experiments
from jaxray import base_config
from jaxray import jsonfile


def available() -> list[str]:
  return sorted(m.name for m in pkgutil.iter_modules(experiments.__path__)
                if not m.name.startswith("_"))


def load(name: str) -> ml_collections.ConfigDict:
  """The config of experiment `name` (a name in experiments/, or a path to a .py file)."""
  if name.endswith(".py") or "/" in name:
    path = pathlib.Path(name).expanduser()
    if not path.is_file():
      raise FileNotFoundError(f"--experiment={name}: no such file. Pass a name from "
                              f"experiments/ ({', '.join(available())}) or a path to a .py file.")
    spec = importlib.util.spec_from_file_location(f"_jaxray_experiment_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
  elif name in available():
    module = importlib.import_module(f"experiments.{name}")
  else:
    raise ValueError(f"Unknown experiment {name!r}. Available experiments: "
                     f"{', '.join(available())} (or pass a path to a .py file)")
  if not hasattr(module, "get_config"):
    raise ValueError(f"--experiment={name}: the file defines no get_config()")
  config = module.get_config()
  _check_fields(config, base_config.get_config(), name)
  config.experiment = name
  return config


def from_workdir(workdir) -> ml_collections.ConfigDict:
  """The config a run in `workdir` trained with, read back from its config.json.

  JSON has no tuples, so lists become tuples again, as the base config declares them. Fields
  added to jaxray after the run was made take their base defaults; a field jaxray does not know
  is an error, as in an experiment file.
  """
  path = pathlib.Path(workdir).expanduser() / "config.json"
  if not path.is_file():
    raise FileNotFoundError(f"{path} does not exist: --workdir must be the folder of a run "
                            f"made by python -m jaxray.main (it holds config.json).")
  saved = jsonfile.read(path, "It is the record of the run's config: restore it from a copy, "
                             "or delete the folder to start the run over.")
  config = base_config.get_config()
  _update(config, saved, str(path))
  return config


def _update(node: ml_collections.ConfigDict, saved: dict, source: str, path: str = "") -> None:
  for key, value in saved.items():
    if key not in node:
      if path == "reference.":
        node[key] = value
        continue
      raise ValueError(f"{source}: unknown field {path}{key}; this run was made by another "
                       f"version of jaxray.")
    if isinstance(node[key], ml_collections.ConfigDict) and isinstance(value, dict):
      _update(node[key], value, source, f"{path}{key}.")
    else:
      with node.ignore_type():
        node[key] = _tuples(value)


def _tuples(value):
  return tuple(_tuples(v) for v in value) if isinstance(value, list) else value


def run_name(experiment: str) -> str:
  """The default workdir's name for `--experiment`: the name, or a file's stem."""
  return pathlib.Path(experiment).stem if experiment.endswith(".py") else experiment


def _check_fields(config, base, name, path=""):
  """Every field of the base config is there, and no other (`reference` may add figures)."""
  for key in base.keys():
    if key not in config:
      raise ValueError(f"Experiment {name}: the config has no field {path}{key}. Start it from "
                       f"jaxray.base_config.get_config() and change only what differs.")
  for key in config.keys():
    if key not in base:
      if path == "reference.":
        continue
      raise ValueError(f"Experiment {name}: unknown field {path}{key}{_did_you_mean(key, base)}. "
                       f"Its fields are those of jaxray/base_config.py.")
    if isinstance(base[key], ml_collections.ConfigDict) and key not in ("normalization",):
      if not isinstance(config[key], ml_collections.ConfigDict):
        raise ValueError(f"Experiment {name}: {path}{key} must be a section, got {config[key]!r}")
      _check_fields(config[key], base[key], name, f"{path}{key}.")


def _did_you_mean(key, node) -> str:
  close = difflib.get_close_matches(key, list(node.keys()), n=1)
  return f" (did you mean {close[0]!r}?)" if close else ""


def _parse_value(text: str):
  try:
    return ast.literal_eval(text)
  except (ValueError, SyntaxError):
    return text  # a bare string, e.g. --set model.name=resnet18


def apply_overrides(config: ml_collections.ConfigDict, overrides) -> ml_collections.ConfigDict:
  """Applies ["a.b=1", ...] in order; unknown keys and mismatched types raise a ValueError."""
  for item in overrides or ():
    if "=" not in item:
      raise ValueError(f"--set {item!r}: expected key=value, e.g. --set num_epochs=1")
    key, text = item.split("=", 1)
    *parents, leaf = key.strip().split(".")
    node = config
    for part in parents:
      if part not in node or not isinstance(node[part], ml_collections.ConfigDict):
        raise ValueError(f"--set {item!r}: the config has no section {part!r} on the path "
                         f"{key!r}. Its top-level fields are: {', '.join(sorted(config.keys()))}")
      node = node[part]
    if leaf not in node:
      raise ValueError(f"--set {item!r}: unknown field {key!r}{_did_you_mean(leaf, node)}. "
                       f"Fields here: {', '.join(sorted(node.keys()))}")
    value = _parse_value(text)
    if not node.is_type_safe:  # e.g. runtime: "auto", True or False, checked where it is used
      node[leaf] = value
      continue
    current = node[leaf]
    if isinstance(current, tuple) and isinstance(value, (int, float)):
      value = (value,)
    if isinstance(current, float) and isinstance(value, int) and not isinstance(value, bool):
      value = float(value)
    if isinstance(current, str) and not isinstance(value, str):
      value = text
    try:
      node[leaf] = value
    except TypeError as error:
      raise ValueError(f"--set {item!r}: {key} holds a {type(current).__name__}, got "
                       f"{value!r} ({error})") from None
  return config
