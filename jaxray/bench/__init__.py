"""Throughput figures, ours next to a reference, from one run: `python -m jaxray.bench`.

  python -m jaxray.bench                                   # train steps, jaxray vs torchvision
  python -m jaxray.bench --what=train,pipeline,epoch --raw_dir=~/data --json=bench.json
  python -m jaxray.bench --set runtime.winograd=False      # measured without Winograd

What is measured (each figure: the median of --windows timed windows after warm-up, with the
min/max spread; jaxray and the reference alternate window by window, so a machine shared with
other work slows both alike):

  train     the real jitted train step of `jaxray.assembly.assemble` (ResNet-18, 2-way head,
            Adam 1e-3, report 000's recipe) on a fixed device-resident batch, against
            torchvision's resnet18 with torch.optim.Adam on the same batch size and resolution
            (--train_sizes, SIZExBATCH), which runs in a process of its own, as for every other
            figure (--reference_malloc: under which malloc settings).
  pipeline  the prepared dataset through grain (`pipeline.train_batches`) plus the on-device
            augmentation of report 000 (rotation 25, color jitter, flip) and normalization,
            against torchvision ImageFolder + DataLoader decoding the raw JPEGs of --raw_dir with
            report 000's transforms, both with --workers workers (PyTorch's forked from its own
            process, which runs no JAX, as in a PyTorch user's script).
  epoch     one training epoch end to end (grain batches -> jitted train step) plus one pass
            of evaluation over the validation split, on the prepared --raw_dir dataset or, without
            it, the synthetic one; with --epoch_experiment=resnet18_pneumoniamnist
            --data_dir=DIR, MedMNIST v2's recipe against MedMNIST's PyTorch training loop.
  recipe    (PyTorch only) that whole recipe in MedMNIST's loop, every epoch, model selection on
            val AUC and test figures, timed start to end: the figure to set beside the wall time
            of `python -m jaxray.main --experiment=resnet18_pneumoniamnist`, run one after the
            other on the same machine. With a report 000 experiment (--epoch_experiment=
            resnet18_scratch, _aug, _15ep) and --data_dir holding chest_xray/, report 000's
            recipe in its own PyTorch code, every number from the experiment's config, with
            train, val and test figures per epoch and jaxray's selection rule and test metrics.

The figures of one machine are in docs/performance.md. The package's parts: `__main__` (flags,
process setup), `jaxray_side` (jaxray's runners, each built by `assemble`), `reference` (all of
the PyTorch code, with `reference_kermany`: report 000's recipe), `worker` (the PyTorch
reference's own process). Importing the package imports neither JAX nor PyTorch: the command sets
up the process (jaxray.runtime) before JAX starts, and PyTorch is imported only when a figure runs.
The torch reference runs when torch and torchvision can be imported, and is skipped with a message
otherwise. The platform (backend, device kind) is printed, so the same command measures a GPU;
there the torch reference moves to CUDA too (when its build has CUDA: the device it ran on is
printed), so both sides train on the same chip. Input pipelines stay on the host's CPUs.
"""

import dataclasses
import os
import statistics
import tempfile


@dataclasses.dataclass(frozen=True)
class Options:
  """The command's flags (jaxray/bench/__main__.py says what each means), passed to every part
  rather than read from absl's globals, so the parts are plain functions of their arguments."""

  what: tuple = ("train",)
  train_sizes: tuple = ("224x32", "28x128")
  windows: int = 5
  steps_per_window: int = 0
  warmup: int = 2
  raw_dir: str | None = None
  epoch_experiment: str | None = None
  recipe_epochs: int = 0
  data_dir: str | None = None
  prepared_dir: str | None = None
  workers: int = 2
  pipeline_images: int = 480
  reference: bool = True
  other_conv_grad: bool = True
  compare_winograd: bool = True
  reference_malloc: str = "user"
  torch_worker: str | None = None
  torch_threads: int = 0
  json: str | None = None
  overrides: tuple = ()  # --set key=value, applied to every config the bench builds


# ------------------------------------------------------------------------------------------------
# Figures: windows -> median and spread, printed alike for every figure.


def summary(rates):
  return {"median": statistics.median(rates), "min": min(rates), "max": max(rates),
          "windows": [round(r, 3) for r in rates]}


def fmt(s):
  return f"{s['median']:8.1f} img/s  [{s['min']:.1f} .. {s['max']:.1f}]"


def interleaved(runners: dict, windows: int) -> dict:
  """runners: name -> fn() returning (images, seconds) for one window; alternated per window."""
  rates = {name: [] for name in runners}
  for _ in range(windows):
    for name, run in runners.items():
      images, seconds = run()
      rates[name].append(images / seconds)
  return {name: summary(r) for name, r in rates.items()}


def print_pair(label, figures, ours="jaxray", ref="torch"):
  line = f"  {label:22s} jaxray {fmt(figures[ours])}"
  if ref in figures:
    ratio = figures[ours]["median"] / figures[ref]["median"]
    figures["ratio"] = ratio
    line += f" | torch {fmt(figures[ref])} | ratio {ratio:.2f}x"
  print(line, flush=True)


# ------------------------------------------------------------------------------------------------
# Configs and datasets, the same for jaxray's side and the reference's.


def base_config(options: Options, image_size, batch_size, stem="imagenet"):
  """Report 000's recipe (experiments/resnet18_scratch) with --set applied, at the figure's size;
  the figure's own size, batch, stem and --workers win over --set."""
  from jaxray import config as config_lib
  config = config_lib.apply_overrides(config_lib.load("resnet18_scratch"), options.overrides)
  config.input.image_size = image_size
  config.input.batch_size = batch_size
  config.input.num_threads = options.workers
  config.model.stem = stem
  return config


def kermany_root(raw_dir):
  """(the data_dir that holds chest_xray/, the folder holding train/val/test) of --raw_dir."""
  raw_dir = os.path.expanduser(raw_dir)
  nested = os.path.join(raw_dir, "chest_xray")
  if os.path.isdir(os.path.join(nested, "train")):
    return raw_dir, nested
  if os.path.isdir(os.path.join(raw_dir, "train")):
    return os.path.dirname(raw_dir.rstrip("/")) or ".", raw_dir
  raise FileNotFoundError(f"--raw_dir={raw_dir} holds neither chest_xray/train nor train/.")


def prepared_dir(options: Options, name):
  base = options.prepared_dir or os.path.join(tempfile.gettempdir(), "jaxray_bench_tfds")
  return os.path.join(base, name)


def load_chest_xray(options: Options, config):
  """(splits, class names) of the Kermany folder --raw_dir, prepared once under --prepared_dir."""
  from jaxray import assembly
  config.dataset.name, config.dataset.config = "chest_xray", ""
  config.dataset.prepared_dir = prepared_dir(options, "chest_xray")
  return assembly.load_splits(config, kermany_root(options.raw_dir)[0])[:2]


def epoch_setup(options: Options):
  """(config, splits, class names, dataset label) of the epoch figure: --epoch_experiment's
  recipe on its dataset, or report 000's at 224 px on --raw_dir or the synthetic dataset."""
  from jaxray import assembly, config as config_lib
  if options.epoch_experiment:
    config = config_lib.apply_overrides(config_lib.load(options.epoch_experiment),
                                        options.overrides)
    config.input.num_threads = options.workers
    config.dataset.prepared_dir = prepared_dir(
        options, f"{config.dataset.name}_{config.dataset.config}")
    splits, class_names, _ = assembly.load_splits(config, options.data_dir)
    return config, splits, class_names, options.epoch_experiment
  config = base_config(options, 224, 32)
  if options.raw_dir:
    (splits, class_names), name = load_chest_xray(options, config), "chest_xray"
  else:
    config.dataset.name, config.dataset.config = "synthetic", ""
    config.dataset.prepared_dir = prepared_dir(options, "synthetic")
    (splits, class_names, _), name = assembly.load_splits(config), "synthetic"
  batch = min(32, len(splits["train"]))
  config.input.batch_size = config.input.eval_batch_size = batch
  return config, splits, class_names, name
