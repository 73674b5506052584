"""The preparation summary every builder keeps: what was stored, what was skipped and why.

A builder fills one `Summary` while it prepares: examples counted per split and class, each
skipped file with its reason, each ignored folder (an unknown class folder, a folder nested in a
class folder). `Summarized` prints it once, at the end of the preparation, and saves it as
`preparation_summary.json` beside the prepared data, inside TFDS's temporary folder, so it exists
exactly when the preparation finished.
"""

import collections
import contextvars
import json
import logging
import pathlib

from jaxray.data import images
from jaxray.rundir import faults

FILE_NAME = "preparation_summary.json"

# The smallest image side a preparation accepts (`dataset.min_image_side`): set around a
# builder's preparation by `Summarized` from the builder's `min_image_side`, read by each Summary
# as it is made, so the builders themselves need not carry it.
_MIN_SIDE = contextvars.ContextVar("min_image_side", default=images.MIN_IMAGE_SIDE)


class Summary:
  """Counts per split and class, skipped files and ignored folders of one preparation."""

  def __init__(self, dataset: str, source, splits, class_names, relative_to=None, notes=()):
    self.dataset, self.source = dataset, str(source)
    self.splits, self.class_names = tuple(splits), tuple(class_names)
    self.relative_to = pathlib.Path(relative_to if relative_to is not None else source)
    self.notes = list(notes)
    self.counts = {split: collections.Counter() for split in self.splits}
    self.skipped: list[dict] = []  # {"file": path relative to `relative_to`, "reason": ...}
    self.ignored: list[dict] = []  # {"path": ..., "reason": ...}
    self.min_side = _MIN_SIDE.get()  # images.degenerate's rule, recorded with the counts
    self._tried = 0

  def _relative(self, path: pathlib.Path) -> str:
    try:
      return str(path.relative_to(self.relative_to))
    except ValueError:
      return str(path)

  def count(self, split: str, label: str) -> None:
    self.counts[split][label] += 1

  def ignore(self, path: pathlib.Path, reason: str) -> None:
    logging.warning("Ignoring %s: %s", path, reason)
    self.ignored.append({"path": self._relative(path), "reason": reason})

  def ignore_unknown(self, folder: pathlib.Path, expected, what: str) -> None:
    """Records every entry of `folder` that is not one of `expected` (`what`: splits, classes)."""
    for entry in sorted(folder.iterdir()):
      if entry.name not in expected:
        self.ignore(entry, f"not one of the {what} {', '.join(expected)}")

  def read(self, path: pathlib.Path):
    """The pixels to store for `path`, or None with the file recorded as skipped and why."""
    self._tried += 1
    faults.kill_point("prepare", self._tried)  # test-only: JAXRAY_TEST_KILL_AT=prepare:N
    pixels, reason = images.try_read(path, min_side=self.min_side)
    if pixels is None:
      logging.warning("Skipping %s: %s", path, reason)
      self.skipped.append({"file": self._relative(path), "reason": reason})
    return pixels

  def read_class_folder(self, folder: pathlib.Path):
    """(path, stored pixels) for every file of `folder` that is an image, in sorted order.

    Every file is tried; the others are recorded as skipped with their reason, folders inside it
    as ignored. A folder that yields no image at all is an error naming it.
    """
    found = 0
    for path in sorted(folder.iterdir()):
      if path.is_dir():
        self.ignore(path, "a folder inside a class folder (only the files directly in it are "
                          "read)")
        continue
      pixels = self.read(path)
      if pixels is None:
        continue
      found += 1
      yield path, pixels
    if not found:
      raise ValueError(f"No readable image in {folder}: every class folder must hold at least "
                       f"one image. Skipped there: "
                       + (", ".join(f"{s['file']} ({s['reason']})" for s in self.skipped
                                    if s["file"].startswith(self._relative(folder) + "/"))
                          or "nothing (the folder is empty)"))

  def as_dict(self) -> dict:
    # The degenerate-image rule applies to image files (`read_class_folder`) only.
    rule = ({"min_image_side": self.min_side, "max_aspect_ratio": images.MAX_ASPECT_RATIO}
            if self._tried else {})
    return {
        "dataset": self.dataset, "source": self.source, "notes": self.notes, **rule,
        "counts": {split: {name: self.counts[split].get(name, 0) for name in self.class_names}
                   for split in self.splits},
        "skipped": sorted(self.skipped, key=lambda s: s["file"]),
        "ignored": sorted(self.ignored, key=lambda s: s["path"]),
    }

  def format(self) -> str:
    record = self.as_dict()
    width = max(len(c) for c in self.class_names + ("split",))
    lines = [f"{self.dataset}: prepared from {self.source}"] + [f"  {n}" for n in self.notes]
    lines.append("  " + "split".ljust(6) + "".join(c.rjust(width + 2) for c in self.class_names)
                 + "   total")
    for split, row in record["counts"].items():
      lines.append("  " + split.ljust(6) + "".join(str(row[c]).rjust(width + 2)
                                                   for c in self.class_names)
                   + str(sum(row.values())).rjust(8))
    for key, name, what in (("skipped", "file", "file(s) that are not readable images"),
                            ("ignored", "path", "folder(s) or file(s) outside the layout")):
      lines.append(f"  {key} {len(record[key])} {what}" + (":" if record[key] else ""))
      lines += [f"    {entry[name]}: {entry['reason']}" for entry in record[key]]
    if self._tried:
      degenerate = sum(s["reason"].startswith("degenerate") for s in record["skipped"])
      lines.append(f"  of the skipped, {degenerate} degenerate image(s): a side under "
                   f"{self.min_side} px (dataset.min_image_side), an aspect ratio over "
                   f"{images.MAX_ASPECT_RATIO}:1, or one value everywhere")
    return "\n".join(lines)


def missing_or_empty(root: pathlib.Path, folders) -> list[str]:
  """The `folders` (relative to `root`) that are missing or hold nothing, each with which."""
  problems = []
  for folder in folders:
    path = root / folder
    if not path.is_dir():
      problems.append(f"{folder}/ (missing)")
    elif not any(path.iterdir()):
      problems.append(f"{folder}/ (empty)")
  return problems


def load(data_dir) -> dict | None:
  """The summary saved beside prepared data, or None if it was prepared without one."""
  path = pathlib.Path(data_dir) / FILE_NAME
  return json.loads(path.read_text()) if path.exists() else None


class Summarized:
  """Mixin for a TFDS builder that fills `self.summary` while preparing: prints and saves it.

  Saved in the builder's data dir while TFDS still writes into its temporary folder, which TFDS
  renames to the real one only once everything is written.
  """

  summary: Summary | None = None
  min_image_side: int = images.MIN_IMAGE_SIDE  # jaxray.data.load sets the config's

  def _download_and_prepare(self, dl_manager, download_config=None, **kwargs):
    self.summary = None
    rule = _MIN_SIDE.set(self.min_image_side)
    try:
      super()._download_and_prepare(dl_manager, download_config, **kwargs)
    finally:
      _MIN_SIDE.reset(rule)
    if self.summary is None:
      return
    record = self.summary.as_dict()
    metadata = getattr(self.info, "metadata", None)
    if metadata is not None:
      metadata.update({"counts": record["counts"], "skipped": record["skipped"],
                       "ignored": record["ignored"],
                       "skipped_files": [s["file"] for s in record["skipped"]]})
    (pathlib.Path(self.data_dir) / FILE_NAME).write_text(json.dumps(record, indent=1) + "\n")
    print(self.summary.format(), flush=True)
