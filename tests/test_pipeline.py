import numpy as np
import pytest

from jaxray.data import pipeline


class FakeSource:
  """A random-access source like TFDS's: example i has label i % 2 and a constant image i."""

  def __init__(self, size, shape=(40, 30)):
    self.size, self.shape = size, shape

  def __len__(self):
    return self.size

  def __getitem__(self, i):
    return {"image": np.full(self.shape + (1,), i % 256, np.uint8), "label": i % 2}


def _epoch(source, **kwargs):
  return list(pipeline.train_batches(source, batch_size=8, image_size=16, num_threads=1, **kwargs))


def test_train_batches_shapes_and_full_batches_only():
  batches = _epoch(FakeSource(30), seed=0, epoch=1, drop_remainder=True)
  assert len(batches) == pipeline.steps_per_epoch(30, 8, drop_remainder=True) == 3
  for batch in batches:
    assert batch["image"].shape == (8, 16, 16, 1) and batch["image"].dtype == np.uint8
    assert batch["label"].shape == (8,)
    np.testing.assert_array_equal(batch["image"][:, 0, 0, 0], batch["index"] % 256)
    np.testing.assert_array_equal(batch["label"], batch["index"] % 2)
  indices = np.concatenate([b["index"] for b in batches])
  assert len(set(indices.tolist())) == 24


@pytest.mark.parametrize("size, multiple, last", [(30, 1, 6), (30, 4, 4), (30, 7, 0), (32, 1, 0)])
def test_the_epoch_remainder_is_a_last_smaller_batch(size, multiple, last):
  """As PyTorch's DataLoader: every example once an epoch, the remainder in a batch of its own,
  cut to a multiple of the device count."""
  batches = _epoch(FakeSource(size), seed=0, epoch=1, multiple=multiple)
  assert pipeline.last_batch_size(size, 8, False, multiple) == last
  steps = pipeline.steps_per_epoch(size, 8, False, multiple)
  assert len(batches) == steps == size // 8 + (last > 0)
  assert [len(b["label"]) for b in batches] == [8] * (size // 8) + ([last] if last else [])
  indices = np.concatenate([b["index"] for b in batches])
  assert len(set(indices.tolist())) == len(indices) == size // 8 * 8 + last
  for batch in batches:
    np.testing.assert_array_equal(batch["image"][:, 0, 0, 0], batch["index"] % 256)
  if multiple == 1:  # the whole shuffled epoch: the last batch is the rest of the same order
    assert sorted(indices.tolist()) == list(range(size))
    dropped = _epoch(FakeSource(size), seed=0, epoch=1, drop_remainder=True)
    np.testing.assert_array_equal(np.concatenate([b["index"] for b in dropped]),
                                  indices[:size // 8 * 8])


def test_train_order_is_a_function_of_seed_and_epoch():
  source = FakeSource(64)
  order = lambda **kw: np.concatenate([b["index"] for b in _epoch(source, **kw)])
  np.testing.assert_array_equal(order(seed=3, epoch=2), order(seed=3, epoch=2))
  assert not np.array_equal(order(seed=3, epoch=2), order(seed=3, epoch=3))
  assert not np.array_equal(order(seed=3, epoch=2), order(seed=4, epoch=2))


def test_too_small_training_split_is_a_clear_error():
  with pytest.raises(ValueError, match="fewer than one batch"):
    _epoch(FakeSource(5), seed=0, epoch=1)


@pytest.mark.parametrize("size, batch_size", [(30, 8), (32, 8), (7, 16), (624, 32), (624, 100)])
def test_eval_counts_every_example_exactly_once(size, batch_size):
  batches = list(pipeline.eval_batches(FakeSource(size), batch_size=batch_size, image_size=8,
                                       num_threads=1))
  assert len(batches) == pipeline.num_eval_steps(size, batch_size)
  assert all(len(b["mask"]) == batch_size for b in batches)
  kept = np.concatenate([b["index"][b["mask"]] for b in batches])
  np.testing.assert_array_equal(np.sort(kept), np.arange(size))


@pytest.mark.parametrize("examples,max_batch,multiple,expected", [
    (524, 256, 1, 175),  # PneumoniaMNIST val: 3 batches either way, 1 padded instead of 244
    (524, 256, 4, 176),  # divisible over 4 devices
    (16, 32, 1, 16),     # fewer examples than a batch: one batch, no padding
    (16, 32, 8, 16),
    (3, 32, 8, 8),       # never below one example per device
    (512, 256, 1, 256),  # already even
    (1, 1, 1, 1),
])
def test_even_batch_size_pads_as_little_as_the_same_number_of_batches_allows(
    examples, max_batch, multiple, expected):
  size = pipeline.even_batch_size(examples, max_batch, multiple)
  assert size == expected
  assert size % multiple == 0 and size <= max_batch
  assert pipeline.num_eval_steps(examples, size) == pipeline.num_eval_steps(examples, max_batch)
