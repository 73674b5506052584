"""The preparation summary every builder keeps: what was stored, what was skipped and why.

A builder fills one `Summary` while it prepares: examples counted per split and class, each
skipped file with its reason, each ignored folder (an unknown class folder, a folder nested in a
class folder). `Summarized` prints it once, at the end of the preparation, and saves it as
`preparation_summary.json` beside the prepared data, inside TFDS's temporary folder, so it exists
exactly when the preparation finished.
"""

import collections
import json
import logging
import pathlib

from jaxray.data import images
from jaxray.rundir import faults

FILE_NAME = "preparation_summary.json"


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
      self._tried += 1
      faults.kill_point("prepare", self._tried)  # test-only: JAXRAY_TEST_KILL_AT=prepare:N
      pixels, reason = images.try_read(path)
      if pixels is None:
        logging.warning("Skipping %s: %s", path, reason)
        self.skipped.append({"file": self._relative(path), "reason": reason})
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
    return {
        "dataset": self.dataset, "source": self.source, "notes": self.notes,
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

  def _download_and_prepare(self, dl_manager, download_config=None, **kwargs):
    self.summary = None
    super()._download_and_prepare(dl_manager, download_config, **kwargs)
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
