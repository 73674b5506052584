"""The malloc-settings restart of jaxray's entry points: which glibc tunables it adds where, that
the user's own settings and the opt-out win, and that the restarted process keeps its command
line."""

import os
import subprocess
import sys

import pytest

from jaxray import host_memory

GLIBC, MADVISE = (2, 36), "madvise"


HEAP = "glibc.malloc.arena_max=1:glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=68719476736"


@pytest.mark.parametrize("environ, expected", [
    ({}, "glibc.malloc.hugetlb=1:" + HEAP),
    ({"GLIBC_TUNABLES": "glibc.malloc.tcache_count=0"},
     "glibc.malloc.tcache_count=0:glibc.malloc.hugetlb=1:" + HEAP),
    # The user's own settings win, each on its own.
    ({"GLIBC_TUNABLES": "glibc.malloc.hugetlb=0"}, "glibc.malloc.hugetlb=0:" + HEAP),
    ({"GLIBC_TUNABLES": "glibc.malloc.arena_max=4"},
     "glibc.malloc.arena_max=4:glibc.malloc.hugetlb=1:glibc.malloc.mmap_max=0:"
     "glibc.malloc.trim_threshold=68719476736"),
    ({"GLIBC_TUNABLES": "glibc.malloc.hugetlb=1:" + HEAP}, None),  # all there: no restart
    ({"JAXRAY_XLA_CPU_DEFAULTS": "0"}, None),
])
def test_tunables_to_set(environ, expected):
  assert host_memory.tunables_to_set(environ, GLIBC, MADVISE) == expected


@pytest.mark.parametrize("glibc_version, thp_mode, expected", [
    ((2, 34), MADVISE, HEAP),  # glibc without the huge-page tunable
    (GLIBC, "always", HEAP),  # huge pages without asking
    (GLIBC, "never", HEAP),
    (GLIBC, None, HEAP),  # no transparent huge pages in this kernel
    ((2, 25), MADVISE, None),  # glibc without malloc tunables
    (None, MADVISE, None),  # not glibc
])
def test_what_each_machine_gets(glibc_version, thp_mode, expected):
  assert host_memory.tunables_to_set({}, glibc_version, thp_mode) == expected


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
      "host_memory.restart_with_memory_settings()\n"
      "print('tunables', os.environ['GLIBC_TUNABLES'])\n"
      "print('user', host_memory.user_environment().get('GLIBC_TUNABLES'))\n")
  env = {k: v for k, v in os.environ.items()
         if k not in ("GLIBC_TUNABLES", "JAXRAY_XLA_CPU_DEFAULTS")}
  out = subprocess.run([sys.executable, "-c", program, "--experiment=demo", "x y"], env=env,
                       capture_output=True, text=True, check=True).stdout.splitlines()
  starts = [line for line in out if line.startswith("start")]
  assert len(starts) == 2 and starts[0] == starts[1]  # same pid, same arguments, once again
  assert "['--experiment=demo', 'x y']" in starts[0]
  assert out[-2] == "tunables glibc.malloc.hugetlb=1:" + HEAP
  assert out[-1] == "user None"  # a program run beside it gets the user's (no) settings
  # Opted out: no restart.
  env["JAXRAY_XLA_CPU_DEFAULTS"] = "0"
  out = subprocess.run([sys.executable, "-c", program], env=env, capture_output=True,
                       text=True, check=False).stdout
  assert out.count("start") == 1


@pytest.mark.parametrize("environ, expected", [
    # After the restart: the user's own settings come back, or none if they had none.
    ({"GLIBC_TUNABLES": "glibc.malloc.hugetlb=1:" + HEAP, host_memory.USER_TUNABLES: ""}, None),
    ({"GLIBC_TUNABLES": "glibc.malloc.tcache_count=0:" + HEAP,
      host_memory.USER_TUNABLES: "glibc.malloc.tcache_count=0"}, "glibc.malloc.tcache_count=0"),
    # No restart happened (opted out, or an old glibc): the environment is the user's already.
    ({"GLIBC_TUNABLES": "glibc.malloc.hugetlb=0"}, "glibc.malloc.hugetlb=0"),
    ({}, None),
])
def test_user_environment_undoes_only_the_restart(environ, expected):
  user = host_memory.user_environment(dict(environ, HOME="/home/x"))
  assert user.get("GLIBC_TUNABLES") == expected
  assert host_memory.USER_TUNABLES not in user and user["HOME"] == "/home/x"
