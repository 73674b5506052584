"""One training epoch: the batches of an epoch, and the jitted train step run over them."""

import jax
from tqdm import tqdm

from jaxray.data import pipeline
from jaxray.train import mesh as mesh_lib


def train_epoch(run, state, metrics, batches, *, total=None, description=None, show=True,
                stop=lambda: False):
  """(state, summed metrics) after `run.train_step` over `batches`, from `state`; it ends early,
  between two steps, once `stop()` is true (Ctrl-C: the caller discards the partial epoch).

  At most one step is in flight: without the wait, asynchronous dispatch queues the whole epoch
  in seconds and the progress bar sits at 100% while the steps run. The next batch is already on
  its way to the devices when the wait starts, so they get no idle time to speak of.
  """
  for batch in tqdm(batches, total=total, desc=description, leave=False, disable=not show):
    if stop():
      break
    batch = mesh_lib.to_global(batch, run.mesh)
    jax.block_until_ready(metrics)
    state, metrics = run.train_step(state, batch, metrics)
  return state, metrics


def epoch_batches(run, epoch: int):
  """The training batches of `epoch`: a pure function of (seed, epoch), so resuming needs no
  input-pipeline state."""
  config = run.config
  order = (pipeline.balanced_order(run.train_labels, config.seed, epoch)
           if config.class_balance.sampling == "balanced" else None)
  return pipeline.train_batches(run.splits["train"], batch_size=config.input.batch_size,
                                image_size=config.input.image_size, seed=config.seed,
                                epoch=epoch, drop_remainder=config.input.drop_remainder,
                                multiple=run.mesh.size, num_threads=config.input.num_threads,
                                order=order)
