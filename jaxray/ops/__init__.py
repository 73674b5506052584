"""The operations a run's `runtime` section chooses: plain JAX, or CPU kernels computing the same.

The model definitions (jaxray/models/) and the augmentation call their convolutions, ResNet's
stem max-pool and a `store` of intermediate values through an `Ops` they are given, so that the
architecture reads as the paper's and the CPU machinery lives here, chosen per run and recorded.
`PLAIN` is plain `lax.conv_general_dilated`, `nnx.max_pool` and the identity: what a GPU or TPU
run uses, and what every run uses with all of `runtime`'s kernels off.
"""

import dataclasses
from typing import Callable, Mapping

from jax import lax

from jaxray.ops import conv, fusion, pooling


@dataclasses.dataclass(frozen=True)
class Ops:
  """The kernels of one run; frozen and hashable, so modules can keep it as a static field."""

  conv_general_dilated: Callable = lax.conv_general_dilated  # nnx.Conv's convolution
  max_pool_3x3_s2: Callable = pooling.max_pool_3x3_s2  # ResNet's stem pool
  store: Callable = fusion.identity  # values XLA:CPU should compute once, not per consumer


PLAIN = Ops()

# The `runtime` fields that choose a kernel (the other runtime fields are process settings).
KERNEL_FIELDS = ("winograd", "small_map_im2col", "col2im_input_grad", "im2col_weight_grad",
                 "max_pool_grad", "materialize")


def from_runtime(resolved: Mapping[str, bool]) -> Ops:
  """The `Ops` for the resolved runtime section (jaxray.runtime.resolve): each kernel on or off."""
  convolution = conv.CpuConv(winograd=resolved["winograd"],
                             small_map_im2col=resolved["small_map_im2col"],
                             col2im_input_grad=resolved["col2im_input_grad"],
                             im2col_weight_grad=resolved["im2col_weight_grad"])
  if convolution == conv.CpuConv():  # no detour on: XLA's own convolution, not a wrapper of it
    convolution = lax.conv_general_dilated
  return Ops(
      conv_general_dilated=convolution,
      max_pool_3x3_s2=(pooling.max_pool_3x3_s2_direct_grad if resolved["max_pool_grad"]
                       else pooling.max_pool_3x3_s2),
      store=fusion.materialize if resolved["materialize"] else fusion.identity)
