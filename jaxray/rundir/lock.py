"""One writer per run folder: an exclusive lock, held by the process that trains or evaluates.

Two processes started into one new workdir would otherwise both pass the config check (neither
config.json exists yet) and interleave their checkpoints, metrics and results without a word.
The lock is `flock` on `WORKDIR/.lock`: the kernel releases it when its holder exits, however it
exits, so a lock left by a killed process never blocks the next run. The file names the holder
(pid and host) for the message a second process gets. In a multi-process job only process 0
writes, and only it takes the lock.
"""

import contextlib
import fcntl
import os
import pathlib
import socket

FILE = ".lock"


class RunFolderBusy(ValueError):
  """Another live process holds the run folder."""


@contextlib.contextmanager
def hold(workdir: pathlib.Path):
  """Holds `workdir`'s lock for the block; a folder this made and nothing else filled is removed
  again if the block fails, so a refused run leaves nothing behind."""
  workdir = pathlib.Path(workdir)
  created = not workdir.exists()
  workdir.mkdir(parents=True, exist_ok=True)
  path = workdir / FILE
  file = open(path, "a+")
  try:
    fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
  except BlockingIOError:
    file.seek(0)
    holder = file.read().strip() or "another process"
    file.close()
    raise RunFolderBusy(f"{workdir} is in use by {holder}: one run folder takes one run at a "
                        f"time. Wait for it to end (the same command then resumes or reports "
                        f"it), or pass another --workdir.") from None
  except OSError as error:  # a filesystem without locks (Lustre mounted without -o flock)
    print(f"Note: {workdir}'s filesystem takes no locks ({error.strerror or error}); the run goes "
          f"on, but a second run started into this folder would not be stopped.", flush=True)
  file.seek(0)
  file.truncate()
  file.write(f"jaxray pid {os.getpid()} on {socket.gethostname()}\n")
  file.flush()
  try:
    yield
  except BaseException:
    if [p.name for p in workdir.iterdir()] == [FILE]:
      path.unlink()
      if created:
        workdir.rmdir()
    raise
  finally:
    file.close()
