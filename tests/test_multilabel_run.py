"""A multi-label run end to end: a label table the test writes, trained, evaluated, compared
and predicted with, as a user would on their own CSV."""

import csv
import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from jaxray import config as config_lib, trainer
from jaxray import compare

FINDINGS = ("Effusion", "Mass", "Hernia")


@pytest.fixture(scope="module")
def table(tmp_path_factory):
  """48 images of 24 patients: Effusion brightens the left half, Mass a central disc; Hernia is
  never present (no AUROC anywhere), and a few labels are blank (unknown)."""
  root = tmp_path_factory.mktemp("table")
  (root / "images").mkdir()
  rng = np.random.default_rng(0)
  rows = []
  for i in range(48):
    effusion, mass = int(rng.random() < 0.5), int(rng.random() < 0.4)
    pixels = rng.normal(90, 20, (40, 40))
    pixels[:, :20] += 80 * effusion
    yy, xx = np.mgrid[:40, :40]
    pixels[(yy - 20) ** 2 + (xx - 20) ** 2 < 64] += 90 * mass
    name = f"images/img{i:03d}.png"
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(root / name)
    split = "test" if i % 4 == 0 else "val" if i % 4 == 1 else "train"
    rows.append({"path": name, "patient": f"p{i // 2 if split == 'train' else 100 + i}",
                 "split": split, "Effusion": effusion, "Mass": "" if i % 7 == 3 else mass,
                 "Hernia": 0})
  with open(root / "labels.csv", "w", newline="") as file:
    writer = csv.DictWriter(file, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
  return root


def _config(table, prepared_dir, *overrides):
  return config_lib.apply_overrides(config_lib.load("resnet18_nih14"), [
      "dataset.name=table", f"dataset.prepared_dir={prepared_dir}",
      f"dataset.table.csv={table / 'labels.csv'}", f"dataset.table.label_columns={FINDINGS}",
      "dataset.table.patient_column=patient", "dataset.table.split_column=split",
      "input.image_size=32", "input.batch_size=8", "input.eval_batch_size=16",
      "evaluation.bootstrap_samples=50", "evaluation.failure_cases=4", "num_epochs=2",
      *overrides])


@pytest.fixture(scope="module")
def finished(table, tmp_path_factory):
  prepared = tmp_path_factory.mktemp("prepared")
  workdir = tmp_path_factory.mktemp("runs") / "nih_like"
  results = trainer.train_and_evaluate(_config(table, prepared), workdir, str(table))
  return workdir, results, prepared


def test_multilabel_run_reports_each_finding(finished):
  workdir, results, _ = finished
  assert results["class_names"] == list(FINDINGS)
  findings = results["test"]["findings"]
  assert findings["Hernia"]["roc_auc"] is None
  assert findings["Hernia"]["undefined"] == "no known positive example"
  assert findings["Effusion"]["roc_auc"] is not None and "ci95" in findings["Effusion"]
  assert results["test"]["metrics"]["findings_with_roc_auc"] == 2
  assert results["test"]["metrics"]["macro_roc_auc"] == pytest.approx(
      np.mean([findings[n]["roc_auc"] for n in ("Effusion", "Mass")]))
  assert set(results["thresholds"]) == set(FINDINGS)
  history = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
  assert results["selected_epoch"] == max(history, key=lambda h: h["val_roc_auc"])["epoch"]
  report = (workdir / "report.md").read_text()
  assert "| Hernia |" in report and "undefined (no known positive example)" in report
  for figure in ("roc.png", "gradcam_findings.png", "curves.png"):
    assert (workdir / figure).stat().st_size > 1000


def test_multilabel_predictions_recompute_results(finished):
  import pandas as pd
  from sklearn import metrics as skm
  workdir, results, _ = finished
  test = pd.read_csv(workdir / "predictions_test.csv")
  assert test["label_Mass"].isna().sum() == results["test"]["findings"]["Mass"]["unknown"] > 0
  known = test["label_Mass"].notna()
  assert skm.roc_auc_score(test.loc[known, "label_Mass"], test.loc[known, "prob_Mass"]) == (
      pytest.approx(results["test"]["findings"]["Mass"]["roc_auc"], abs=1e-12))
  threshold = results["thresholds"]["Effusion"]["value"]
  assert (test["pred_Effusion"] == (test["prob_Effusion"] >= threshold)).all()


def test_compare_gives_per_finding_delong(finished, tmp_path):
  """Two runs on one test set: the run, and a copy whose Effusion scores are noisier (a run
  ranking worse), compared from their saved predictions as compare reads any run."""
  import pandas as pd
  workdir, _, _ = finished
  other = tmp_path / "noisier"
  shutil.copytree(workdir, other, ignore=shutil.ignore_patterns("checkpoints", "*.png"))
  test = pd.read_csv(other / "predictions_test.csv", dtype={"split_hash": str})
  noise = np.random.default_rng(0).normal(0, 0.3, len(test))
  test["prob_Effusion"] = np.clip(test["prob_Effusion"] + noise, 0, 1)
  test.to_csv(other / "predictions_test.csv", index=False)
  comparison = compare.compare_runs([compare.load_run(workdir), compare.load_run(other)],
                                    samples=50)
  assert comparison["task"] == "multi-label" and comparison["sort_by"] == "macro_roc_auc"
  tests = comparison["pairs"][0]["findings"]
  assert tests["Hernia"]["p_value"] is None
  assert 0 <= tests["Effusion"]["p_value"] <= 1 and "p_holm" in tests["Effusion"]
  assert tests["Mass"]["difference"] == 0 and tests["Mass"]["p_value"] == 1
  assert "Per finding" in compare.to_markdown(comparison)
  # Asked for argmax, a multi-label run decides at a sigmoid's own 0.5 instead of its val
  # thresholds.
  at_half = compare.load_run(workdir, argmax=True)
  assert at_half.decision_rule == "0.5 per finding"
  np.testing.assert_array_equal(at_half.decisions, at_half.probabilities >= 0.5)
  both = compare.compare_runs([at_half, compare.load_run(other, argmax=True)], samples=50)
  assert "Decisions: 0.5 per finding for every run." in compare.to_markdown(both)


def test_predict_prints_every_finding(finished, table, tmp_path):
  workdir, results, _ = finished
  out = tmp_path / "predicted.csv"
  done = subprocess.run([sys.executable, "-m", "jaxray.predict", f"--workdir={workdir}",
                         f"--output={out}", str(table / "images" / "img000.png")],
                        capture_output=True, text=True, check=True)
  row = next(csv.DictReader(open(out)))
  assert {f"p_{n}" for n in FINDINGS} <= set(row)
  above = [n for n in FINDINGS if float(row[f"p_{n}"]) >= results["thresholds"][n]["value"]]
  assert row["decision"] == ("|".join(above) or "none")
  assert "Effusion" in done.stdout and "Hernia" in done.stdout


def test_single_label_task_refuses_a_multilabel_table(table, tmp_path):
  config = _config(table, tmp_path, "task=single_label", "model.loss=softmax",
                   "evaluation.evaluators=('classification',)", "class_balance.loss_weights=none")
  with pytest.raises(ValueError, match="task"):
    trainer.train_and_evaluate(config, tmp_path / "run", str(table))
