"""What prepared data was made from: the raw folder's fingerprint, kept at preparation and
checked at every start.

Prepared data is a copy of the raw folder as it was. When the folder changes afterwards (images
added, removed, replaced by better scans, moved to another class), the copy goes on training as
the old folder was, and nothing in a run would say so. So preparation keeps, beside the prepared
data (`jaxray_source.json`), every file of the raw folder with its size and modification time,
and every start compares the folder with that list before the prepared data is used: a change
stops the run and names what changed, unless `dataset.allow_changed_source` lets it go on. Only
`stat` is called, no file is read: Kermany's 5,856 files take a fraction of a second. What the
check found goes into results.json (`data.source`), so a run says what it trained on.
"""

import datetime
import hashlib
import json
import os
import pathlib

from jaxray import jsonfile

FILE = "jaxray_source.json"
_NAMED = 5  # files named in a message, per kind of change


def fingerprint(root) -> dict[str, list[int]]:
  """{path relative to `root`: [size in bytes, mtime_ns]} of every file under `root` (`root`
  itself when it is a file; {} when it is gone).

  Hidden files and folders (.DS_Store, .ipynb_checkpoints) are left out: desktops and tools add
  and change them without touching the data. Linked folders are followed, each once.
  """
  root = pathlib.Path(root)
  if root.is_file():
    stat = root.stat()
    return {root.name: [stat.st_size, stat.st_mtime_ns]}
  if not root.is_dir():
    return {}
  files, folders, seen = {}, [("", os.fspath(root))], set()
  while folders:
    prefix, folder = folders.pop()
    with os.scandir(folder) as entries:
      for entry in entries:
        if entry.name.startswith("."):
          continue
        if entry.is_dir():
          if entry.is_symlink():
            real = os.path.realpath(entry.path)
            if real in seen:
              continue
            seen.add(real)
          folders.append((f"{prefix}{entry.name}/", entry.path))
        elif entry.is_file():
          stat = entry.stat()
          files[prefix + entry.name] = [stat.st_size, stat.st_mtime_ns]
  return files


def digest(listing: dict) -> str:
  """16 hex digits of the SHA-256 of a fingerprint: two runs with equal digests trained on data
  prepared from the same files."""
  text = "\n".join(f"{name}\t{size}\t{mtime}" for name, (size, mtime) in sorted(listing.items()))
  return hashlib.sha256(text.encode()).hexdigest()[:16]


def write(data_dir, manual_dir, root, listing: dict | None) -> None:
  """Saves, beside the prepared data and in one piece, the raw folder it was prepared from and
  the fingerprint of `root` (the file or folder read) taken before preparation; None: the data
  was downloaded rather than read from `manual_dir`."""
  saved = {"manual_dir": str(pathlib.Path(manual_dir).expanduser().resolve()),
           "prepared_at": datetime.datetime.now(datetime.timezone.utc).isoformat(
               timespec="seconds")}
  if listing is not None:
    saved.update(root=str(pathlib.Path(root).expanduser().resolve()), files=len(listing),
                 bytes=sum(size for size, _ in listing.values()), digest=digest(listing),
                 listing=listing)
  path = pathlib.Path(data_dir) / FILE
  tmp = path.with_name(path.name + ".tmp")
  tmp.write_text(json.dumps(saved))
  tmp.replace(path)


def read(data_dir) -> dict | None:
  """The record kept at preparation, or None for data prepared from no raw folder."""
  path = pathlib.Path(data_dir) / FILE
  if not path.exists():
    return None
  return jsonfile.read(path, f"It records the raw folder the data in {data_dir} was prepared "
                            f"from: delete {data_dir} to prepare it again, or pass --set "
                            f"dataset.prepared_dir=<a new folder>.")


def changes(before: dict, now: dict) -> dict[str, list[str]]:
  """The files added, removed and modified (another size or modification time), each sorted."""
  return {"added": sorted(now.keys() - before.keys()),
          "removed": sorted(before.keys() - now.keys()),
          "modified": sorted(name for name in before.keys() & now.keys()
                             if list(before[name]) != list(now[name]))}


def describe(found: dict[str, list[str]]) -> str:
  """"2 file(s) added (a, b), 1 removed (c)": each kind of change with its first few files."""
  parts = []
  for kind, names in found.items():
    if names:
      shown = ", ".join(names[:_NAMED]) + (", ..." if len(names) > _NAMED else "")
      parts.append(f"{len(names)}{' file(s)' if not parts else ''} {kind} ({shown})")
  return ", ".join(parts)


def check(data_dir, given: bool, allow_changed: bool) -> dict:
  """The record of what the data in `data_dir` was prepared from, with what comparing the raw
  folder with it found (`status`), for results.json. Raises ValueError, naming what changed and
  the two ways on, when the folder changed and `allow_changed` is False.

  `given`: the raw folder was passed (--data_dir) for this run; a folder that is gone then is a
  change, while a run that names none is not stopped by a folder that is not on this machine.
  """
  saved = read(data_dir)
  if saved is None:
    return {"manual_dir": None, "status": "no raw folder (generated or downloaded data)"}
  record = {key: saved.get(key) for key in ("manual_dir", "root", "prepared_at", "files",
                                             "bytes", "digest")}
  record["allow_changed_source"] = allow_changed
  if "listing" not in saved:
    return dict(record, status="not checked: no fingerprint was kept (the data was downloaded, "
                               "or prepared by an earlier jaxray)")
  root = pathlib.Path(saved["root"])
  if not given and not root.exists():
    return dict(record, status=f"not checked: {root} is not on this machine")
  found = changes(saved["listing"], fingerprint(root))
  if not any(found.values()):
    return dict(record, status="unchanged")
  what = describe(found)
  if not allow_changed:
    raise ValueError(
        f"The raw data in {root} has changed since it was prepared into {data_dir} (at "
        f"{saved.get('prepared_at')}): {what}. The prepared data is the folder as it was then. "
        f"Either prepare it again into a new folder, --set dataset.prepared_dir=<new folder> "
        f"(nothing is overwritten), or pass --set dataset.allow_changed_source=True to train on "
        f"the data as prepared (results.json records the change).")
  print(f"Note: the raw data in {root} has changed since it was prepared ({what}); training on "
        f"the data as prepared, as dataset.allow_changed_source=True asks (results.json records "
        f"the change).", flush=True)
  return dict(record, status="changed",
              changes={kind: len(names) for kind, names in found.items()},
              changed_files={kind: names[:_NAMED] for kind, names in found.items() if names})
