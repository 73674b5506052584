"""The PneumoniaMNIST builder, on a tiny .npz in the official MedMNIST format (no network)."""

import hashlib
import io
import pathlib
import urllib.error
import urllib.request

import numpy as np
import pytest

from jaxray import data
from jaxray.data import pneumoniamnist, summary

SIZES = {"train": 12, "val": 5, "test": 7}


def make_npz(path: pathlib.Path, size: int = 28, drop=(), seed: int = 0) -> dict:
  """The official layout: {split}_images uint8 (N, S, S), {split}_labels uint8 (N, 1)."""
  rng = np.random.default_rng(seed)
  arrays = {}
  for split, n in SIZES.items():
    arrays[f"{split}_images"] = rng.integers(0, 256, (n, size, size), dtype=np.uint8)
    arrays[f"{split}_labels"] = (np.arange(n) % 3 != 0).astype(np.uint8)[:, None]
  path.parent.mkdir(parents=True, exist_ok=True)
  np.savez_compressed(path, **{k: v for k, v in arrays.items() if k not in drop})
  return arrays


@pytest.fixture(autouse=True)
def offline(monkeypatch):
  """No test may reach Zenodo: every download fails as it would on an offline machine."""
  def refuse(*args, **kwargs):
    raise urllib.error.URLError("network disabled in tests")
  monkeypatch.setattr(urllib.request, "urlopen", refuse)


@pytest.fixture(scope="module")
def raw(tmp_path_factory):
  folder = tmp_path_factory.mktemp("raw")
  return folder, make_npz(folder / "pneumoniamnist.npz")


def test_prepares_official_splits_pixel_for_pixel(raw, tmp_path):
  folder, arrays = raw
  sources, info = data.load("pneumoniamnist", str(folder), str(tmp_path), "28")
  assert info.full_name == "pneumoniamnist/28/2.0.0"
  assert info.features["label"].names == ["NORMAL", "PNEUMONIA"]
  assert {split: len(source) for split, source in sources.items()} == SIZES
  for split, source in sources.items():
    for i in range(len(source)):  # official order kept: example i is row i of the file
      example = source[i]
      assert example["image"].shape == (28, 28, 1)
      np.testing.assert_array_equal(example["image"][..., 0], arrays[f"{split}_images"][i])
      assert example["label"] == arrays[f"{split}_labels"][i, 0]
      name = f"{split}_{i:05d}".encode()
      assert example["file_name"] == name and example["patient_id"] == name


def test_prints_and_saves_its_counts(raw, tmp_path, capsys):
  folder, arrays = raw
  _, info = data.load("pneumoniamnist", str(folder), str(tmp_path), "28")
  record = summary.load(info.data_dir)
  expected = {split: {"NORMAL": int((arrays[f"{split}_labels"] == 0).sum()),
                      "PNEUMONIA": int((arrays[f"{split}_labels"] == 1).sum())}
              for split in SIZES}
  assert record["counts"] == expected and record["skipped"] == [] == record["ignored"]
  printed = capsys.readouterr().out
  assert "pneumoniamnist/28: prepared from" in printed and "skipped 0 file(s)" in printed


def test_data_dir_may_name_the_file_itself(raw, tmp_path):
  folder, arrays = raw
  sources, _ = data.load("pneumoniamnist", str(folder / "pneumoniamnist.npz"), str(tmp_path))
  np.testing.assert_array_equal(sources["test"][3]["image"][..., 0], arrays["test_images"][3])


def test_missing_file_names_the_path_and_the_url(tmp_path):
  empty = tmp_path / "data"
  empty.mkdir()
  with pytest.raises(FileNotFoundError) as error:
    data.load("pneumoniamnist", str(empty), str(tmp_path / "tfds"))
  message = str(error.value)
  assert str(empty / "pneumoniamnist.npz") in message
  assert "https://zenodo.org/records/10519652/files/pneumoniamnist.npz?download=1" in message


def test_no_data_dir_offline_says_how_to_get_it(tmp_path):
  with pytest.raises(FileNotFoundError, match="pneumoniamnist.npz"):
    data.load("pneumoniamnist", None, str(tmp_path / "tfds"))


def test_wrong_keys_are_named(tmp_path):
  make_npz(tmp_path / "data" / "pneumoniamnist.npz", drop=("val_labels",))
  with pytest.raises(ValueError) as error:
    data.load("pneumoniamnist", str(tmp_path / "data"), str(tmp_path / "tfds"))
  message = str(error.value)
  assert "val_labels" in message and str(tmp_path / "data" / "pneumoniamnist.npz") in message
  assert "zenodo.org" in message


def test_wrong_image_size_is_named(tmp_path):
  make_npz(tmp_path / "pneumoniamnist.npz", size=32)
  with pytest.raises(ValueError, match=r"train_images is uint8 \(12, 32, 32\).*\(N, 28, 28\)"):
    pneumoniamnist.read_npz(tmp_path / "pneumoniamnist.npz")


def test_not_an_npz_is_named(tmp_path):
  (tmp_path / "pneumoniamnist.npz").write_text("<html>rate limited</html>")
  with pytest.raises(ValueError, match="cannot be read as an .npz"):
    pneumoniamnist.read_npz(tmp_path / "pneumoniamnist.npz")


def test_larger_sizes_are_their_own_config(tmp_path):
  arrays = make_npz(tmp_path / "data" / "pneumoniamnist_64.npz", size=64)
  sources, info = data.load("pneumoniamnist", str(tmp_path / "data"), str(tmp_path / "tfds"), "64")
  assert info.full_name == "pneumoniamnist/64/2.0.0"
  np.testing.assert_array_equal(sources["val"][2]["image"][..., 0], arrays["val_images"][2])


def test_configs_are_the_official_files():
  by_name = {c.name: c for c in pneumoniamnist.CONFIGS}
  assert sorted(by_name, key=int) == ["28", "64", "128", "224"]
  assert by_name["28"].url == ("https://zenodo.org/records/10519652/files/pneumoniamnist.npz"
                               "?download=1")
  assert by_name["224"].file_name == "pneumoniamnist_224.npz"
  assert all(len(c.md5) == 32 for c in pneumoniamnist.CONFIGS)


def test_download_checks_the_md5(tmp_path, monkeypatch):
  payload = io.BytesIO()
  np.savez(payload, x=np.zeros(3))
  payload = payload.getvalue()
  monkeypatch.setattr(urllib.request, "urlopen", lambda url, timeout: io.BytesIO(payload))
  good = pneumoniamnist.PneumoniaMnistConfig(name="t", md5=hashlib.md5(payload).hexdigest())
  path = pneumoniamnist.download(good, tmp_path)
  assert path == tmp_path / "pneumoniamnist.npz" and path.read_bytes() == payload
  bad = pneumoniamnist.PneumoniaMnistConfig(name="t", file_name="other.npz", md5="0" * 32)
  with pytest.raises(ValueError, match="MD5"):
    pneumoniamnist.download(bad, tmp_path)
  assert not list(tmp_path.glob("other.npz*"))


def test_experiment_is_the_medmnist_recipe():
  from jaxray import config as config_lib
  from jaxray.data import pipeline
  from jaxray.train import optimizer
  config = config_lib.load("resnet18_pneumoniamnist")
  assert (config.dataset.name, config.dataset.config, config.input.image_size) == (
      "pneumoniamnist", "28", 28)
  assert (config.model.name, config.model.stem) == ("resnet18", "cifar")
  normalization = config.input.normalization
  assert normalization.mean == (0.5,) and normalization.std == (0.5,)
  # MedMNIST's network takes the 1-channel image: the stem is built for what the input feeds.
  assert config.input.channels == 1
  from flax import nnx
  from jaxray import models
  model = nnx.eval_shape(lambda: models.build_model(config.model, 2, 28, 0, config.input.channels))
  assert model.backbone.conv1.kernel.shape == (3, 3, 1, 64)
  assert (config.input.batch_size, config.num_epochs) == (128, 100)
  assert config.selection.metric == "val_roc_auc" and not config.track_test_per_epoch
  # As MedMNIST's loop: 36 batches of 128 and one of the remaining 100 images an epoch, from
  # nn.Conv2d's default init.
  assert not config.input.drop_remainder and config.model.conv_init == "torch_default"
  steps = pipeline.steps_per_epoch(4708, config.input.batch_size, config.input.drop_remainder)
  assert steps == 37
  schedule = optimizer.learning_rate_schedule(config.optimizer, steps_per_epoch=steps)
  for epoch, lr in ((0, 1e-3), (49, 1e-3), (50, 1e-4), (74, 1e-4), (75, 1e-5), (99, 1e-5)):
    assert float(schedule(epoch * steps)) == pytest.approx(lr), epoch
    assert float(schedule(epoch * steps + steps - 1)) == pytest.approx(lr), epoch
  assert (config.reference.accuracy, config.reference.roc_auc) == (0.854, 0.944)
