"""The `runtime` config section: CPU speed-ups as explicit settings that every run records.

jaxray computes the same thing on every backend. On the CPU some of XLA's paths are slow for
ResNet's shapes, and the `runtime` section turns on kernels and process settings that compute
the same values faster there (float rounding aside). Each field is "auto", True or False:

  kernels (jaxray/ops/, injected into the model and the augmentation):
    winograd, small_map_im2col, col2im_input_grad, im2col_weight_grad, max_pool_grad, materialize
  XLA:CPU flags (XLA_FLAGS, read once when JAX starts its CPU backend):
    xla_ynn_reductions_only  --xla_cpu_experimental_ynn_fusion_type=reduce
    xla_memory_scheduler     --xla_cpu_enable_concurrency_optimized_scheduler=false
  malloc settings (GLIBC_TUNABLES, read once when the process starts, so the entry point starts
  itself again, once, with os.execv):
    malloc_huge_pages        glibc.malloc.hugetlb=1
    malloc_keep_heap         glibc.malloc.arena_max=1, mmap_max=0, trim_threshold=64 GiB

"auto" is each field's rule below (`_auto`), written where it was measured: a 2-core AMD EPYC
(docs/performance.md). Every field resolves to False off the CPU backend. An XLA_FLAGS option
or a GLIBC_TUNABLES entry that the user set wins over the section. `config.json` keeps the
requested values; `results.json` and `report.md` record the resolved ones (`record`).

Nothing here runs at import. The entry points call `configure_process` after parsing their
flags and before JAX starts a backend; `resolve` then reads back what the process runs with.
"""

import importlib.metadata
import os
import sys
from typing import Mapping

import ml_collections

from jaxray import ops

AUTO = "auto"
XLA_FIELDS = ("xla_ynn_reductions_only", "xla_memory_scheduler")
MALLOC_FIELDS = ("malloc_huge_pages", "malloc_keep_heap")
FIELDS = ops.KERNEL_FIELDS + XLA_FIELDS + MALLOC_FIELDS

_YNN_FLAG = "--xla_cpu_experimental_ynn_fusion_type"
_SCHEDULER_FLAG = "--xla_cpu_enable_concurrency_optimized_scheduler"
_XLA_SETTINGS = {"xla_ynn_reductions_only": (_YNN_FLAG, "reduce"),
                 "xla_memory_scheduler": (_SCHEDULER_FLAG, "false")}
_MALLOC_SETTINGS = {
    "malloc_huge_pages": (("glibc.malloc.hugetlb", "1"),),
    "malloc_keep_heap": (("glibc.malloc.arena_max", "1"), ("glibc.malloc.mmap_max", "0"),
                         ("glibc.malloc.trim_threshold", str(64 << 30))),
}
_MIN_JAXLIB_YNN = (0, 10)  # jaxlib releases that know the YNN flag (and use YNNPACK by default)
_SCHEDULER_MAX_CPUS = 4  # measured on 2 CPUs; with more, operations side by side may well pay
_MIN_GLIBC_TUNABLES = (2, 26)
_MIN_GLIBC_HUGE_PAGES = (2, 35)
_THP_MODE = "/sys/kernel/mm/transparent_hugepage/enabled"
_RESTARTED = "JAXRAY_RUNTIME_RESTARTED"  # set by the restart: never restart twice
USER_TUNABLES = "JAXRAY_USER_GLIBC_TUNABLES"  # the user's GLIBC_TUNABLES from before the restart
# Distributions whose presence means JAX will take an accelerator when it finds one.
_ACCELERATOR_PLUGINS = {"jax-cuda": "gpu", "jax_cuda": "gpu", "jax-rocm": "gpu",
                        "jax_rocm": "gpu", "libtpu": "tpu"}


def defaults() -> ml_collections.ConfigDict:
  """The base config's `runtime` section: every field "auto" (not type-safe: "auto" or a bool)."""
  return ml_collections.ConfigDict({name: AUTO for name in FIELDS}, type_safe=False)


def requested(section: ml_collections.ConfigDict) -> dict:
  """The section as a plain dict, checked: each field "auto", True or False."""
  values = dict(section)
  for name in FIELDS:
    if name not in values:
      raise ValueError(f"runtime.{name} is missing from the config; start it from "
                       f"jaxray.base_config.get_config().")
  for name, value in values.items():
    if name not in FIELDS:
      raise ValueError(f"runtime.{name} is not a runtime setting; they are: {', '.join(FIELDS)}")
    if value != AUTO and not isinstance(value, bool):
      raise ValueError(f"runtime.{name} must be 'auto', True or False, got {value!r} "
                       f"(e.g. --set runtime.{name}=False)")
  return values


# ------------------------------------------------------------------------------------------------
# The machine, as "auto" sees it.


def _jaxlib_version():
  try:
    return tuple(int(p) for p in importlib.metadata.version("jaxlib").split(".")[:2])
  except (importlib.metadata.PackageNotFoundError, ValueError):
    return (0, 0)


def _cpu_count():
  """CPUs this process may run on (its affinity mask, where the OS has one)."""
  try:
    return len(os.sched_getaffinity(0))
  except AttributeError:  # macOS, Windows
    return os.cpu_count() or 1


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


def intended_platform(platform_flag=None, environ=None) -> str:
  """"cpu", "gpu" or "tpu": where JAX will run, decided before it starts.

  In order: `--platform` when given; else JAX_PLATFORMS when set (its first entry); else "gpu" or
  "tpu" when a JAX accelerator plugin is installed (JAX then takes the accelerator when it sees
  one; a node whose plugin sees none runs on the CPU without the malloc settings, the safe side);
  else "cpu".
  """
  environ = os.environ if environ is None else environ
  if platform_flag:
    return platform_flag
  first = environ.get("JAX_PLATFORMS", "").split(",")[0].strip().lower()
  if first:
    return {"cuda": "gpu", "rocm": "gpu"}.get(first, first)
  for dist in importlib.metadata.distributions():
    name = (dist.metadata["Name"] or "").lower()
    for prefix, platform in _ACCELERATOR_PLUGINS.items():
      if name.startswith(prefix):
        return platform
  return "cpu"


def _auto(name, machine) -> bool:
  """The measured rule behind "auto" for `name`, on the CPU backend."""
  if name == "im2col_weight_grad":  # only where YNNPACK computes the convolutions
    return machine["ynn_convolutions"]
  if name == "xla_ynn_reductions_only":
    return machine["jaxlib"] >= _MIN_JAXLIB_YNN
  if name == "xla_memory_scheduler":
    return machine["cpu_count"] <= _SCHEDULER_MAX_CPUS
  if name == "malloc_huge_pages":
    glibc = machine["glibc"]
    return bool(glibc) and glibc >= _MIN_GLIBC_HUGE_PAGES and machine["thp_mode"] == "madvise"
  if name == "malloc_keep_heap":
    return bool(machine["glibc"]) and machine["glibc"] >= _MIN_GLIBC_TUNABLES
  return True  # every kernel: on, on the CPU


def _machine(environ) -> dict:
  jaxlib = _jaxlib_version()
  ynn = _flag_value(environ.get("XLA_FLAGS", ""), _YNN_FLAG)
  return {"jaxlib": jaxlib, "cpu_count": _cpu_count(), "glibc": _glibc_version(),
          "thp_mode": _thp_mode(),
          # jaxlib >= 0.10 computes CPU convolutions with YNNPACK unless the flag says otherwise
          "ynn_convolutions": jaxlib >= _MIN_JAXLIB_YNN and (ynn is None or "convolution" in ynn)}


def _wanted(name, value, platform, machine) -> bool:
  if platform != "cpu":
    return False
  return _auto(name, machine) if value == AUTO else value


def _flag_value(flags: str, option: str):
  """The value of `option` in an XLA_FLAGS string, or None when it is not there."""
  for word in flags.split():
    if word.split("=", 1)[0] == option:
      return word.split("=", 1)[1] if "=" in word else ""
  return None


def _has_tunables(tunables: str, pairs) -> bool:
  present = dict(item.split("=", 1) for item in tunables.split(":") if "=" in item)
  return all(present.get(name) == value for name, value in pairs)


# ------------------------------------------------------------------------------------------------
# Applying the section to the process (entry points only), and reading it back.


def _backends_started() -> bool:
  if "jax" not in sys.modules:
    return False
  try:
    from jax._src import xla_bridge
    return xla_bridge.backends_are_initialized()
  except (ImportError, AttributeError):
    return False


def configure_process(section: ml_collections.ConfigDict, platform: str) -> None:
  """Applies the section's XLA flags and malloc settings to this process, for `platform`.

  Call it from an entry point before JAX starts a backend. Where malloc settings are wanted and
  not yet in GLIBC_TUNABLES, the process starts again (os.execv: same pid, same command line)
  with them set, once; the caller then parses its flags again. Elsewhere it only adds the XLA
  options to XLA_FLAGS. The user's own options and tunables win.
  """
  if _backends_started():
    raise RuntimeError("jaxray.runtime.configure_process must run before JAX starts a backend: "
                       "XLA reads XLA_FLAGS once, at that moment.")
  values = requested(section)
  machine = _machine(os.environ)
  flags = os.environ.get("XLA_FLAGS", "")
  for name in XLA_FIELDS:
    option, setting = _XLA_SETTINGS[name]
    if _wanted(name, values[name], platform, machine) and _flag_value(flags, option) is None:
      flags = f"{flags} {option}={setting}".strip()
  if flags:
    os.environ["XLA_FLAGS"] = flags
  tunables = os.environ.get("GLIBC_TUNABLES", "")
  present = {item.split("=", 1)[0] for item in tunables.split(":") if "=" in item}
  added = [f"{key}={value}" for name in MALLOC_FIELDS
           if _wanted(name, values[name], platform, machine)
           for key, value in _MALLOC_SETTINGS[name] if key not in present]
  if added and not os.environ.get(_RESTARTED) and hasattr(sys, "orig_argv"):
    os.environ[USER_TUNABLES] = tunables
    os.environ["GLIBC_TUNABLES"] = ":".join(([tunables] if tunables else []) + added)
    os.environ[_RESTARTED] = "1"
    sys.stdout.flush()
    sys.stderr.flush()
    try:
      os.execv(sys.executable, [sys.executable, *sys.orig_argv[1:]])
    except OSError:  # e.g. the interpreter's path is gone: run on with malloc's defaults
      os.environ["GLIBC_TUNABLES"] = tunables


def resolve(section: ml_collections.ConfigDict, backend: str, environ=None) -> dict:
  """Each field's value in this process on `backend` (jax.default_backend()): True or False.

  Kernels follow the section's rule; XLA and malloc settings are read back from the process's
  XLA_FLAGS and GLIBC_TUNABLES, so they say what runs, whoever set them.
  """
  environ = os.environ if environ is None else environ
  values = requested(section)
  machine = _machine(environ)
  resolved = {name: _wanted(name, values[name], backend, machine) for name in ops.KERNEL_FIELDS}
  flags = environ.get("XLA_FLAGS", "")
  for name in XLA_FIELDS:
    option, setting = _XLA_SETTINGS[name]
    resolved[name] = backend == "cpu" and _flag_value(flags, option) == setting
  tunables = environ.get("GLIBC_TUNABLES", "")
  for name in MALLOC_FIELDS:
    resolved[name] = _has_tunables(tunables, _MALLOC_SETTINGS[name])
  return resolved


def record(section: ml_collections.ConfigDict, backend: str, environ=None) -> dict:
  """What results.json keeps: requested and resolved values and the process settings behind them."""
  environ = os.environ if environ is None else environ
  return {"requested": requested(section), "resolved": resolve(section, backend, environ),
          "backend": backend, "xla_flags": environ.get("XLA_FLAGS", ""),
          "glibc_tunables": environ.get("GLIBC_TUNABLES", "")}


def user_environment(environ: Mapping[str, str] | None = None) -> dict:
  """A copy of `environ` with GLIBC_TUNABLES as the user had it before the restart: for a
  program run beside jaxray (the bench's PyTorch reference) as it runs for its own users."""
  environ = dict(os.environ if environ is None else environ)
  if USER_TUNABLES in environ:
    original = environ.pop(USER_TUNABLES)
    if original:
      environ["GLIBC_TUNABLES"] = original
    else:
      environ.pop("GLIBC_TUNABLES", None)
  environ.pop(_RESTARTED, None)
  return environ
