"""`python -m jaxray.bench` as a user runs it: its figures, its JSON file, its errors.

Speed itself is never asserted (the figures depend on the machine); what is checked is that the
command measures what it says, writes every figure it prints, and says why a part is skipped.
"""

import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

REPO = pathlib.Path(__file__).resolve().parents[1]


def _bench(args, tmp_path, *, hide_torch=True, timeout=600, **environ):
  env = dict(os.environ, JAX_PLATFORMS="cpu", **environ)
  if hide_torch:  # as on a machine without PyTorch, whether or not this one has it
    fake = tmp_path / "no_torch" / "torch"
    fake.mkdir(parents=True, exist_ok=True)
    (fake / "__init__.py").write_text("raise ImportError('torch hidden by the test')\n")
    env["PYTHONPATH"] = os.pathsep.join([str(fake.parent), str(REPO)])
  return subprocess.run([sys.executable, "-m", "jaxray.bench", *args], cwd=REPO, env=env,
                        capture_output=True, text=True, timeout=timeout)


def _write_pneumoniamnist(folder: pathlib.Path, sizes) -> None:
  rng = np.random.default_rng(0)
  arrays = {}
  for split, n in sizes.items():
    arrays[f"{split}_images"] = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
    arrays[f"{split}_labels"] = (np.arange(n) % 3 != 0).astype(np.uint8)[:, None]
  folder.mkdir(parents=True, exist_ok=True)
  np.savez_compressed(folder / "pneumoniamnist.npz", **arrays)


def _write_kaggle_folder(root: pathlib.Path, per_class: int) -> pathlib.Path:
  """chest_xray/{train,val,test}/{NORMAL,PNEUMONIA}/ with `per_class` JPEGs in each train class."""
  rng = np.random.default_rng(0)
  for split in ("train", "val", "test"):
    for label, name in (("NORMAL", "IM-{:04d}-0001.jpeg"), ("PNEUMONIA", "person{}_virus_1.jpeg")):
      folder = root / "chest_xray" / split / label
      folder.mkdir(parents=True)
      for k in range(per_class if split == "train" else 1):
        pixels = rng.integers(0, 256, (300, 400), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / name.format(k + 100 * len(split)))
  return root


def test_pipeline_figure_and_json_without_torch(tmp_path):
  raw = _write_kaggle_folder(tmp_path / "raw", per_class=4)
  out = tmp_path / "bench.json"
  result = _bench(["--what=pipeline", f"--raw_dir={raw}", "--windows=2",
                   "--pipeline_images=16", f"--prepared_dir={tmp_path / 'tfds'}",
                   f"--json={out}"], tmp_path)
  assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
  assert "PyTorch reference skipped" in result.stdout
  figures = json.loads(out.read_text())["pipeline"]
  assert (figures["train_examples"], figures["workers"]) == (8, 2)
  for name in ("jaxray", "jaxray_host_only"):  # with and without the on-device augmentation
    assert len(figures[name]["windows"]) == 2
    assert figures[name]["min"] <= figures[name]["median"] <= figures[name]["max"]
  assert "torch" not in figures and "ratio" not in figures
  assert f"jaxray {figures['jaxray']['median']:8.1f} img/s" in result.stdout
  assert figures["runtime"]["resolved"]["materialize"] is True  # the augmentation's kernels


@pytest.mark.skipif(not os.environ.get("JAXRAY_SLOW_TESTS"),
                    reason="four step compilations, about 2 minutes on 2 cores: JAXRAY_SLOW_TESTS=1")
def test_train_and_epoch_figures_and_json_without_torch(tmp_path):
  # 150 training images at the recipe's batch of 128: one full batch and the remaining 22.
  _write_pneumoniamnist(tmp_path / "data", {"train": 150, "val": 20, "test": 20})
  out = tmp_path / "bench.json"
  result = _bench(["--what=train,epoch", "--train_sizes=32x4:cifar", "--windows=2",
                   "--steps_per_window=1", "--warmup=0", "--noother_conv_grad",
                   "--epoch_experiment=resnet18_pneumoniamnist",
                   f"--data_dir={tmp_path / 'data'}", f"--prepared_dir={tmp_path / 'tfds'}",
                   f"--json={out}"], tmp_path)
  assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
  assert "PyTorch reference skipped" in result.stdout
  assert "Platform: cpu" in result.stdout
  figures = json.loads(out.read_text())
  assert figures["platform"]["backend"] == "cpu" and "torch" not in figures["platform"]
  train = figures["train"]["32x4:cifar"]
  assert (train["image_size"], train["batch_size"], train["stem"]) == (32, 4, "cifar")
  assert len(train["jaxray"]["windows"]) == 2
  assert train["jaxray"]["min"] <= train["jaxray"]["median"] <= train["jaxray"]["max"]
  assert "torch" not in train and "ratio" not in train
  # The same step with Winograd convolutions off, measured beside it (a CPU run's default).
  without = train["jaxray_without_winograd"]
  assert len(without["windows"]) == 2 and without["min"] <= without["median"] <= without["max"]
  assert train["speedup_vs_without_winograd"] == pytest.approx(
      train["jaxray"]["median"] / without["median"])
  assert train["ratio_without_winograd"] is None  # no torch, no ratio
  assert f"(no Winograd) jaxray {without['median']:8.1f} img/s" in result.stdout
  epoch = figures["epoch"]
  assert (epoch["train_examples"], epoch["val_examples"], epoch["batch_size"]) == (150, 20, 128)
  assert epoch["jaxray"]["train_images"] == 150  # the partial last batch is trained and counted
  assert epoch["jaxray"]["epoch_seconds"]["median"] > 0
  assert "ratio" not in epoch
  assert f"{train['jaxray']['median']:8.1f} img/s" in result.stdout  # printed as written
  # The default figure's runtime, once per figure set: what "auto" resolved to here.
  assert figures["overrides"] == []
  for record in (figures["train"]["runtime"], epoch["runtime"]):
    assert record["requested"]["winograd"] == "auto" and record["resolved"]["winograd"] is True
  assert result.stdout.count("  runtime: winograd on") == 2


def test_set_overrides_are_measured_and_recorded(tmp_path):
  out = tmp_path / "bench.json"
  result = _bench(["--what=train", "--train_sizes=32x4:cifar", "--windows=1",
                   "--steps_per_window=1", "--warmup=0", "--noother_conv_grad",
                   "--set", "runtime.winograd=False", f"--json={out}"], tmp_path)
  assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
  figures = json.loads(out.read_text())
  assert figures["overrides"] == ["runtime.winograd=False"]
  record = figures["train"]["runtime"]
  assert record["requested"]["winograd"] is False and record["resolved"]["winograd"] is False
  assert "runtime: winograd off" in result.stdout
  # The default figure is already without Winograd: no second figure without it.
  assert "jaxray_without_winograd" not in figures["train"]["32x4:cifar"]


def test_importing_the_bench_imports_neither_torch_nor_jax():
  # Not hidden: on a machine with PyTorch, it must still wait until a figure runs; and the
  # command sets up the process (jaxray.runtime) before JAX starts.
  code = "import sys, jaxray.bench; print('torch' in sys.modules, 'jax' in sys.modules)"
  result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                          text=True, timeout=120)
  assert result.returncode == 0, result.stderr[-3000:]
  assert result.stdout.split() == ["False", "False"]


def test_reference_process_environment_drops_jaxrays_process_settings(monkeypatch):
  from jaxray import runtime
  from jaxray.bench import Options, worker
  jaxray_tunables = "glibc.malloc.tcache_count=7:glibc.malloc.arena_max=1"
  monkeypatch.setenv("XLA_FLAGS", "--user_option=1 --xla_cpu_experimental_ynn_fusion_type=reduce")
  monkeypatch.setenv(worker.USER_XLA_FLAGS, "--user_option=1")  # as keep_user_settings saved it
  monkeypatch.setenv("GLIBC_TUNABLES", jaxray_tunables)
  monkeypatch.setenv(runtime.USER_TUNABLES, "glibc.malloc.tcache_count=7")
  monkeypatch.setenv("JAX_PLATFORMS", "cuda")
  env = worker.environment(Options())
  assert env["XLA_FLAGS"] == "--user_option=1"
  assert env["GLIBC_TUNABLES"] == "glibc.malloc.tcache_count=7"
  assert env["JAX_PLATFORMS"] == "cpu" and worker.USER_XLA_FLAGS not in env
  env = worker.environment(Options(reference_malloc="jaxray"))
  assert env["GLIBC_TUNABLES"] == jaxray_tunables and env["XLA_FLAGS"] == "--user_option=1"
  monkeypatch.setenv(worker.USER_XLA_FLAGS, "")  # the user had no XLA_FLAGS
  assert "XLA_FLAGS" not in worker.environment(Options())


@pytest.mark.parametrize("args, message", [
    (["--what=speed"], "--what: unknown 'speed'"),
    (["--what=recipe", "--epoch_experiment=resnet18_pneumoniamnist"],
     "pip install torch torchvision"),
    (["--what=recipe", "--epoch_experiment=resnet18_scratch", "--set", "model.stem=cifar"],
     "--epoch_experiment=resnet18_scratch (model.stem='cifar')"),
    (["--set", "runtime.winogard=False"], "unknown field 'runtime.winogard'"),
    (["--set", "runtime.winograd=maybe"], "must be 'auto', True or False"),
])
def test_bad_requests_are_clear_errors(tmp_path, args, message):
  result = _bench(args, tmp_path, timeout=120)
  assert result.returncode != 0
  assert message in result.stdout + result.stderr


@pytest.mark.parametrize("fields, message", [
    (dict(epoch_experiment="demo"), "demo (dataset.name='synthetic')"),
    (dict(epoch_experiment="resnet18_pretrained"),
     "model.pretrained.source='torchvision_resnet18'"),
    (dict(epoch_experiment="resnet18_scratch_aug"),
     "--data_dir=DIR with DIR/chest_xray/{train,val,test}/"),
    (dict(), "no --epoch_experiment"),
])
def test_recipes_without_a_pytorch_twin_or_data_are_refused_before_any_work(fields, message):
  """The checks --what=recipe makes before it starts anything (one of them through the command
  line above, the rest here, in this process)."""
  from absl import app
  from jaxray.bench import Options, worker
  with pytest.raises(app.UsageError) as error:
    worker._check_recipe(Options(what=("recipe",), **fields))
  assert message in str(error.value)


def test_torch_reference_runs_in_its_own_process_with_the_users_malloc_settings(tmp_path):
  pytest.importorskip("torchvision")
  _write_pneumoniamnist(tmp_path / "data", {"train": 150, "val": 20, "test": 20})
  raw = _write_kaggle_folder(tmp_path / "raw", per_class=4)
  out = tmp_path / "bench.json"
  env_tunables = "glibc.malloc.tcache_count=7"  # the user's own, kept for the reference
  result = _bench(["--what=train,pipeline,epoch,recipe", "--train_sizes=32x4:cifar",
                   f"--raw_dir={raw}", "--pipeline_images=16", "--windows=2",
                   "--steps_per_window=1", "--warmup=0", "--noother_conv_grad",
                   "--nocompare_winograd", "--epoch_experiment=resnet18_pneumoniamnist",
                   "--recipe_epochs=1", f"--data_dir={tmp_path / 'data'}",
                   f"--prepared_dir={tmp_path / 'tfds'}", f"--json={out}"], tmp_path,
                  hide_torch=False, GLIBC_TUNABLES=env_tunables)
  assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
  figures = json.loads(out.read_text())
  assert f"its GLIBC_TUNABLES: {env_tunables}" in result.stdout
  train = figures["train"]["32x4:cifar"]
  assert figures["train"]["torch_process"] == {"glibc_tunables": env_tunables}
  assert len(train["torch"]["windows"]) == 2
  assert train["ratio"] == pytest.approx(train["jaxray"]["median"] / train["torch"]["median"])
  assert f"ratio {train['ratio']:.2f}x" in result.stdout
  pipeline = figures["pipeline"]
  assert pipeline["torch_process"] == {"glibc_tunables": env_tunables}
  assert len(pipeline["torch"]["windows"]) == 2
  # Its DataLoader workers fork from the reference's own process, where no JAX threads run.
  assert "os.fork() was called" not in result.stderr
  assert pipeline["ratio"] == pytest.approx(pipeline["jaxray"]["median"]
                                            / pipeline["torch"]["median"])
  epoch = figures["epoch"]
  assert epoch["torch_process"] == {"glibc_tunables": env_tunables}
  assert epoch["torch"]["train_images"] == 150  # MedMNIST's loop keeps the partial batch too
  assert epoch["ratio"] == pytest.approx(epoch["torch"]["epoch_seconds"]["median"]
                                         / epoch["jaxray"]["epoch_seconds"]["median"])
  recipe = figures["recipe"]
  assert recipe["torch_process"] == {"glibc_tunables": env_tunables}
  assert (recipe["epochs"], recipe["selected_epoch"], len(recipe["history"])) == (1, 1, 1)
  assert recipe["selected"]["metrics"]["accuracy"] == pytest.approx(
      recipe["last"]["metrics"]["accuracy"])  # one epoch: the selected model is the last
  assert "  epoch   1: train loss" in result.stdout  # the reference's progress, passed on


def test_report_000_pytorch_recipe_runs_report_000s_experiments_only():
  from jaxray.bench import reference_kermany
  names = set(reference_kermany.experiments())
  assert {"resnet18_scratch", "resnet18_scratch_aug", "resnet18_scratch_15ep"} <= names
  # Pretrained weights, another dataset or task, or training the report did not do.
  assert not names & {"resnet18_pretrained", "demo", "resnet18_pneumoniamnist",
                      "vgg16_covid_binary", "mobilenet_covid_4class", "resnet18_3class"}


def test_report_000_recipe_in_pytorch_keeps_the_epoch_jaxrays_rule_selects(tmp_path):
  pytest.importorskip("torchvision")
  raw = _write_kaggle_folder(tmp_path / "raw", per_class=5)
  out = tmp_path / "bench.json"
  result = _bench(["--what=recipe", "--epoch_experiment=resnet18_scratch", "--recipe_epochs=2",
                   f"--data_dir={raw}", "--set", "input.image_size=32", "--set",
                   "input.batch_size=4", "--set", "evaluation.bootstrap_samples=50",
                   f"--json={out}"], tmp_path, hide_torch=False)
  assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
  recipe = json.loads(out.read_text())["recipe"]
  assert (recipe["experiment"], recipe["epochs"], len(recipe["history"])) == (
      "resnet18_scratch", 2, 2)
  assert {k: recipe["data"][k] for k in ("train_images", "val_images", "test_images")} == {
      "train_images": 10, "val_images": 2, "test_images": 2}
  assert recipe["config"]["input"]["image_size"] == 32  # --set reached the PyTorch side
  # Batches of 4 over 10 images: 4, 4 and the remaining 2, as drop_remainder=False says.
  assert [h["train_images"] for h in recipe["history"]] == [10, 10]
  # jaxray's rule, by hand: the best val accuracy, the earliest epoch on ties; never test.
  assert recipe["selection"] == {"metric": "val_accuracy", "mode": "max"}
  best = max(h["val_accuracy"] for h in recipe["history"])
  expected = min(h["epoch"] for h in recipe["history"] if h["val_accuracy"] == best)
  assert recipe["selected_epoch"] == expected
  # The figures are those of the kept epoch's model and of the last one.
  for key, epoch in (("selected", expected), ("last", 2)):
    figures = recipe[key]
    assert figures["num_examples"] == 2 and np.sum(figures["confusion_matrix"]) == 2
    assert figures["metrics"]["accuracy"] == pytest.approx(
        recipe["history"][epoch - 1]["test_accuracy"])
    assert figures["ci95"]["accuracy"][0] <= figures["metrics"]["accuracy"]
  assert recipe["torch_process"]["glibc_tunables"] is not None
  assert "  epoch  train loss  train acc  val loss  val acc  val AUC  test acc" in result.stdout
  assert (f"test, selected (epoch {expected}, max val_accuracy on val, earliest on ties)"
          in result.stdout)


def test_report_000_pytorch_recipe_validates_on_the_patients_jaxray_carves(tmp_path):
  torch = pytest.importorskip("torch")
  torchvision = pytest.importorskip("torchvision")
  from jaxray import config as config_lib
  from jaxray.bench import reference_kermany
  raw = _write_kaggle_folder(tmp_path / "raw", per_class=5)
  config = config_lib.apply_overrides(config_lib.load("resnet18_scratch_aug"), [
      "dataset.val_from_train.fraction=0.4"])
  splits = reference_kermany._splits(config, str(raw / "chest_xray"), torch, torchvision)
  files = {role: [os.path.basename(splits[role].dataset.samples[i][0])
                  for i in splits[role].indices] for role in ("train", "val")}
  # 10 one-image patients, 5 a class: 40% of them validate, 2 of each class, none trains.
  assert (len(files["train"]), len(files["val"])) == (6, 4)
  assert sum(name.startswith("person") for name in files["val"]) == 2
  assert not set(files["train"]) & set(files["val"])
  assert len(splits["test"]) == 2
  # Validation reads train's images without the training split's augmentation.
  def kinds(split):
    return [type(t).__name__ for t in split.dataset.transform.transforms]
  assert "RandomRotation" in kinds(splits["train"]) and "RandomRotation" not in kinds(splits["val"])
