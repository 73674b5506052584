"""XLA:CPU compiler settings that jaxray applies before JAX starts its CPU backend.

jaxlib >= 0.10 hands CPU convolutions to the YNNPACK library by default. On ResNet's shapes that
path is 1.5-5x slower than XLA's own (Eigen) convolutions, weight gradients worst (batch 128,
28x28x64 3x3: forward 105 -> 39 ms, weight gradient 424 -> 75 ms; BENCH.md has the table),
while YNNPACK's reductions are 20x faster than XLA's (BatchNorm statistics over batch 128 x 28 x 28:
18 -> 0.9 ms). `--xla_cpu_experimental_ynn_fusion_type=reduce` keeps YNNPACK for reductions only,
which measured fastest for the whole train step. The flag changes which kernels run, not what
they compute (results agree to float rounding).

`--xla_cpu_enable_concurrency_optimized_scheduler=false`: XLA:CPU's default schedule orders
independent operations so that they can run at the same time, and its runtime then does run them
at once, each over the same two-thread pool; on a 2-core CPU they only compete for it. The
memory-oriented order runs the 28-px ResNet-18 (MedMNIST stem) train step 1.02-1.24x faster, in 7
of 7 paired runs (median 1.05x; 224 px: 1.01-1.10x in 3 of 3; 28 px with the ImageNet stem:
0.93-1.04x, within its noise; BENCH.md). Same operations, same results: only their order changes.
It is set only where the process sees at most 4 CPUs: that is where it was measured, and with more
cores running operations side by side may well pay.

Each setting is appended to XLA_FLAGS at `import jaxray`, unless the user's XLA_FLAGS already
names that option (theirs wins) or JAXRAY_XLA_CPU_DEFAULTS=0. It has to happen before the first
JAX computation: XLA reads XLA_FLAGS once, when the backend starts. It only affects the CPU
backend; GPU runs compile exactly as before.

JAXRAY_XLA_CPU_DEFAULTS=0 also turns off the entry points' restart with malloc settings
(jaxray/host_memory.py), the other CPU setting jaxray makes for you.

`materialize` is the other half of this module: a way to tell XLA:CPU's fusion where to stop.
"""

import os

import jax
import jax.numpy as jnp
from jax import lax

YNN_FLAG = "--xla_cpu_experimental_ynn_fusion_type"
_YNN_SETTING = "reduce"
SCHEDULER_FLAG = "--xla_cpu_enable_concurrency_optimized_scheduler"
_SCHEDULER_MAX_CPUS = 4  # the scheduler setting only where contention is likely (measured: 2)
# jaxlib releases that know the flag (an unknown flag in XLA_FLAGS aborts the process).
_MIN_JAXLIB = (0, 10)

_state = {"ynn_convolutions": True}


def _jaxlib_version():
  try:
    from importlib import metadata
    parts = metadata.version("jaxlib").split(".")[:2]
    return tuple(int(p) for p in parts)
  except Exception:  # noqa: BLE001  (not installed / odd version string: leave XLA alone)
    return (0, 0)


def configure() -> None:
  """Appends jaxray's XLA:CPU defaults to XLA_FLAGS (idempotent)."""
  flags = os.environ.get("XLA_FLAGS", "")
  knows_flags = _jaxlib_version() >= _MIN_JAXLIB
  if os.environ.get("JAXRAY_XLA_CPU_DEFAULTS", "1") == "0" or not knows_flags:
    _state["ynn_convolutions"] = _ynn_convolutions(flags, default=knows_flags)
    return
  defaults = [(YNN_FLAG, _YNN_SETTING)]
  if _cpu_count() <= _SCHEDULER_MAX_CPUS:
    defaults.append((SCHEDULER_FLAG, "false"))
  for option, value in defaults:
    if option not in flags:
      flags = f"{flags} {option}={value}".strip()
  os.environ["XLA_FLAGS"] = flags
  _state["ynn_convolutions"] = _ynn_convolutions(flags, default=knows_flags)


def _cpu_count():
  """CPUs this process may run on (its affinity mask, where the OS has one)."""
  try:
    return len(os.sched_getaffinity(0))
  except AttributeError:  # macOS, Windows
    return os.cpu_count() or 1


def _ynn_convolutions(flags, default):
  """Whether these XLA_FLAGS let YNNPACK compute convolutions (`default`: jaxlib's own choice,
  YNNPACK from 0.10 on, when the flags do not say)."""
  if YNN_FLAG not in flags:
    return default
  value = flags.split(YNN_FLAG, 1)[1].lstrip("=").split(" ", 1)[0]
  return "convolution" in value


def ynn_convolutions() -> bool:
  """Whether CPU convolutions may run through YNNPACK (jaxlib's default, when not configured)."""
  return _state["ynn_convolutions"]


# Whether `materialize` stores its input on the CPU (read at trace time).
MATERIALIZE = True


def materialize(x):
  """x, computed once and stored: XLA:CPU may not recompute it inside each of its consumers.

  XLA fuses elementwise producers into every consumer, which on the CPU can cost far more than
  storing the value once. The weight gradient of a convolution reads its input transposed (XLA:CPU
  wants it as (C, H, W, N)), and XLA fuses that transpose with the elementwise ops that produced
  the input: the BatchNorm, residual add and ReLU of the block before it, and through the residual
  those of the blocks before that. Read in transposed order, recomputing up to three blocks per
  element took 60-170 ms per transpose for the 28x28 stage of the 28-px ResNet-18 at batch 128,
  against 20 ms for transposing the stored block output, ~0.4 s of a 2.9 s train step.

  XLA:CPU drops optimization barriers before fusion, but it does not fuse across a conditional, so
  on the CPU x passes through a `lax.cond` whose predicate is always true, (bits of x's first
  element | 1) != 0, in a form XLA does not fold; both branches are x, so the values and gradients
  are x's whatever the input. Elsewhere x is returned as it is. Call it on whole batches, not
  under `jax.vmap`: a batched predicate turns the conditional into a select, which XLA fuses like
  any other elementwise op.
  """
  if not (MATERIALIZE and jax.default_backend() == "cpu"):
    return x
  first = x.reshape(-1)[0]
  bits = lax.bitcast_convert_type(first, jnp.dtype(f"uint{8 * first.dtype.itemsize}"))
  always = (bits | 1) != 0
  return lax.cond(always, lambda v: v, lambda v: v + jnp.zeros((), v.dtype), x)
