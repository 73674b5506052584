"""What a run does when something goes wrong: a loss that is not finite, a full disk, a kill.

`kill_point` is a test-only hook: tests/test_train.py and tests/test_prepare_messy.py set
JAXRAY_TEST_KILL_AT=NAME:EPOCH and the process SIGKILLs itself at that point, so a real crash at
that moment is what the test resumes.
"""

import errno
import os
import signal

import numpy as np

KILL_AT = "JAXRAY_TEST_KILL_AT"


def kill_point(name: str, epoch: int = 0) -> None:
  if os.environ.get(KILL_AT) == f"{name}:{epoch}":
    os.kill(os.getpid(), signal.SIGKILL)


def check_finite(record: dict, last_good_epoch: int, workdir) -> None:
  """Stops the run when epoch `record["epoch"]`'s training or validation loss is NaN or inf,
  before that epoch is saved, so it can never be resumed from or selected."""
  bad = [k for k in ("train_loss", "val_loss") if not np.isfinite(record[k])]
  if bad:
    last = (f"the last good checkpoint is epoch {last_good_epoch} in {workdir}/checkpoints"
            if last_good_epoch else "no epoch before it was saved")
    raise FloatingPointError(
        f"epoch {record['epoch']}: {' and '.join(bad)} is {record[bad[0]]} (not finite); the "
        f"epoch was not saved and {last}. Lower optimizer.learning_rate, or pass "
        f"--set stop_on_nonfinite_loss=False to train on regardless.")


def is_disk_full(error: Exception) -> bool:
  """ENOSPC, raised by Python, or by orbax's writers as a ValueError that quotes the OS error."""
  return (getattr(error, "errno", None) == errno.ENOSPC
          or "No space left on device" in str(error))


def disk_full_error(error: Exception, workdir, last_complete: int | None) -> Exception:
  """A clearer error for ENOSPC while saving checkpoints (orbax writes them in the background,
  so the failed write may be the previous epoch's); other errors are returned as they are."""
  if not is_disk_full(error):
    return error
  kept = (f"the last complete checkpoint, epoch {last_complete}, and those before it are intact"
          if last_complete else "no checkpoint had completed yet")
  return OSError(errno.ENOSPC, f"no space left on the device while saving a checkpoint in "
                 f"{workdir}/checkpoints; {kept}. Free some space and run the same command again "
                 f"to resume")
