"""`materialize`: an identity that tells XLA:CPU's fusion where to stop.

XLA fuses elementwise producers into every consumer. On the CPU that can cost far more than
storing the value once: the weight gradient of a convolution reads its input transposed, and XLA
fuses that transpose with the BatchNorm, residual add and ReLU that produced the input (and,
through the residual, with those of the blocks before), so each transposed element recomputes up
to three blocks. Storing each block's output once avoids it.

XLA:CPU drops optimization barriers before fusion, but it does not fuse across a conditional, so
x passes through a `lax.cond` whose predicate is always true, (bits of x's first element | 1) !=
0, in a form XLA does not fold; both branches are x, so the values and gradients are x's whatever
the input. Call it on whole batches, not under `jax.vmap`: a batched predicate turns the
conditional into a select, which XLA fuses like any other elementwise op.
"""

import jax.numpy as jnp
from jax import lax


def materialize(x):
  """x, computed once and stored: XLA may not recompute it inside each of its consumers."""
  first = x.reshape(-1)[0]
  bits = lax.bitcast_convert_type(first, jnp.dtype(f"uint{8 * first.dtype.itemsize}"))
  always = (bits | 1) != 0
  return lax.cond(always, lambda v: v, lambda v: v + jnp.zeros((), v.dtype), x)


def identity(x):
  """What `Ops.store` is when `runtime.materialize` is off: x, left to XLA's fusion."""
  return x
