"""jaxray's side of the figures: runs built by `jaxray.assembly.assemble`, as the trainer builds
them, so the bench times the steps that `python -m jaxray.main` trains with.

Kernel variants (--other_conv_grad, --compare_winograd) are configs too: a copy of the figure's
config with one `runtime` field changed, assembled again, so each variant is a run a user could
ask for with `--set runtime.FIELD=...`.
"""

import copy
import os
import sys
import time

import jax
import numpy as np

from jaxray import assembly
from jaxray.bench import (Options, base_config, epoch_setup, fmt, interleaved, load_chest_xray,
                          print_pair, summary, worker)
from jaxray.bench import reference as reference_lib
from jaxray.data import pipeline
from jaxray.evaluate import predictions
from jaxray.train import epoch as epoch_lib, mesh as mesh_lib, steps as steps_lib

CLASS_NAMES = ("NORMAL", "PNEUMONIA")


def describe_platform(options: Options) -> dict:
  """Prints, and returns for the JSON file, where both sides run and the process settings."""
  device = jax.devices()[0]
  info = {"backend": jax.default_backend(), "device_kind": device.device_kind,
          "device_count": jax.device_count(), "cpu_count": os.cpu_count(),
          "jax": jax.__version__, "python": sys.version.split()[0],
          "xla_flags": os.environ.get("XLA_FLAGS", ""),
          "glibc_tunables": os.environ.get("GLIBC_TUNABLES", "")}
  try:
    info["load_average"] = os.getloadavg()
  except OSError:
    pass
  info.update(reference_lib.platform(options))
  print(f"Platform: {info['backend']} ({info['device_kind']}, {info['device_count']} device(s)), "
        f"{info['cpu_count']} CPUs, jax {info['jax']}, torch {info.get('torch', 'not installed')}"
        + (f" on {info['torch_device']}" if "torch_device" in info else "")
        + (f", load average {info['load_average'][0]:.1f}" if "load_average" in info else ""))
  if info["backend"] == "cpu":
    print(f"XLA_FLAGS: {info['xla_flags'] or '(none)'}; "
          f"GLIBC_TUNABLES: {info['glibc_tunables'] or '(none)'}", flush=True)
  return info


def print_runtime(run) -> dict:
  """Prints which `runtime` settings the figure's default run resolved to; its record, for the
  JSON file."""
  resolved = run.runtime["resolved"]
  print("  runtime: " + ", ".join(f"{name} {'on' if on else 'off'}"
                                  for name, on in resolved.items()), flush=True)
  return run.runtime


# ------------------------------------------------------------------------------------------------
# (a) train step


def _random_splits(size, batch):
  """In-memory splits for `assemble`: one batch of random grayscale images for training (the
  step's shapes are all the figure needs), two for validation."""
  rng = np.random.default_rng(0)

  def examples(n):
    return [{"image": rng.integers(0, 256, (size, size, 1), np.uint8),
             "label": int(rng.integers(0, 2))} for _ in range(n)]

  return {"train": examples(batch), "val": examples(2)}


def train_runner(options: Options, config, splits, steps):
  """(fn timing one window of `steps` train steps, the run, seconds of the first step): the
  assembled run's jitted step on one fixed device batch, compiled and warmed up."""
  run, state = assembly.assemble(config, splits=splits, class_names=CLASS_NAMES)
  holder = {"state": state}
  train = splits["train"]
  batch = len(train)
  data = mesh_lib.to_global({"image": np.stack([e["image"] for e in train]),
                             "label": np.array([e["label"] for e in train], np.int32)}, run.mesh)
  metrics = {"value": jax.device_put(steps_lib.zero_metrics(), run.replicated)}

  def window(n):
    started = time.perf_counter()
    for _ in range(n):
      holder["state"], metrics["value"] = run.train_step(holder["state"], data, metrics["value"])
    jax.block_until_ready(holder["state"])
    return batch * n, time.perf_counter() - started

  started = time.perf_counter()
  window(1)
  compile_seconds = time.perf_counter() - started
  window(options.warmup)
  return (lambda: window(steps)), run, compile_seconds


def _variant(config, **runtime_fields):
  """A copy of `config` with `runtime` fields changed."""
  changed = copy.deepcopy(config)
  for name, value in runtime_fields.items():
    changed.runtime[name] = value
  return changed


def _print_variant(figures, variant, label):
  """One line for jaxray's train step with other kernels, measured in the same run: its figure,
  its ratio to torch's, and how much faster the default is."""
  other = figures.get(f"jaxray_{variant}")
  if other is None:
    return
  ratio = other["median"] / figures["torch"]["median"] if "torch" in figures else None
  figures[f"ratio_{variant}"] = ratio
  figures[f"speedup_vs_{variant}"] = figures["jaxray"]["median"] / other["median"]
  line = f"  {label:>30s} jaxray {fmt(other)}"
  if ratio is not None:
    line += f" | ratio {ratio:.2f}x"
  print(line + f" | default is {figures[f'speedup_vs_{variant}']:.2f}x this", flush=True)


def default_steps(size, backend):
  """Steps per window: enough work that a window's timing is not its synchronization."""
  if backend == "cpu":
    return 2 if size >= 128 else 8
  return 100 if size >= 128 else 400


def bench_train(options: Options):
  results = {}
  torch_pair = reference_lib.available(options)
  print("Train step (ResNet-18, 2-way head, Adam 1e-3), images/s:")
  if torch_pair:
    results["torch_process"] = worker.say_reference_process(options)
  on_cpu = jax.default_backend() == "cpu"
  for spec in options.train_sizes:
    shape, _, stem = spec.partition(":")
    size, batch = (int(v) for v in shape.split("x"))
    stem = stem or "imagenet"
    steps = options.steps_per_window or default_steps(size, jax.default_backend())
    config = base_config(options, size, batch, stem)
    splits = _random_splits(size, batch)
    jax_run, run, compile_seconds = train_runner(options, config, splits, steps)
    if "runtime" not in results:
      results["runtime"] = print_runtime(run)
    resolved = run.runtime["resolved"]
    runners = {"jaxray": jax_run}
    detour = resolved["im2col_weight_grad"]
    if options.other_conv_grad and on_cpu:
      runners["jaxray_other_conv_grad"] = train_runner(
          options, _variant(config, im2col_weight_grad=not detour), splits, steps)[0]
    if options.compare_winograd and on_cpu and resolved["winograd"]:
      runners["jaxray_without_winograd"] = train_runner(
          options, _variant(config, winograd=False), splits, steps)[0]
    with worker.torch_reference(options, f"train,{size},{batch},{stem},{steps}",
                                torch_pair) as reference:
      if reference:
        runners["torch"] = reference
      figures = interleaved(runners, options.windows)
    figures.update(image_size=size, batch_size=batch, stem=stem, steps_per_window=steps,
                   jaxray_compile_seconds=compile_seconds, im2col_weight_grad=detour)
    print_pair(f"{size}px batch {batch} {stem}", figures)
    _print_variant(figures, "other_conv_grad",
                   "(XLA weight grads)" if detour else "(im2col weight grads)")
    _print_variant(figures, "without_winograd", "(no Winograd)")
    results[spec] = figures
  return results


# ------------------------------------------------------------------------------------------------
# (b) input pipeline


def bench_pipeline(options: Options):
  if not options.raw_dir:
    print("Pipeline benchmark skipped: it needs --raw_dir (a Kermany-layout folder).")
    return None
  config = base_config(options, 224, 32)
  config.augment.update(dict(rotation_degrees=25.0, hflip=True, brightness=0.2, contrast=0.2))
  splits, class_names = load_chest_xray(options, config)
  train = splits["train"]
  batch_size = min(32, len(train))
  config.input.batch_size = config.input.eval_batch_size = batch_size
  # The run's kernels decide how the augmentation computes (runtime.materialize).
  run, _ = assembly.assemble(config, splits=splits, class_names=class_names)
  prepare = jax.jit(lambda images, key: steps_lib.model_inputs(images, run.config, key, run.ops))
  epoch = {"n": 0}

  def jax_window(augment=True):
    count, started = 0, time.perf_counter()
    while count < options.pipeline_images:  # whole epochs, until enough images went through
      epoch["n"] += 1
      for batch in pipeline.train_batches(train, batch_size=batch_size, image_size=224, seed=0,
                                          epoch=epoch["n"], num_threads=options.workers):
        out = prepare(batch["image"], jax.random.PRNGKey(epoch["n"])) if augment else batch
        count += len(batch["label"])
    jax.block_until_ready(out)
    return count, time.perf_counter() - started

  jax_window()  # compile the augmentation, warm the file cache
  runners = {"jaxray": jax_window, "jaxray_host_only": lambda: jax_window(augment=False)}
  print(f"Input pipeline ({len(train)} training images, batch {batch_size}, "
        f"{options.workers} workers, >= {options.pipeline_images} images per window), images/s:")
  runtime_record = print_runtime(run)
  torch_pair = reference_lib.available(options)
  process = worker.say_reference_process(options) if torch_pair else None
  with worker.torch_reference(options, f"pipeline,{batch_size}", torch_pair) as reference:
    if reference:
      runners["torch"] = reference
    figures = interleaved(runners, options.windows)
  figures.update(train_examples=len(train), workers=options.workers, runtime=runtime_record)
  if process:
    figures["torch_process"] = process
  print_pair("prepared+grain vs JPEG", figures)
  print(f"  {'  (grain only, no aug.)':22s} jaxray {fmt(figures['jaxray_host_only'])}", flush=True)
  return figures


# ------------------------------------------------------------------------------------------------
# (c) epoch


def epoch_runner(run, state):
  """fn() -> (images trained, seconds of training, seconds of the epoch with validation): one
  epoch as the trainer runs it (jaxray.train.epoch), then the validation pass it makes."""
  holder = {"epoch": 0, "state": state}

  def one_epoch():
    holder["epoch"] += 1
    started = time.perf_counter()
    running = jax.device_put(steps_lib.zero_metrics(), run.replicated)
    holder["state"], running = epoch_lib.train_epoch(
        run, holder["state"], running, epoch_lib.epoch_batches(run, holder["epoch"]), show=False)
    images = int(jax.block_until_ready(running)["count"])  # the partial last batch included
    train_seconds = time.perf_counter() - started
    predictions.predict(run, holder["state"], run.splits["val"], "val", with_ids=False)
    return images, train_seconds, time.perf_counter() - started

  return one_epoch


def bench_epoch(options: Options):
  config, splits, class_names, name = epoch_setup(options)
  run, state = assembly.assemble(config, splits=splits, class_names=class_names)
  train, val = splits["train"], splits["val"]
  size, batch = config.input.image_size, config.input.batch_size
  runners = {"jaxray": epoch_runner(run, state)}
  print(f"Epoch end to end ({name}: {len(train)} train, {len(val)} val, {size} px, "
        f"batch {batch}):", flush=True)
  figures = {"dataset": name, "train_examples": len(train), "val_examples": len(val),
             "image_size": size, "batch_size": batch, "runtime": print_runtime(run)}
  torch_pair = reference_lib.available(options)
  if torch_pair and options.epoch_experiment == "resnet18_pneumoniamnist":
    figures["torch_process"] = worker.say_reference_process(options)
  elif torch_pair:
    if options.epoch_experiment:
      print(f"  (no PyTorch reference epoch for {options.epoch_experiment})")
    torch_pair = None
  with worker.torch_reference(options, "epoch", torch_pair) as reference:
    if reference:
      runners["torch"] = reference
    first = {n: fn()[2] for n, fn in runners.items()}  # compilation / warm-up epoch
    timings = {n: [] for n in runners}
    for _ in range(max(2, options.windows // 2)):
      for n, fn in runners.items():
        timings[n].append(fn())
  for n in runners:
    figures[n] = {"first_epoch_seconds": first[n], "train_images": timings[n][0][0],
                  "epoch_seconds": summary([t for _, _, t in timings[n]]),
                  "train_images_per_second": summary([i / t for i, t, _ in timings[n]])}
    e = figures[n]["epoch_seconds"]
    print(f"  {n:7s} epoch {e['median']:.1f} s [{e['min']:.1f} .. {e['max']:.1f}] (first, with "
          f"compilation: {first[n]:.1f} s); training part "
          f"{fmt(figures[n]['train_images_per_second'])}", flush=True)
  if "torch" in figures:
    figures["ratio"] = (figures["torch"]["epoch_seconds"]["median"]
                        / figures["jaxray"]["epoch_seconds"]["median"])
    print(f"  epoch time ratio torch / jaxray: {figures['ratio']:.2f}x", flush=True)
  return figures
