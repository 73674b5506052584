"""The host input pipeline: grain over a prepared dataset, light on the CPU.

The host only reads, resizes and batches uint8 images; augmentation and normalization run on the
device inside the jitted step (see `augment.py`). The order of the training examples is a pure
function of (seed, epoch), so a run resumed at an epoch boundary sees exactly the batches it
would have seen without the interruption, with no iterator state to checkpoint.

Every batch is this process's share of the global batch: with P processes, process p reads the
p-th contiguous block of B / P examples of every global batch of B, so the global batch is the
same array, in the same order, on one device, many devices or many hosts. Training keeps the
epoch's remainder as a last, smaller batch, as the reports' loaders do (cut to a multiple of the
device count). Evaluation pads the last batch and masks the padding, so every example is counted
exactly once whatever the batch size and the number of devices or hosts.
"""

import itertools
import math
from typing import Iterator

import grain
import jax
import numpy as np
from PIL import Image

from jaxray.data import splits


class ToModelInput(grain.transforms.MapWithIndex):
  """Decoded TFDS example -> {"image": (S, S, 1) uint8, "label": int32, "index": int32}; a
  multi-label example's "label" is (K,) int32."""

  def __init__(self, image_size: int):
    self.image_size = image_size

  def map_with_index(self, index, example):
    image = np.asarray(example["image"])
    if image.ndim == 3:
      image = image[..., 0]
    if image.shape != (self.image_size, self.image_size):
      image = np.asarray(Image.fromarray(image).resize(
          (self.image_size, self.image_size), Image.Resampling.BILINEAR))
    label = np.asarray(example["label"])  # a class, or (K,) findings: 1, 0, -1 unknown
    return {"image": image[..., None], "label": label.astype(np.int32) if label.ndim
            else np.int32(label), "index": np.int32(index)}


def _epoch_seed(seed: int, epoch: int) -> int:
  return int(np.random.SeedSequence([seed, epoch]).generate_state(1)[0])


def _per_process(batch_size: int) -> int:
  processes = jax.process_count()
  if batch_size % processes:
    raise ValueError(f"The global batch size {batch_size} must be divisible by the number of "
                     f"processes ({processes}).")
  return batch_size // processes


def last_batch_size(num_examples: int, batch_size: int, drop_remainder: bool,
                    multiple: int = 1) -> int:
  """The size of the epoch's last, partial global batch; 0 when there is none.

  The reports' loaders (PyTorch's DataLoader, Keras' fit) train on the remainder of the epoch
  as one smaller batch. It must split evenly over the devices, so it is cut to a multiple of
  `multiple` (the device count): on one device nothing is left out, on D devices at most D - 1
  examples of the (reshuffled) epoch. `drop_remainder` leaves it out altogether.
  """
  if drop_remainder:
    return 0
  return num_examples % batch_size // multiple * multiple


def steps_per_epoch(num_examples: int, batch_size: int, drop_remainder: bool = False,
                    multiple: int = 1) -> int:
  """Global batches per epoch: the full ones, and the partial last one if it is kept."""
  last = last_batch_size(num_examples, batch_size, drop_remainder, multiple)
  return num_examples // batch_size + (last > 0)


def balanced_order(labels: np.ndarray, seed: int, epoch: int) -> np.ndarray:
  """Class-balanced sampling: an epoch of len(labels) example indices, drawn with replacement
  with every class equally likely (PyTorch's WeightedRandomSampler with weights 1 / n_class).

  A pure function of (seed, epoch), like the shuffle, so a resumed run draws the same epoch.
  The minority class's images then appear several times an epoch and some of the majority's not
  at all; the epoch keeps its length, so epochs stay comparable with unbalanced runs.
  """
  labels = np.asarray(labels)
  classes, counts = np.unique(labels, return_counts=True)
  weight = np.zeros(labels.shape, np.float64)
  for c, n in zip(classes, counts):
    weight[labels == c] = 1.0 / (len(classes) * n)
  rng = np.random.default_rng(_epoch_seed(seed, epoch))
  return rng.choice(len(labels), size=len(labels), replace=True, p=weight / weight.sum())


def train_batches(source, *, batch_size: int, image_size: int, seed: int, epoch: int,
                  drop_remainder: bool = False, multiple: int = 1, num_threads: int = 2,
                  prefetch: int = 4, order: np.ndarray | None = None) -> Iterator[dict]:
  """One epoch of shuffled training batches (this process's share of each global batch).

  Every batch has `batch_size` examples but the last, which has
  `last_batch_size(len(source), batch_size, drop_remainder, multiple)` (the train step compiles
  once more for it). `order` replaces the shuffle with an epoch of sampled indices
  (`balanced_order`), of the same length.
  """
  full_steps = len(source) // batch_size
  last = last_batch_size(len(source), batch_size, drop_remainder, multiple)
  if full_steps == 0:
    raise ValueError(f"The training split has {len(source)} examples, fewer than one batch of "
                     f"{batch_size}; lower the batch size (--set input.batch_size=...).")
  if order is None:
    dataset = (grain.MapDataset.source(source)
               .map_with_index(ToModelInput(image_size))
               .shuffle(seed=_epoch_seed(seed, epoch)))
  else:
    dataset = grain.MapDataset.source(splits.Subset(source, order)).map_with_index(
        ToModelInput(image_size))
  # Global batch s is positions [s * B, (s + 1) * B) of the shuffled epoch whatever the number of
  # processes; process p reads the p-th contiguous block of it. Contiguous, not strided: the
  # global batch is then the same array in the same order on one process or many, so every
  # example keeps its position and hence its augmentation key.
  options = grain.ReadOptions(num_threads=num_threads, prefetch_buffer_size=prefetch)
  end = full_steps * batch_size
  full = dataset[:end].batch(_per_process(batch_size), drop_remainder=True)
  full = full[jax.process_index()::jax.process_count()]
  if not last:
    return iter(full.to_iter_dataset(options))
  # The partial batch, positions [end, end + last): process p reads its p-th block of last / P.
  share = _per_process(last)
  start = end + jax.process_index() * share
  tail = dataset[start:start + share].batch(share)
  return itertools.chain(full.to_iter_dataset(options), tail.to_iter_dataset(options))


def eval_batches(source, *, batch_size: int, image_size: int, num_threads: int = 2,
                 prefetch: int = 4) -> Iterator[dict]:
  """Every example once, in order; the tail is padded to full batches with "mask" = 0."""
  local_batch = _per_process(batch_size)
  steps = num_eval_steps(len(source), batch_size)
  # Global batch s is examples [s * B, (s + 1) * B), process p reading its p-th block of B / P;
  # the last block is short and padded, and a process left without a block sends padding only.
  dataset = (grain.MapDataset.source(source)
             .map_with_index(ToModelInput(image_size))
             .batch(local_batch, drop_remainder=False))
  dataset = dataset[jax.process_index()::jax.process_count()]
  options = grain.ReadOptions(num_threads=num_threads, prefetch_buffer_size=prefetch)
  produced = 0
  template = None
  for batch in dataset.to_iter_dataset(options):
    produced += 1
    template = batch
    yield _pad(batch, local_batch)
  for _ in range(steps - produced):  # a process with fewer examples still joins every step
    if template is None:
      template = {"image": np.zeros((1, image_size, image_size, 1), np.uint8),
                  "label": np.zeros((1,), np.int32), "index": np.zeros((1,), np.int32)}
    yield {k: np.zeros((local_batch,) + v.shape[1:], v.dtype) for k, v in template.items()} | {
        "mask": np.zeros((local_batch,), bool)}


def _pad(batch: dict, size: int) -> dict:
  count = len(batch["label"])
  mask = np.arange(size) < count
  if count == size:
    return batch | {"mask": mask}
  padded = {k: np.concatenate([v, np.zeros((size - count,) + v.shape[1:], v.dtype)])
            for k, v in batch.items()}
  return padded | {"mask": mask}


def even_batch_size(num_examples: int, max_batch_size: int, multiple: int = 1) -> int:
  """The smallest batch (a multiple of `multiple`, at most `max_batch_size`) that covers
  `num_examples` in as few batches as `max_batch_size` does: 524 examples at most 256 a batch ->
  3 batches of 176 (4 padded) rather than 3 of 256 (244 padded)."""
  steps = max(1, math.ceil(num_examples / max_batch_size))
  size = math.ceil(math.ceil(num_examples / steps) / multiple) * multiple
  return min(max(size, multiple), max_batch_size)


def num_eval_steps(num_examples: int, batch_size: int) -> int:
  """Global batches to cover every example once (the last one padded); the same on every process."""
  _per_process(batch_size)
  return math.ceil(num_examples / batch_size)
