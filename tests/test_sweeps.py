"""Seeds, folds and grids: the jobs a sweep runs, the folds it cuts, and its executors."""

import json
import pathlib
import sys

import numpy as np
import pytest

from jaxray import compare, config as config_lib, trainer
from jaxray.data import splits

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "launch"))
import sweep  # noqa: E402


def _patients(num_patients=60, seed=0):
  """Patients with 1 to 4 images each, one label per patient, a third of them positive."""
  rng = np.random.default_rng(seed)
  ids, labels = [], []
  for p in range(num_patients):
    for _ in range(rng.integers(1, 5)):
      ids.append(f"patient{p:03d}")
      labels.append(int(p % 3 == 0))
  return ids, np.array(labels)


def test_folds_are_grouped_by_patient_stratified_and_cover_train():
  ids, labels = _patients()
  seen = []
  for fold in range(5):
    train, val = splits.fold_split(ids, labels, folds=5, fold=fold, seed=0)
    assert not {ids[i] for i in train} & {ids[i] for i in val}  # no patient on both sides
    assert len(train) + len(val) == len(ids)
    assert abs(labels[val].mean() - labels.mean()) < 0.12  # each fold's classes as the whole's
    seen.extend(val.tolist())
  assert sorted(seen) == list(range(len(ids)))  # every image validates exactly once
  again = splits.fold_split(ids, labels, folds=5, fold=2, seed=0)
  np.testing.assert_array_equal(again[1], splits.fold_split(ids, labels, 5, 2, seed=0)[1])
  assert not np.array_equal(again[1], splits.fold_split(ids, labels, 5, 2, seed=1)[1])


def test_a_run_of_one_fold_records_it(prepared_dir, tmp_path):
  config = config_lib.apply_overrides(config_lib.load("demo"), [
      "input.image_size=32", "input.batch_size=64", "input.eval_batch_size=128",
      f"dataset.prepared_dir={prepared_dir}", "evaluation.bootstrap_samples=10",
      "evaluation.tsne_max_train=16", "num_epochs=1", "dataset.cross_validation.folds=4",
      "dataset.cross_validation.fold=1"])
  results = trainer.train_and_evaluate(config, tmp_path)
  assert results["data"]["val"] == "fold 1 of 4 of train"
  assert results["data"]["val_images"] == 160 and results["data"]["train_images"] == 480
  assert results["test"]["num_examples"] == 256  # test untouched
  assert "Validation: fold 1 of 4 of train by patient" in (tmp_path / "report.md").read_text()


def test_the_sweep_is_the_product_of_seeds_folds_and_grid(tmp_path):
  args = sweep.argparse.Namespace(seeds="0,1", folds=2, fold_seed=3, workdir=str(tmp_path),
                                  experiment="demo", grid=["optimizer.learning_rate=1e-3,1e-4"])
  planned = sweep.jobs(args, ["--data_dir=/data"])
  assert len(planned) == 8
  workdir, command = planned[-1]
  assert workdir == tmp_path / "seed_1" / "fold_1" / "optimizer.learning_rate=1e-4"
  assert command[1:4] == ["-m", "jaxray.main", "--experiment=demo"]
  assert {"--set=seed=1", "--set=dataset.cross_validation.folds=2",
          "--set=dataset.cross_validation.fold=1", "--set=dataset.cross_validation.seed=3",
          "--set=optimizer.learning_rate=1e-4"} <= set(command)
  assert command[-1] == "--data_dir=/data"


def test_submitit_local_executor_runs_two_jobs(tmp_path):
  args = sweep.argparse.Namespace(executor="local", workdir=str(tmp_path), timeout_min=5)
  commands = [[sys.executable, "-c", f"open({str(tmp_path / f'job{k}')!r}, 'w').write('{k}')"]
              for k in range(2)]
  jobs = sweep.submit(args, commands)
  [job.result() for job in jobs]
  assert [(tmp_path / f"job{k}").read_text() for k in range(2)] == ["0", "1"]
  failing = sweep.submit(args, [[sys.executable, "-c", "raise SystemExit(3)"]])
  with pytest.raises(Exception, match="status 3|exit code 3|returned non-zero"):
    failing[0].result()


def _fold_run(k, labels, scores, names):
  return compare.Run(label=f"fold_{k}", path=pathlib.Path(f"fold_{k}"), results={},
                     class_names=["NORMAL", "PNEUMONIA"], split_hash=f"h{k}",
                     index=np.arange(len(labels)), labels=np.array(labels),
                     probabilities=np.stack([1 - np.array(scores), np.array(scores)], -1),
                     decisions=(np.array(scores) >= 0.5).astype(int),
                     patient_ids=np.array(names), decision_rule="argmax",
                     file_names=np.array(names))


def test_pooled_out_of_fold_figures_are_those_of_the_concatenated_predictions():
  from sklearn import metrics as skm
  a = _fold_run(0, [0, 1, 1, 0], [0.2, 0.7, 0.4, 0.3], ["a", "b", "c", "d"])
  b = _fold_run(1, [1, 0, 1, 0], [0.9, 0.6, 0.8, 0.1], ["e", "f", "g", "h"])
  pooled = compare.pool([a, b], samples=50)
  labels = [0, 1, 1, 0, 1, 0, 1, 0]
  scores = [0.2, 0.7, 0.4, 0.3, 0.9, 0.6, 0.8, 0.1]
  assert pooled["pooled"]["metrics"]["roc_auc"] == pytest.approx(
      skm.roc_auc_score(labels, scores))
  assert pooled["pooled"]["examples"] == 8 and len(pooled["runs"]) == 2
  assert "Pooled out-of-fold figures (8 examples of 2 runs)" in compare.pool_markdown(pooled)
  with pytest.raises(ValueError, match="in more than one run's set"):
    compare.pool([a, _fold_run(2, [0], [0.5], ["a"])], samples=10)
  json.dumps(compare._json_ready(pooled))
