"""Extra test sets from plain class folders: `DIR/<class>/*` images, read as preparation reads.

A run reports internal and external validation side by side when `dataset.extra_tests` names
folders of other sites (or of a benchmark's official test split): each image goes through
preparation's reader (`images.try_read`), so it is stored and resized exactly as the run's own
test images were, and is kept in memory (a test set is hundreds of images, not thousands).
Class folders match the run's class names without regard to case. Extra test sets are evaluated
with the selected checkpoint and the val threshold, and never choose anything.
"""

import pathlib

from jaxray.data import chest_xray, images


def parse(spec: str) -> tuple[str, pathlib.Path]:
  """"NAME=PATH" -> (NAME, PATH): the config's form of one extra test set."""
  name, sep, path = spec.partition("=")
  if not sep or not name.strip() or not path.strip() or not name.strip().isidentifier():
    raise ValueError(f"dataset.extra_tests: {spec!r} must read NAME=PATH, NAME a plain word "
                     f"(letters, digits, _), e.g. official_a=~/data/official_test_a")
  return name.strip(), pathlib.Path(path.strip()).expanduser()


def load(spec: str, class_names, min_side: int = images.MIN_IMAGE_SIDE
         ) -> tuple[str, list[dict], list[tuple[pathlib.Path, str]]]:
  """(name, examples in sorted file order, [(file, why skipped)]) of one extra test folder;
  `min_side` is the run's dataset.min_image_side (images.degenerate)."""
  name, root = parse(spec)
  if not root.is_dir():
    raise FileNotFoundError(f"dataset.extra_tests {name}: {root} is not a folder. It must hold "
                            f"one folder per class: {', '.join(class_names)}.")
  folders = {p.name.lower(): p for p in root.iterdir() if p.is_dir()}
  missing = [c for c in class_names if c.lower() not in folders]
  if missing:
    raise FileNotFoundError(f"dataset.extra_tests {name}: {root} has no folder for class(es) "
                            f"{', '.join(missing)}; it must hold one folder per class "
                            f"({', '.join(class_names)}), names in any case.")
  examples, skipped = [], []
  for label, class_name in enumerate(class_names):
    for path in sorted(p for p in folders[class_name.lower()].rglob("*")
                       if p.is_file() and not p.name.startswith(".")):
      pixels, reason = images.try_read(path, min_side=min_side)
      if pixels is None:
        skipped.append((path, reason))
        continue
      examples.append({"image": pixels, "label": label, "file_name": path.name,
                       "patient_id": chest_xray.patient_id(path.name)})
  if not examples:
    raise FileNotFoundError(f"dataset.extra_tests {name}: no readable image in {root}.")
  return name, examples, skipped
