"""TensorBoard event files in the workdir, beside metrics.jsonl: `tensorboard --logdir runs/`.

The scalars of every epoch are written and flushed as the epoch ends, so TensorBoard follows a run
while it trains; the final evaluation adds its figures as images and the selected checkpoint's
test metrics. Events are written synchronously with tensorboardX's `EventsWriter` (no TensorFlow):
its `SummaryWriter` queues events to a background thread whose `flush()` does not wait for the
queue, so an epoch could reach the disk up to two minutes late.

Each writer opens a file of its own, so a resumed run adds a file rather than rewriting one. It
starts with a `SessionLog.START` at the first epoch it trains, TensorBoard's mark of a restart:
TensorBoard then hides anything an earlier, killed process logged at that epoch or later (an epoch
whose checkpoint did not complete is trained again). Only process 0 writes.
"""

import itertools
import numbers
import os
import pathlib
import time

import numpy as np
from PIL import Image
from tensorboardX import summary
from tensorboardX.event_file_writer import EventsWriter
from tensorboardX.proto.event_pb2 import Event, SessionLog
from tensorboardX.proto.summary_pb2 import Summary

from jaxray.rundir import results as results_lib, workdir as workdir_lib

_SPLITS = ("train", "val", "test")
_COLORSPACES = {"L": 1, "LA": 2, "RGB": 3, "RGBA": 4}  # Summary.Image.colorspace
_file_numbers = itertools.count()  # two writers of one process never share a file name


def scalar_tag(key: str) -> str:
  """The TensorBoard tag of a metrics.jsonl key: "train_loss" -> "train/loss",
  "val_roc_auc" -> "val/roc_auc", "epoch_seconds" -> "time/epoch_seconds"."""
  if key.endswith("_seconds"):
    return f"time/{key}"
  split, _, name = key.partition("_")
  return f"{split}/{name}" if split in _SPLITS and name else key


class EpochWriter:
  """The epochs' scalars, in an event file of their own, written by process 0 only.

  `first_epoch` is the first epoch this process trains: events an earlier process logged at that
  epoch or later are hidden by TensorBoard. The file is created at the first epoch written, so a
  run that only evaluates adds none.
  """

  def __init__(self, workdir: pathlib.Path, first_epoch: int):
    self._workdir, self._first_epoch = pathlib.Path(workdir), first_epoch
    self._file = None

  def write(self, record: dict) -> None:
    """Every number of one metrics.jsonl line, at step = its epoch, flushed to disk."""
    if not workdir_lib.is_chief():
      return
    if self._file is None:
      self._file = _open(self._workdir)
      _write(self._file, Event(step=self._first_epoch,
                               session_log=SessionLog(status=SessionLog.START)))
    values = [Summary.Value(tag=scalar_tag(key), simple_value=float(value))
              for key, value in record.items() if key != "epoch" and _is_number(value)]
    _write(self._file, Event(step=record["epoch"], summary=Summary(value=values)))
    self._file.flush()

  def close(self) -> None:
    if self._file is not None:
      self._file.close()
      self._file = None


def write_evaluation(workdir: pathlib.Path, results: dict) -> None:
  """The selected checkpoint's test metrics ("selected_epoch/test_accuracy", ...) and every
  figure in `workdir` ("figures/roc", ...), at step = the selected epoch, in a file of their own."""
  if not workdir_lib.is_chief():
    return
  test = dict(results_lib.test_metrics(results), loss=results["test"]["loss"]) \
      if "metrics" in results.get("test", {}) else {}
  values = [Summary.Value(tag=f"selected_epoch/test_{name}", simple_value=float(value))
            for name, value in test.items() if _is_number(value)]
  values += [_image(path) for path in sorted(pathlib.Path(workdir).glob("*.png"))]
  file = _open(workdir)
  _write(file, Event(step=results["selected_epoch"], summary=Summary(value=values)))
  file.close()


def _open(workdir: pathlib.Path) -> EventsWriter:
  """A new event file, events.out.tfevents.<time>.<host>.<pid>.<n>: two opened in one second
  never share a name (tensorboardX would truncate the first)."""
  return EventsWriter(str(pathlib.Path(workdir) / "events"),
                      f".{os.getpid()}.{next(_file_numbers)}")


def _write(file: EventsWriter, event: Event) -> None:
  event.wall_time = time.time()
  file.write_event(event)


def _is_number(value) -> bool:
  return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _image(path: pathlib.Path) -> Summary.Value:
  """A PNG file as a TensorBoard image: its own bytes when TensorBoard can take them as they are,
  else re-encoded by tensorboardX as RGBA."""
  tag = f"figures/{path.stem}"
  with Image.open(path) as image:
    if image.format == "PNG" and image.mode in _COLORSPACES:
      return Summary.Value(tag=tag, image=Summary.Image(
          height=image.height, width=image.width, colorspace=_COLORSPACES[image.mode],
          encoded_image_string=path.read_bytes()))
    rgba = image.convert("RGBA")
  return summary.image(tag, np.asarray(rgba), dataformats="HWC").value[0]
