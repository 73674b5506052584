"""Experiments: `experiments/NAME.py` files whose `get_config()` returns a ConfigDict.

Overrides come from the command line as `--set key.path=value`; values are parsed as Python
literals (numbers, tuples, booleans, strings) and checked against the type already in the config,
so a typo in a key or a value of the wrong type stops the run before anything is written.
"""

import ast
import importlib
import pkgutil

import ml_collections

import experiments


def available() -> list[str]:
  return sorted(m.name for m in pkgutil.iter_modules(experiments.__path__)
                if not m.name.startswith("_"))


def load(name: str) -> ml_collections.ConfigDict:
  if name not in available():
    raise ValueError(f"Unknown experiment {name!r}. Available experiments: "
                     f"{', '.join(available())}")
  module = importlib.import_module(f"experiments.{name}")
  config = module.get_config()
  config.experiment = name
  return config


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
      raise ValueError(f"--set {item!r}: unknown field {key!r}. Fields here: "
                       f"{', '.join(sorted(node.keys()))}")
    value = _parse_value(text)
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
