"""python -m jaxray.predict --workdir=RUN image_or_folder... [--gradcam=DIR] [--output=FILE.csv]

Classifies image files with a finished run: the checkpoint its selection chose, its config, and
the decision threshold its evaluation chose on validation (argmax for multi-class runs). Each
file goes through exactly what training's data did: read and stored as dataset preparation
stores it (any size, mode or format preparation accepts), then resized and normalised as the
evaluation's input pipeline does. A file that cannot be read is skipped with its reason; the
others are still predicted, and so is a degenerate image (too small, a strip, constant: the
run's `dataset.min_image_side` and images.degenerate). Results are printed and written to a CSV
(never over an existing file); `--gradcam=DIR` also writes a Grad-CAM overlay per image, which
the CSV's `gradcam` column names. Where the results go is checked before any image is read, so a
folder that cannot be written never costs a prediction.
"""

import csv
import pathlib
import sys
import tempfile

from absl import app, flags
from absl import logging as absl_logging

from jaxray import cli

flags.DEFINE_string("workdir", None, "The folder of a finished run (python -m jaxray.main's "
                    "--workdir): its config.json, results.json and checkpoints.")
flags.DEFINE_string("output", None, "CSV to write (default: predictions.csv in --workdir, or "
                    "predictions_2.csv, ... if that exists). An existing file is never replaced.")
flags.DEFINE_string("gradcam", None, "Also write a Grad-CAM overlay per image into this folder "
                    "(for the class decided).")
flags.DEFINE_integer("batch_size", 32, "Images per forward pass.")
flags.DEFINE_enum("platform", None, ["cpu", "gpu", "tpu"], "Run on this platform only "
                  "(default: JAX's choice, the GPU when there is one).")
FLAGS = flags.FLAGS


def collect(paths) -> tuple[list[pathlib.Path], list[tuple[pathlib.Path, str]]]:
  """(files to read, [(path, why it is skipped)]): folders are searched recursively, in sorted
  order; hidden files are left out, any other file is tried (its suffix decides nothing)."""
  files, skipped = [], []
  for given in paths:
    path = pathlib.Path(given).expanduser()
    if path.is_dir():
      found = sorted(p for p in path.rglob("*")
                     if p.is_file() and not any(part.startswith(".")
                                                for part in p.relative_to(path).parts))
      if not found:
        skipped.append((path, "folder holds no files"))
      files.extend(found)
    elif path.is_file():
      files.append(path)
    else:
      skipped.append((path, "no such file or folder"))
  return files, skipped


def read(files, min_side: int | None = None
         ) -> tuple[list[dict], list[tuple[pathlib.Path, str]]]:
  """Each readable file as a prepared example ({"image": stored pixels, "label": 0, "path"});
  the others with the reason, as dataset preparation gives it. `min_side`: the run's
  dataset.min_image_side (default images.MIN_IMAGE_SIDE)."""
  from jaxray.data import images
  examples, skipped = [], []
  for path in files:
    pixels, reason = images.try_read(path, min_side=min_side or images.MIN_IMAGE_SIDE)
    if pixels is None:
      skipped.append((path, reason))
    else:
      examples.append({"image": pixels, "label": 0, "path": path})
  return examples, skipped


def load_run(workdir: pathlib.Path, batch_size: int):
  """(assembled run, the selected checkpoint's state, results.json's content)."""
  from jaxray import assembly, config as config_lib
  from jaxray.rundir import checkpoint, results as results_lib
  config = config_lib.from_workdir(workdir)
  results = results_lib.read(workdir)
  run, state = assembly.assemble_for_inference(config, results["class_names"], batch_size)
  manager = checkpoint.manager(workdir, config.selection.metric, config.selection.mode)
  epoch = results["selected_epoch"]
  if epoch not in manager.all_steps():
    raise FileNotFoundError(f"{workdir / 'checkpoints'} has no checkpoint of epoch {epoch}, "
                            f"the one results.json selected.")
  try:
    state = checkpoint.restore_selected(manager, epoch, state, workdir, (
        f"It is the one results.json selected, so the run cannot predict: restore {workdir} "
        f"from a copy, or train the run again."))
  finally:
    manager.close()
  return run, state, results


def check_writable(folder: pathlib.Path, what: str) -> None:
  """Raises ValueError, before anything is predicted, when `folder` cannot be created or written;
  folders it had to create for the probe are removed again. `what` says how to fix it."""
  created = [p for p in (folder, *folder.parents) if not p.exists()]
  try:
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=folder, prefix=".jaxray_write_test"):
      pass
  except OSError as error:
    file = next((p for p in (folder, *folder.parents) if p.is_file()), None)
    why = f"{file} is a file, not a folder" if file else error.strerror or error
    raise ValueError(f"{folder} cannot be written ({why}): {what} Nothing was predicted."
                     ) from None
  finally:
    for path in created:
      if path.is_dir():
        path.rmdir()


def overlay_paths(examples, folder: pathlib.Path) -> list[pathlib.Path]:
  """Each example's Grad-CAM overlay: `<stem>_gradcam.png`, or `<stem>_gradcam_2.png`, ... when
  that name is taken on disk or by an earlier example (two inputs named x.png in two folders)."""
  taken, paths = set(), []
  for example in examples:
    path = free_path(folder / f"{example['path'].stem}_gradcam.png", taken)
    taken.add(path)
    paths.append(path)
  return paths


def free_path(path: pathlib.Path, taken=frozenset()) -> pathlib.Path:
  """`path`, or `stem_2.suffix`, `stem_3.suffix`, ...: the first that does not exist and is not
  in `taken`."""
  candidate, number = path, 1
  while candidate.exists() or candidate in taken:
    number += 1
    candidate = path.with_name(f"{path.stem}_{number}{path.suffix}")
  return candidate


def main(argv):
  paths = argv[1:]
  if not FLAGS["verbosity"].present:
    absl_logging.set_verbosity(absl_logging.WARNING)
  if not FLAGS.workdir:
    cli.fail("--workdir is required: the folder of a finished run, e.g. --workdir=runs/demo")
  if not paths:
    cli.fail("name at least one image or folder after the flags, e.g. "
          "python -m jaxray.predict --workdir=runs/demo my_xrays/")
  if FLAGS.batch_size < 1:
    cli.fail(f"--batch_size={FLAGS.batch_size}: must be a whole number of images, at least 1 "
             f"(default 32).")
  workdir = pathlib.Path(FLAGS.workdir).expanduser()
  output = pathlib.Path(FLAGS.output).expanduser() if FLAGS.output else None
  if output is not None and output.exists():
    cli.fail(f"--output={output} exists; it is not replaced. Name another file.")
  from jaxray import config as config_lib, runtime
  try:
    config = config_lib.from_workdir(workdir)
    runtime.configure_process(config.runtime, runtime.intended_platform(FLAGS.platform))
  except (ValueError, FileNotFoundError) as error:
    cli.fail(error)
  gradcam_dir = pathlib.Path(FLAGS.gradcam).expanduser() if FLAGS.gradcam else None
  try:
    if output is not None:
      check_writable(output.parent, "pass an --output in a folder you can write to.")
    else:
      check_writable(workdir, "the CSV goes into --workdir unless --output names another "
                              "file: pass --output=<a file in a folder you can write to>.")
    if gradcam_dir is not None:
      check_writable(gradcam_dir, "pass a --gradcam folder you can write to.")
  except ValueError as error:
    cli.fail(error)

  import jax
  if FLAGS.platform:
    jax.config.update("jax_platforms", FLAGS.platform)
    try:
      jax.devices()
    except RuntimeError as error:
      cli.fail(f"--platform={FLAGS.platform}: JAX finds no such device here ({error}). Leave "
               f"--platform out to run on what this machine has.")
  import numpy as np
  from jaxray.evaluate import predictions as predictions_lib

  files, skipped = collect(paths)
  examples, unreadable = read(files, config.dataset.min_image_side)
  skipped += unreadable
  for path, reason in skipped:
    print(f"skipped {path}: {reason}", file=sys.stderr)
  try:
    run, state, results = load_run(workdir, FLAGS.batch_size)
  except (ValueError, FileNotFoundError) as error:
    cli.fail(error)
  class_names = run.class_names
  from jaxray.rundir import results as results_lib
  rule = results_lib.decision_rule(results)
  multilabel = run.config.task == "multilabel"
  if multilabel:  # every finding against its own val threshold
    cuts = np.array([results["thresholds"][name]["value"] for name in class_names])
    rule = {"rule": "per-finding val thresholds", "value": None}
    for example in examples:
      example["label"] = np.full(len(class_names), -1, np.int32)  # unknown: no loss to count
  if examples:
    predicted = predictions_lib.predict(run, state, examples, "predict", with_ids=False)
    probabilities = predicted["probabilities"]
    decisions = probabilities.argmax(-1) if multilabel else decide(probabilities, rule)
  else:
    probabilities, decisions = np.zeros((0, len(class_names))), np.zeros((0,), int)

  rows = []
  for example, p, decision in zip(examples, probabilities, decisions):
    rows.append({"file": str(example["path"]), "status": "ok", "reason": "",
                 **{f"p_{name}": f"{value:.6f}" for name, value in zip(class_names, p)},
                 "decision": (_findings_above(p, cuts, class_names) if multilabel
                              else class_names[decision]), "rule": rule["rule"],
                 "threshold": "" if rule.get("value") is None else f"{rule['value']:.6f}"})
  for path, reason in skipped:
    rows.append({"file": str(path), "status": "skipped", "reason": reason,
                 **{f"p_{name}": "" for name in class_names}, "decision": "", "rule": "",
                 "threshold": ""})

  overlays = overlay_paths(examples, gradcam_dir) if gradcam_dir is not None else []
  for row, overlay in zip(rows, overlays):  # the examples' rows come first
    row["gradcam"] = str(overlay)
  print(f"\n{len(examples)} image(s) predicted with {workdir} (epoch "
        f"{results['selected_epoch']}; decision: {_rule_text(rule)}), {len(skipped)} skipped.")
  for row in rows[:len(examples)]:
    figures = ", ".join(f"{name} {row[f'p_{name}']}" for name in class_names)
    print(f"{row['decision']:>12}  {figures}  {row['file']}")
  output = output or free_path(workdir / "predictions.csv")
  output.parent.mkdir(parents=True, exist_ok=True)
  with open(output, "x", newline="") as file:
    writer = csv.DictWriter(file, fieldnames=list(rows[0]) if rows else ["file"])
    writer.writeheader()
    writer.writerows(rows)
  print(f"predictions: {output}")
  if overlays:
    write_gradcam(run, state, examples, decisions, overlays)
    print(f"Grad-CAM overlays: {len(overlays)} in {gradcam_dir} (the CSV's gradcam column)")


def decide(probabilities, rule: dict):
  from jaxray.evaluate import threshold
  return threshold.decide(probabilities, rule)


def _findings_above(probabilities, cuts, names) -> str:
  """A multi-label decision: the findings at or above their val thresholds, joined by "|"."""
  return "|".join(n for n, p, t in zip(names, probabilities, cuts) if p >= t) or "none"


def _rule_text(rule: dict) -> str:
  if rule["rule"] == "per-finding val thresholds":
    return "each finding at its threshold chosen on validation"
  if rule.get("value") is None:
    return "argmax"
  return f"{rule['rule']} threshold {rule['value']:.4f} chosen on validation"


def write_gradcam(run, state, examples, decisions, paths) -> None:
  """One overlay PNG per image, for the class decided, at its `overlay_paths` path (existing
  files are never replaced)."""
  from jaxray.evaluate import gradcam
  paths[0].parent.mkdir(parents=True, exist_ok=True)
  inputs = gradcam.model_inputs(examples, run.config.input.image_size)  # what the model saw
  maps = gradcam.of_inputs(run, state, inputs, decisions)
  for example, image, heatmap, c, path in zip(examples, inputs, maps, decisions, paths):
    gradcam.save_overlay(image[..., 0], heatmap, path,
                         f"{example['path'].name}: {run.class_names[c]}")


def run():
  app.run(main)


if __name__ == "__main__":
  run()
