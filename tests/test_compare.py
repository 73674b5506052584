"""python -m jaxray.compare: finished runs compared on their saved test predictions."""

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from sklearn import metrics as skm
from statsmodels.stats import contingency_tables, multitest

from jaxray import compare
from jaxray.evaluate import paired

_CLASSES = ["NORMAL", "PNEUMONIA"]
_HASH = "0123456789abcdef"
_OTHER_HASH = "fedcba9876543210"
_PATIENTS = 30  # of three images each


def _labels_and_patients():
  rng = np.random.default_rng(0)
  patient_labels = rng.integers(0, 2, _PATIENTS)
  return np.repeat(patient_labels, 3), np.repeat([f"person{p}" for p in range(_PATIENTS)], 3)


def _binary_probabilities(labels: np.ndarray, seed: int, noise: float) -> np.ndarray:
  rng = np.random.default_rng(seed)
  positive = 1 / (1 + np.exp(-(2.0 * (labels - 0.5) * 2 + noise * rng.normal(size=len(labels)))))
  return np.stack([1 - positive, positive], -1)


def _write_run(folder, experiment: str, labels, probabilities, *, patients=None, threshold=None,
               split_hash: str = _HASH, class_names=_CLASSES, shuffle: bool = False):
  folder.mkdir(parents=True)
  n = len(labels)
  frame = pd.DataFrame({
      "index": np.arange(n), "file_name": [f"img{i:03d}.jpeg" for i in range(n)],
      "patient_id": patients if patients is not None else [""] * n, "label": labels,
      "label_name": [class_names[k] for k in labels],
      **{f"prob_{name}": probabilities[:, k] for k, name in enumerate(class_names)},
      "pred_argmax": probabilities.argmax(-1)})
  if threshold is not None:
    frame["pred_threshold"] = (probabilities[:, 1] >= threshold).astype(np.int64)
  frame["split_hash"] = split_hash
  if shuffle:
    frame = frame.sample(frac=1.0, random_state=0)
  frame.to_csv(folder / "predictions_test.csv", index=False)
  results = {
      "schema_version": 2, "experiment": experiment, "class_names": list(class_names),
      "selected_epoch": 4,
      "threshold": {"value": threshold, "rule": "youden" if threshold is not None else "argmax"},
      "test": {"metrics": {}, "ci95": {}},
      "predictions": {"test": {"file": "predictions_test.csv", "split_hash": split_hash,
                               "rows": n}}}
  (folder / "results.json").write_text(json.dumps(results))
  return folder


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
  """alpha (thresholded, rows shuffled), beta and gamma (two seeds of one experiment), and
  other_split (a run of another test set)."""
  root = tmp_path_factory.mktemp("runs")
  labels, patients = _labels_and_patients()
  return {
      "alpha": _write_run(root / "alpha", "resnet", labels, _binary_probabilities(labels, 1, 1.5),
                          patients=patients, threshold=0.4, shuffle=True),
      "beta": _write_run(root / "beta", "densenet", labels, _binary_probabilities(labels, 2, 3.0),
                         patients=patients),
      "gamma": _write_run(root / "gamma", "densenet", labels,
                          _binary_probabilities(labels, 3, 3.0), patients=patients),
      "other_split": _write_run(root / "other_split", "resnet", labels,
                                _binary_probabilities(labels, 4, 2.0), patients=patients,
                                split_hash=_OTHER_HASH),
  }


def _by_hand(folder):
  """(labels, decisions, positive-class probability) read straight from the CSV, by index."""
  frame = pd.read_csv(folder / "predictions_test.csv").sort_values("index")
  column = "pred_threshold" if "pred_threshold" in frame else "pred_argmax"
  return (frame["label"].to_numpy(), frame[column].to_numpy(),
          frame["prob_PNEUMONIA"].to_numpy())


def _mcnemar_by_hand(folder_a, folder_b) -> float:
  labels, decisions_a, _ = _by_hand(folder_a)
  _, decisions_b, _ = _by_hand(folder_b)
  right_a, right_b = decisions_a == labels, decisions_b == labels
  table = [[np.sum(right_a & right_b), np.sum(right_a & ~right_b)],
           [np.sum(~right_a & right_b), np.sum(~right_a & ~right_b)]]
  return contingency_tables.mcnemar(table, exact=True).pvalue


def _accuracy_by_hand(folder) -> float:
  labels, decisions, _ = _by_hand(folder)
  return float(np.mean(labels == decisions))


def _compare(runs, *names, **kwargs):
  return compare.compare_runs([compare.load_run(runs[n], n) for n in names], samples=200,
                              **kwargs)


def test_a_pair_matches_the_figures_computed_from_the_csvs(runs):
  comparison = _compare(runs, "alpha", "beta")
  (pair,) = comparison["pairs"]
  labels, decisions_a, scores_a = _by_hand(runs["alpha"])
  _, decisions_b, scores_b = _by_hand(runs["beta"])
  assert pair["differences"]["accuracy"]["difference"] == pytest.approx(
      _accuracy_by_hand(runs["alpha"]) - _accuracy_by_hand(runs["beta"]), abs=1e-12)
  assert pair["differences"]["sensitivity"]["difference"] == pytest.approx(
      skm.recall_score(labels, decisions_a) - skm.recall_score(labels, decisions_b), abs=1e-12)
  assert pair["differences"]["roc_auc"]["difference"] == pytest.approx(
      skm.roc_auc_score(labels, scores_a) - skm.roc_auc_score(labels, scores_b), abs=1e-12)
  assert pair["mcnemar"]["p_value"] == pytest.approx(
      _mcnemar_by_hand(runs["alpha"], runs["beta"]), abs=1e-12)
  assert pair["delong"]["p_value"] == pytest.approx(
      paired.delong(labels, scores_a, scores_b)["p_value"], abs=1e-12)
  low, high = pair["differences"]["accuracy"]["ci95"]
  assert low <= pair["differences"]["accuracy"]["difference"] <= high
  assert comparison["resampling"] == "patients" and comparison["num_patients"] == _PATIENTS
  assert "p_holm" not in pair["mcnemar"] and comparison["groups"] == []
  alpha = next(entry for entry in comparison["runs"] if entry["label"] == "alpha")
  assert alpha["metrics"]["accuracy"] == pytest.approx(_accuracy_by_hand(runs["alpha"]))
  assert alpha["decision_rule"] == "youden threshold 0.4"
  markdown = compare.to_markdown(comparison)
  assert "alpha" in markdown and "beta" in markdown and "Holm" not in markdown


def test_argmax_decisions_replace_a_runs_val_threshold_when_asked(runs, tmp_path):
  """--decision=argmax: alpha's decisions become its CSV's pred_argmax (threshold 0.4 and 0.5
  disagree on some images), so its accuracy is the argmax one; the ROC AUC is unchanged."""
  frame = pd.read_csv(runs["alpha"] / "predictions_test.csv").sort_values("index")
  labels, argmax = frame["label"].to_numpy(), frame["pred_argmax"].to_numpy()
  assert np.any(argmax != frame["pred_threshold"].to_numpy())
  own = _compare(runs, "alpha", "beta")
  both = compare.compare_runs([compare.load_run(runs["alpha"], "alpha", argmax=True),
                               compare.load_run(runs["beta"], "beta")], samples=200)
  alpha = next(entry for entry in both["runs"] if entry["label"] == "alpha")
  assert alpha["decision_rule"] == "argmax"
  assert alpha["metrics"]["accuracy"] == pytest.approx(np.mean(argmax == labels), abs=1e-12)
  assert alpha["metrics"]["accuracy"] != pytest.approx(_accuracy_by_hand(runs["alpha"]))
  assert both["pairs"][0]["differences"]["roc_auc"]["difference"] == pytest.approx(
      own["pairs"][0]["differences"]["roc_auc"]["difference"], abs=1e-12)
  assert "Decisions: argmax for every run." in compare.to_markdown(both)
  assert "Decisions: each run's own rule." in compare.to_markdown(own)
  done = _cli(runs["alpha"], runs["beta"], "--decision=argmax", "--bootstrap_samples=20")
  assert done.returncode == 0, done.stderr[-2000:]
  assert "| alpha | resnet | " in done.stdout and "| argmax |" in done.stdout
  assert "threshold" not in done.stdout.split("## Pairs")[0].split("Decisions:")[1]


def _cli(*args):
  return subprocess.run([sys.executable, "-m", "jaxray.compare", *map(str, args)],
                        capture_output=True, text=True, timeout=300)


def test_the_command_writes_markdown_json_and_a_forest_plot(runs, tmp_path):
  out = tmp_path / "comparison"
  done = _cli(runs["alpha"], runs["beta"], f"--out={out}", "--bootstrap_samples=200")
  assert done.returncode == 0, done.stderr
  assert "alpha" in done.stdout and "beta" in done.stdout
  markdown = (out / "comparison.md").read_text()
  assert done.stdout.startswith(markdown)
  numbers = json.loads((out / "comparison.json").read_text())
  (pair,) = numbers["pairs"]
  assert (pair["a"], pair["b"]) == ("alpha", "beta")
  assert pair["differences"]["accuracy"]["difference"] == pytest.approx(
      _accuracy_by_hand(runs["alpha"]) - _accuracy_by_hand(runs["beta"]), abs=1e-12)
  assert pair["mcnemar"]["p_value"] == pytest.approx(
      _mcnemar_by_hand(runs["alpha"], runs["beta"]), abs=1e-12)
  assert (out / "forest.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_runs_of_different_test_sets_are_refused_naming_both(runs):
  done = _cli(runs["alpha"], runs["other_split"], "--bootstrap_samples=10")
  assert done.returncode == 2
  for text in ("alpha", "other_split", _HASH, _OTHER_HASH):
    assert text in done.stderr
  assert "Traceback" not in done.stderr


def test_a_run_without_results_or_predictions_is_refused(runs, tmp_path):
  unfinished = tmp_path / "unfinished"
  unfinished.mkdir()
  done = _cli(runs["alpha"], unfinished)
  assert done.returncode == 2 and "results.json" in done.stderr and "finished" in done.stderr
  assert "Traceback" not in done.stderr
  (unfinished / "results.json").write_text((runs["alpha"] / "results.json").read_text())
  with pytest.raises(FileNotFoundError, match="predictions_test.csv does not exist"):
    compare.load_run(unfinished)
  older = json.loads((runs["alpha"] / "results.json").read_text())
  del older["schema_version"], older["predictions"]
  (unfinished / "results.json").write_text(json.dumps(older))
  with pytest.raises(ValueError, match="saved no per-example predictions.*again"):
    compare.load_run(unfinished)


def test_three_runs_get_holm_p_values_and_the_seed_spread(runs):
  comparison = _compare(runs, "alpha", "beta", "gamma")
  assert [(p["a"], p["b"]) for p in comparison["pairs"]] == [
      ("alpha", "beta"), ("alpha", "gamma"), ("beta", "gamma")]
  for test in ("mcnemar", "delong"):
    p_values = [pair[test]["p_value"] for pair in comparison["pairs"]]
    expected = multitest.multipletests(p_values, method="holm")[1]
    np.testing.assert_allclose([pair[test]["p_holm"] for pair in comparison["pairs"]], expected,
                               atol=1e-12)
  markdown = compare.to_markdown(comparison)
  assert "McNemar p (Holm)" in markdown and "DeLong p (Holm)" in markdown
  (group,) = comparison["groups"]
  assert group["experiment"] == "densenet" and group["runs"] == ["beta", "gamma"]
  accuracies = [_accuracy_by_hand(runs["beta"]), _accuracy_by_hand(runs["gamma"])]
  assert group["metrics"]["accuracy"]["mean"] == pytest.approx(np.mean(accuracies), abs=1e-12)
  assert group["metrics"]["accuracy"]["sd"] == pytest.approx(np.std(accuracies, ddof=1),
                                                             abs=1e-12)
  assert group["metrics"]["accuracy"]["min"] == min(accuracies)
  assert "Groups of runs" in markdown


def test_runs_are_sorted_by_the_chosen_metric(runs):
  accuracies = {n: _accuracy_by_hand(runs[n]) for n in ("alpha", "beta", "gamma")}
  comparison = _compare(runs, "gamma", "beta", "alpha")
  assert [entry["label"] for entry in comparison["runs"]] == sorted(
      accuracies, key=lambda n: -accuracies[n])
  by_auc = _compare(runs, "gamma", "beta", "alpha", sort_by="roc_auc")
  aucs = [entry["metrics"]["roc_auc"] for entry in by_auc["runs"]]
  assert aucs == sorted(aucs, reverse=True)
  with pytest.raises(ValueError, match="macro_f1"):
    _compare(runs, "alpha", "beta", sort_by="macro_f1")


def test_a_run_missing_examples_is_refused(runs, tmp_path):
  labels, patients = _labels_and_patients()
  short = _write_run(tmp_path / "short", "resnet", labels[:-3],
                     _binary_probabilities(labels[:-3], 5, 2.0), patients=patients[:-3])
  with pytest.raises(ValueError, match="same example indices"):
    compare.compare_runs([compare.load_run(runs["alpha"]), compare.load_run(short)], samples=10)


def test_multi_class_runs_compare_accuracy_and_macro_f1_without_delong(tmp_path):
  rng = np.random.default_rng(0)
  classes = ["NORMAL", "BACTERIA", "VIRUS"]
  labels = rng.integers(0, 3, 120)
  folders = []
  for name, seed in (("first", 1), ("second", 2)):
    logits = np.eye(3)[labels] * 2 + np.random.default_rng(seed).normal(size=(120, 3))
    probabilities = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    folders.append(_write_run(tmp_path / name, "three", labels, probabilities,
                              class_names=classes))
  comparison = compare.compare_runs([compare.load_run(f) for f in folders], samples=100)
  (pair,) = comparison["pairs"]
  assert "delong" not in pair and set(pair["differences"]) == {"accuracy", "macro_f1"}
  decisions = [pd.read_csv(f / "predictions_test.csv")["pred_argmax"].to_numpy()
               for f in folders]
  assert pair["differences"]["macro_f1"]["difference"] == pytest.approx(
      skm.f1_score(labels, decisions[0], average="macro")
      - skm.f1_score(labels, decisions[1], average="macro"), abs=1e-12)
  assert comparison["resampling"] == "images"
  markdown = compare.to_markdown(comparison)
  assert "DeLong" in markdown and "not run" in markdown


def test_run_labels_tell_folders_of_one_name_apart(tmp_path):
  paths = [tmp_path / "x" / "run", tmp_path / "y" / "run", tmp_path / "z" / "other"]
  assert compare.run_labels(paths) == ["x/run", "y/run", "other"]


def test_summarize_groups_leaves_single_runs_out():
  entries = [{"label": "a", "experiment": "e", "metrics": {"accuracy": 0.8}},
             {"label": "b", "experiment": "e", "metrics": {"accuracy": 0.9}},
             {"label": "c", "experiment": "e", "metrics": {"accuracy": 0.7}},
             {"label": "d", "experiment": "f", "metrics": {"accuracy": 0.5}}]
  (group,) = compare.summarize_groups(entries)
  assert group["runs"] == ["a", "b", "c"]
  figures = group["metrics"]["accuracy"]
  assert figures["mean"] == pytest.approx(0.8) and figures["sd"] == pytest.approx(0.1)
  assert (figures["min"], figures["max"]) == (0.7, 0.9)
