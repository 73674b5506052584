"""XLA:CPU compiler settings that jaxray applies before JAX starts its CPU backend.

jaxlib >= 0.10 hands CPU convolutions to the YNNPACK library by default. On ResNet's shapes that
path is 1.5-5x slower than XLA's own (Eigen) convolutions, weight gradients worst (batch 128,
28x28x64 3x3: forward 105 -> 39 ms, weight gradient 424 -> 75 ms; BENCH.md has the table),
while YNNPACK's reductions are 20x faster than XLA's (BatchNorm statistics over batch 128 x 28 x 28:
18 -> 0.9 ms). `--xla_cpu_experimental_ynn_fusion_type=reduce` keeps YNNPACK for reductions only,
which measured fastest for the whole train step. The flag changes which kernels run, not what
they compute (results agree to float rounding).

The setting is appended to XLA_FLAGS at `import jaxray`, unless the user's XLA_FLAGS already
names the option (theirs wins) or JAXRAY_XLA_CPU_DEFAULTS=0. It has to happen before the first
JAX computation: XLA reads XLA_FLAGS once, when the backend starts. It only affects the CPU
backend; GPU runs compile exactly as before.

`materialize` is the other half of this module: a way to tell XLA:CPU's fusion where to stop.
"""

import os

import jax
import jax.numpy as jnp
from jax import lax

YNN_FLAG = "--xla_cpu_experimental_ynn_fusion_type"
_YNN_SETTING = "reduce"
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
  if YNN_FLAG in flags:
    value = flags.split(YNN_FLAG, 1)[1].lstrip("=").split(" ", 1)[0]
    _state["ynn_convolutions"] = "convolution" in value
    return
  knows_flag = _jaxlib_version() >= _MIN_JAXLIB
  if os.environ.get("JAXRAY_XLA_CPU_DEFAULTS", "1") == "0" or not knows_flag:
    _state["ynn_convolutions"] = knows_flag  # jaxlib's own default from 0.10 on
    return
  os.environ["XLA_FLAGS"] = f"{flags} {YNN_FLAG}={_YNN_SETTING}".strip()
  _state["ynn_convolutions"] = False


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
