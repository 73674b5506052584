"""The huge-page restart of jaxray's entry points: when it adds the glibc tunable, that the user's
own setting and the opt-out win, and that the restarted process keeps its command line."""

import os
import subprocess
import sys

import pytest

from jaxray import host_memory

GLIBC, MADVISE = (2, 36), "madvise"


@pytest.mark.parametrize("environ, expected", [
    ({}, "glibc.malloc.hugetlb=1"),
    ({"GLIBC_TUNABLES": "glibc.malloc.arena_max=2"},
     "glibc.malloc.arena_max=2:glibc.malloc.hugetlb=1"),
    ({"GLIBC_TUNABLES": "glibc.malloc.hugetlb=0"}, None),  # the user's setting wins
    ({"JAXRAY_XLA_CPU_DEFAULTS": "0"}, None),
])
def test_tunables_to_set(environ, expected):
  assert host_memory.tunables_to_set(environ, GLIBC, MADVISE) == expected


@pytest.mark.parametrize("glibc_version, thp_mode", [
    ((2, 34), MADVISE),  # glibc without the tunable
    (None, MADVISE),  # not glibc
    (GLIBC, "always"),  # huge pages without asking
    (GLIBC, "never"),
    (GLIBC, None),  # no transparent huge pages in this kernel
])
def test_nothing_to_add(glibc_version, thp_mode):
  assert host_memory.tunables_to_set({}, glibc_version, thp_mode) is None


@pytest.mark.parametrize("text, mode", [("always [madvise] never\n", "madvise"),
                                        ("[always] madvise never\n", "always"),
                                        ("garbled\n", None)])
def test_thp_mode_reads_the_bracketed_word(tmp_path, text, mode):
  path = tmp_path / "enabled"
  path.write_text(text)
  assert host_memory._thp_mode(str(path)) == mode
  assert host_memory._thp_mode(str(tmp_path / "missing")) is None


def test_restart_runs_the_same_command_once_with_the_tunable():
  # As on a glibc 2.36 machine in madvise mode, whatever this one is.
  program = (
      "import os, sys\n"
      "from jaxray import host_memory\n"
      "host_memory._glibc_version = lambda: (2, 36)\n"
      "host_memory._thp_mode = lambda: 'madvise'\n"
      "print('start', os.getpid(), sys.argv[1:], flush=True)\n"
      "host_memory.restart_with_huge_pages()\n"
      "print('tunables', os.environ['GLIBC_TUNABLES'])\n")
  env = {k: v for k, v in os.environ.items()
         if k not in ("GLIBC_TUNABLES", "JAXRAY_XLA_CPU_DEFAULTS")}
  out = subprocess.run([sys.executable, "-c", program, "--experiment=demo", "x y"], env=env,
                       capture_output=True, text=True, check=True).stdout.splitlines()
  starts = [line for line in out if line.startswith("start")]
  assert len(starts) == 2 and starts[0] == starts[1]  # same pid, same arguments, once again
  assert "['--experiment=demo', 'x y']" in starts[0]
  assert out[-1] == "tunables glibc.malloc.hugetlb=1"
  # Opted out: no restart.
  env["JAXRAY_XLA_CPU_DEFAULTS"] = "0"
  out = subprocess.run([sys.executable, "-c", program], env=env, capture_output=True,
                       text=True, check=False).stdout
  assert out.count("start") == 1
