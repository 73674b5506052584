"""Huge pages for the host buffers XLA:CPU allocates afresh for every step.

XLA:CPU allocates an executable's temporary buffers for each call and frees them after it: for
the 28-px ResNet-18 train step (MedMNIST stem, batch 128) blocks of 231 MB and 58 MB, which glibc
maps fresh (mmap) and returns (munmap) every step. The kernel then faults each 4 KiB page in
again and zeroes it: 4.9 M page faults per epoch of the MedMNIST recipe, and 10% of that run's
CPU time spent in the kernel (1180 of 11503 s, /usr/bin/time -v). With the glibc tunable
`glibc.malloc.hugetlb=1` (glibc >= 2.35) malloc asks for transparent huge pages on such mappings
(madvise), 2 MiB a fault: the step's page faults drop ~25x, the kernel time halves, and the
CIFAR-stem train step ran 1.11x faster (median of 7 process pairs; BENCH.md). Nothing computed
changes: only how the memory is mapped.

It matters only where the kernel gives huge pages on request, i.e. transparent_hugepage is
`madvise` (where it is `always`, they come anyway; `never`, not at all). glibc reads
GLIBC_TUNABLES once, when the process starts, so the entry points (`python -m jaxray.main`,
`python -m jaxray.bench`) start themselves again, once, with it set (`os.execv`: same process,
same arguments). Your own `glibc.malloc.hugetlb` setting wins, and JAXRAY_XLA_CPU_DEFAULTS=0
turns this off with the XLA:CPU settings (jaxray/xla_cpu.py).
"""

import os
import sys

TUNABLE = "glibc.malloc.hugetlb"
_SETTING = "1"
_MIN_GLIBC = (2, 35)  # the first glibc with glibc.malloc.hugetlb
_THP_MODE = "/sys/kernel/mm/transparent_hugepage/enabled"


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
  """GLIBC_TUNABLES with jaxray's setting added, or None where it has nothing to add.

  `glibc_version` ((major, minor), None if not glibc) and `thp_mode` (None if the kernel has no
  transparent huge pages) default to this machine's."""
  environ = os.environ if environ is None else environ
  glibc_version = _glibc_version() if glibc_version is _DETECT else glibc_version
  thp_mode = _thp_mode() if thp_mode is _DETECT else thp_mode
  tunables = environ.get("GLIBC_TUNABLES", "")
  if (environ.get("JAXRAY_XLA_CPU_DEFAULTS", "1") == "0" or TUNABLE in tunables
      or not glibc_version or glibc_version < _MIN_GLIBC or thp_mode != "madvise"):
    return None
  return ":".join(part for part in (tunables, f"{TUNABLE}={_SETTING}") if part)


def restart_with_huge_pages() -> None:
  """Starts this program again with huge pages for malloc, where they help; else returns.

  Call it first thing in an entry point, before any work: the process is replaced (same pid,
  same command line). If the restart fails, the program carries on as it was.
  """
  tunables = tunables_to_set()
  if tunables is None or not hasattr(sys, "orig_argv"):
    return
  os.environ["GLIBC_TUNABLES"] = tunables
  sys.stdout.flush()
  sys.stderr.flush()
  try:
    os.execv(sys.executable, [sys.executable, *sys.orig_argv[1:]])
  except OSError:
    pass  # e.g. the interpreter path is gone: run on with the usual pages
