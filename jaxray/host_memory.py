"""Malloc settings for the host buffers XLA:CPU allocates afresh for every step.

XLA:CPU allocates an executable's temporary buffers for each call and frees them after it: for
the 28-px ResNet-18 train step (MedMNIST stem, batch 128) blocks of 231 MB and 58 MB, which glibc
maps fresh (mmap) and returns (munmap) every step. The kernel then faults each page in again and
zeroes it: 4.9 M page faults per epoch of the MedMNIST recipe, and 10% of that run's CPU time
spent in the kernel (1180 of 11503 s, /usr/bin/time -v). Two sets of glibc tunables, both only
about how memory is mapped (nothing computed changes):

* `glibc.malloc.hugetlb=1` (glibc >= 2.35, transparent huge pages in `madvise` mode): malloc
  asks for 2 MiB pages (madvise): the step's page faults drop ~25x, the kernel time halves, and
  the CIFAR-stem train step ran 1.11x faster (median of 7 process pairs; BENCH.md).
* `glibc.malloc.arena_max=1`, `glibc.malloc.mmap_max=0` and a trim threshold of 64 GiB: every
  block comes from malloc's one heap and stays there when freed, so the next step reuses memory
  already mapped instead of faulting it in again. With the Winograd convolutions
  (jaxray/models/winograd.py), whose transforms add large per-step temporaries, the page faults
  of a 28-px run went from 250 k to 60 k and its kernel time from 15 s to 9-10 s; the CIFAR-stem
  train step ran 57-62 img/s without these settings and 71-72 with them (BENCH.md). The heap
  keeps the step's peak size (resident memory of that run 2.3 -> 3.3 GB).

glibc reads GLIBC_TUNABLES once, when the process starts, so the entry points
(`python -m jaxray.main`, `python -m jaxray.bench`) start themselves again, once, with them set
(`os.execv`: same process, same arguments). A tunable you set yourself wins, and
JAXRAY_XLA_CPU_DEFAULTS=0 turns all of this off with the XLA:CPU settings (jaxray/xla_cpu.py).
"""

import os
import sys

HUGE_PAGES = ("glibc.malloc.hugetlb", "1")
_MIN_GLIBC_HUGE_PAGES = (2, 35)  # the first glibc with glibc.malloc.hugetlb
KEEP_HEAP = (("glibc.malloc.arena_max", "1"), ("glibc.malloc.mmap_max", "0"),
             ("glibc.malloc.trim_threshold", str(64 << 30)))
_MIN_GLIBC = (2, 26)  # the first glibc with GLIBC_TUNABLES for malloc
_THP_MODE = "/sys/kernel/mm/transparent_hugepage/enabled"
USER_TUNABLES = "JAXRAY_USER_GLIBC_TUNABLES"  # the user's own GLIBC_TUNABLES, kept by the restart


def _glibc_version():
  try:
    name, version = os.confstr("CS_GNU_LIBC_VERSION").split()  # "glibc 2.36"
    return tuple(int(part) for part in version.split(".")[:2]) if name == "glibc" else None
  except (AttributeError, ValueError, OSError):  # not glibc (macOS, musl), or unreadable
    return None


def _thp_mode(path=_THP_MODE):
  """The kernel's transparent huge page mode: the bracketed word of `always [madvise] never`."""
  try:
    with open(path) as f:
      text = f.read()
  except OSError:
    return None
  return text.split("[", 1)[1].split("]", 1)[0] if "[" in text else None


_DETECT = object()


def tunables_to_set(environ=None, glibc_version=_DETECT, thp_mode=_DETECT):
  """GLIBC_TUNABLES with jaxray's settings added, or None where it has nothing to add.

  `glibc_version` ((major, minor), None if not glibc) and `thp_mode` (None if the kernel has no
  transparent huge pages) default to this machine's."""
  environ = os.environ if environ is None else environ
  glibc_version = _glibc_version() if glibc_version is _DETECT else glibc_version
  thp_mode = _thp_mode() if thp_mode is _DETECT else thp_mode
  if (environ.get("JAXRAY_XLA_CPU_DEFAULTS", "1") == "0" or not glibc_version
      or glibc_version < _MIN_GLIBC):
    return None
  wanted = list(KEEP_HEAP)
  if glibc_version >= _MIN_GLIBC_HUGE_PAGES and thp_mode == "madvise":
    wanted.insert(0, HUGE_PAGES)
  tunables = environ.get("GLIBC_TUNABLES", "")
  added = [f"{name}={value}" for name, value in wanted if f"{name}=" not in tunables]
  return ":".join(([tunables] if tunables else []) + added) if added else None


def user_environment(environ=None) -> dict:
  """A copy of `environ` with GLIBC_TUNABLES as the user had it before the restart added
  jaxray's settings: for a program run beside jaxray as it runs for its own users."""
  environ = dict(os.environ if environ is None else environ)
  if USER_TUNABLES in environ:
    original = environ.pop(USER_TUNABLES)
    if original:
      environ["GLIBC_TUNABLES"] = original
    else:
      environ.pop("GLIBC_TUNABLES", None)
  return environ


def restart_with_memory_settings() -> None:
  """Starts this program again with jaxray's malloc settings, where they help; else returns.

  Call it first thing in an entry point, before any work: the process is replaced (same pid,
  same command line). If the restart fails, the program carries on as it was.
  """
  tunables = tunables_to_set()
  if tunables is None or not hasattr(sys, "orig_argv"):
    return
  os.environ[USER_TUNABLES] = os.environ.get("GLIBC_TUNABLES", "")
  os.environ["GLIBC_TUNABLES"] = tunables
  sys.stdout.flush()
  sys.stderr.flush()
  try:
    os.execv(sys.executable, [sys.executable, *sys.orig_argv[1:]])
  except OSError:
    pass  # e.g. the interpreter path is gone: run on with malloc's defaults
