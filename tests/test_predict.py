"""python -m jaxray.predict: a finished run classifies files as its evaluation did."""

import csv
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from jaxray import assembly
from jaxray.data.splits import Subset
from jaxray.evaluate.predictions import predict
from jaxray.rundir import checkpoint


def _predict(*args):
  env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "GLIBC_TUNABLES")}
  return subprocess.run([sys.executable, "-m", "jaxray.predict", *map(str, args)], env=env,
                        capture_output=True, text=True, timeout=600)


def test_a_folder_with_a_bad_file_is_predicted_as_the_evaluation_did(finished_run, tmp_path):
  workdir, config, results = finished_run
  run, state = assembly.assemble(config)
  manager = checkpoint.manager(workdir, config.selection.metric, config.selection.mode)
  state = checkpoint.restore(manager, results["selected_epoch"], state)
  manager.close()
  chosen = [0, 1, 2, 3]
  expected = predict(run, state, Subset(run.splits["test"], chosen))["probabilities"]

  folder = tmp_path / "xrays"
  (folder / "nested").mkdir(parents=True)
  names = []
  for k, index in enumerate(chosen):  # lossless files of the stored pixels, in other modes
    pixels = np.asarray(run.splits["test"][index]["image"])[..., 0]
    image = Image.fromarray(pixels)
    if k == 1:
      image = image.convert("RGB")  # a colour file of a grayscale picture
    if k == 2:
      image = image.convert("LA")  # grayscale with an (opaque) alpha channel
    name = f"{'nested/' if k == 3 else ''}image{k}.{'bmp' if k == 3 else 'png'}"
    image.save(folder / name)
    names.append(name)
  (folder / "notes.txt").write_text("not an image")
  (folder / "empty.jpeg").write_bytes(b"")
  Image.new("L", (1, 1), 128).save(folder / "dot.png")  # degenerate: skipped as preparation does
  (folder / "other").mkdir()
  (folder / "other" / "image0.png").write_bytes((folder / "image0.png").read_bytes())
  gradcam_dir = tmp_path / "gradcam"

  result = _predict(f"--workdir={workdir}", folder, tmp_path / "missing.png",
                    f"--gradcam={gradcam_dir}")
  assert result.returncode == 0, result.stderr
  assert "skipped" in result.stderr and "notes.txt: not an image" in result.stderr
  with open(workdir / "predictions.csv") as file:
    rows = {os.path.relpath(r["file"], folder): r for r in csv.DictReader(file)}
  assert rows["notes.txt"]["status"] == "skipped"
  assert rows["notes.txt"]["reason"].startswith("not an image")
  assert rows["empty.jpeg"]["reason"].startswith("empty file")
  assert rows["dot.png"]["reason"].startswith("degenerate image: 1x1 px, a side under 32 px")
  # Two inputs of one file name: two overlays, and each row names its own.
  assert rows["image0.png"]["gradcam"] == str(gradcam_dir / "image0_gradcam.png")
  assert rows["other/image0.png"]["gradcam"] == str(gradcam_dir / "image0_gradcam_2.png")
  assert rows["other/image0.png"]["p_NORMAL"] == rows["image0.png"]["p_NORMAL"]
  assert rows[os.path.relpath(tmp_path / "missing.png", folder)]["reason"] == (
      "no such file or folder")
  threshold = results["threshold"]
  for name, p in zip(names, expected):
    row = rows[name]
    assert row["status"] == "ok"
    got = [float(row["p_NORMAL"]), float(row["p_PNEUMONIA"])]
    np.testing.assert_allclose(got, p, atol=2e-6)  # the CSV keeps 6 decimals
    if threshold["value"] is None:
      want = "PNEUMONIA" if p[1] > p[0] else "NORMAL"
    else:
      want = "PNEUMONIA" if p[1] >= threshold["value"] else "NORMAL"
      assert float(row["threshold"]) == pytest.approx(threshold["value"], abs=1e-6)
    assert row["decision"] == want
  assert sorted(p.name for p in gradcam_dir.iterdir()) == sorted(
      [f"image{k}_gradcam.png" for k in range(4)] + ["image0_gradcam_2.png"])

  again = _predict(f"--workdir={workdir}", folder / "image0.png")
  assert again.returncode == 0, again.stderr
  assert (workdir / "predictions_2.csv").exists()  # the first CSV is kept


def test_bad_requests_are_clear_errors(finished_run, tmp_path):
  workdir, _, _ = finished_run
  nowhere = _predict(f"--workdir={tmp_path / 'nothing'}", tmp_path)
  assert nowhere.returncode == 2 and "config.json does not exist" in nowhere.stderr
  existing = tmp_path / "out.csv"
  existing.write_text("mine")
  refused = _predict(f"--workdir={workdir}", f"--output={existing}", tmp_path)
  assert refused.returncode == 2 and "is not replaced" in refused.stderr
  assert existing.read_text() == "mine"
  unfinished = tmp_path / "unfinished"
  unfinished.mkdir()
  (unfinished / "config.json").write_text((workdir / "config.json").read_text())
  result = _predict(f"--workdir={unfinished}", tmp_path)
  assert result.returncode == 2 and "has not finished" in result.stderr
