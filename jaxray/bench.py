"""Throughput figures, ours next to a reference, from one run: `python -m jaxray.bench`.

  python -m jaxray.bench                                   # train steps, jaxray vs torchvision
  python -m jaxray.bench --what=train,pipeline,epoch --raw_dir=~/data --json=bench.json

What is measured (each figure: the median of --windows timed windows after warm-up, with the
min/max spread; jaxray and the reference alternate window by window, so a machine shared with
other work slows both alike):

  train     the real jitted `steps.train_step` (ResNet-18, 2-way head, Adam 1e-3, report 000's
            recipe) on a fixed device-resident batch, against torchvision's resnet18 with
            torch.optim.Adam on the same batch size and resolution (--train_sizes, SIZExBATCH),
            which runs in a process of its own, as for every other figure
            (--reference_malloc: under which malloc settings).
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
            other on the same machine.

The torch reference runs when torch and torchvision can be imported, and is skipped with a message
otherwise. The platform (backend, device kind) is printed, so the same command measures a GPU;
there the torch reference moves to CUDA too (when its build has CUDA: the device it ran on is
printed), so both sides train on the same chip. Input pipelines stay on the host's CPUs.
"""

import contextlib
import json
import os
import statistics
import sys
import tempfile
import time

from absl import app, flags

from jaxray import host_memory

_WHAT = flags.DEFINE_list("what", ["train"], "Any of train, pipeline, epoch, recipe.")
_TRAIN_SIZES = flags.DEFINE_list("train_sizes", ["224x32", "28x128"],
                                 "SIZExBATCH[:stem] for the train-step benchmark (stem: imagenet "
                                 "or cifar; default imagenet).")
_WINDOWS = flags.DEFINE_integer("windows", 5, "Timed windows per figure.")
_STEPS = flags.DEFINE_integer("steps_per_window", 0,
                              "Train steps per window (0: about 2 s of work per window on a "
                              "2-core CPU: 2 steps at 224 px, 8 at 28 px; on an accelerator "
                              "100 and 400, windows of tenths of a second there).")
_WARMUP = flags.DEFINE_integer("warmup", 2, "Untimed steps (after compilation) before timing.")
_RAW_DIR = flags.DEFINE_string("raw_dir", None,
                               "Kermany-layout folder (holding chest_xray/{train,val,test}/ or "
                               "{train,val,test}/ directly) for the pipeline and epoch figures.")
_EPOCH_EXPERIMENT = flags.DEFINE_string(
    "epoch_experiment", None,
    "Epoch figure: run this experiment's recipe (its dataset from --data_dir) instead of report "
    "000's at 224 px. resnet18_pneumoniamnist also runs MedMNIST's PyTorch recipe as reference.")
_RECIPE_EPOCHS = flags.DEFINE_integer("recipe_epochs", 0,
                                     "--what=recipe: epochs to run (0: the experiment's).")
_DATA_DIR = flags.DEFINE_string("data_dir", None,
                                "The --epoch_experiment's raw data, as for python -m jaxray.main.")
_PREPARED_DIR = flags.DEFINE_string("prepared_dir", None,
                                    "Where the prepared datasets go (default: a temporary folder).")
_WORKERS = flags.DEFINE_integer("workers", 2, "grain threads / DataLoader workers.")
_PIPELINE_IMAGES = flags.DEFINE_integer("pipeline_images", 480,
                                        "Images per pipeline window (whole epochs of the train "
                                        "split, repeated).")
_REFERENCE = flags.DEFINE_bool("reference", True, "Also measure the PyTorch reference.")
_OTHER_CONV_GRAD = flags.DEFINE_bool(
    "other_conv_grad", True,
    "On a CPU, also measure jaxray's train step with the other convolution weight-gradient path "
    "(jaxray.models.conv's im2col detour toggled), in the same run.")
_COMPARE_WINOGRAD = flags.DEFINE_bool(
    "compare_winograd", True,
    "On a CPU, also measure jaxray's train step with its Winograd convolutions off "
    "(jaxray.models.conv.WINOGRAD), in the same run.")
_REFERENCE_MALLOC = flags.DEFINE_enum(
    "reference_malloc", "user", ["user", "jaxray"],
    "Malloc settings (GLIBC_TUNABLES) of the PyTorch reference's own process: 'user', "
    "those this command was started with, as PyTorch runs for its users; 'jaxray', the ones "
    "jaxray adds for itself (jaxray/host_memory.py).")
_TORCH_WORKER = flags.DEFINE_string(
    "torch_worker", None, "Internal: run the PyTorch reference's side (JOB:DEVICE, JOB one of "
    "train,SIZE,BATCH,STEM,STEPS / pipeline,BATCH / epoch / recipe) in this process, on "
    "stdin/stdout.")
_TORCH_THREADS = flags.DEFINE_integer("torch_threads", 0, "torch.set_num_threads (0: default).")
_JSON = flags.DEFINE_string("json", None, "Write every figure to this JSON file.")


# ----------------------------------------------------------------------------------------------
# Helpers


def _torch():
  """(torch, torchvision) or None, with the reason printed once."""
  if not _REFERENCE.value:
    return None
  try:
    import torch
    import torchvision
  except ImportError as error:
    if not getattr(_torch, "warned", False):
      _torch.warned = True
      print(f"PyTorch reference skipped: torch/torchvision not importable ({error}). "
            f"`pip install torch torchvision` to measure it.")
    return None
  if _TORCH_THREADS.value:
    torch.set_num_threads(_TORCH_THREADS.value)
  return torch, torchvision


def _torch_device(torch):
  """The reference runs where jaxray does: on the GPU when JAX has one and torch sees CUDA."""
  if _TORCH_WORKER.value:  # the reference's own process: its parent chose the device
    return torch.device(_TORCH_WORKER.value.rpartition(":")[2])
  import jax
  if jax.default_backend() == "gpu" and torch.cuda.is_available():
    return torch.device("cuda")
  return torch.device("cpu")


def _torch_sync(torch, device):
  """Waits for queued CUDA work, so a timed window ends when the reference's work does."""
  if device.type == "cuda":
    torch.cuda.synchronize(device)


def _summary(rates):
  return {"median": statistics.median(rates), "min": min(rates), "max": max(rates),
          "windows": [round(r, 3) for r in rates]}


def _fmt(s):
  return f"{s['median']:8.1f} img/s  [{s['min']:.1f} .. {s['max']:.1f}]"


def _interleaved(runners: dict, windows: int) -> dict:
  """runners: name -> fn() returning (images, seconds) for one window; alternated per window."""
  rates = {name: [] for name in runners}
  for _ in range(windows):
    for name, run in runners.items():
      images, seconds = run()
      rates[name].append(images / seconds)
  return {name: _summary(r) for name, r in rates.items()}


def _print_pair(label, figures, ours="jaxray", ref="torch"):
  line = f"  {label:22s} jaxray {_fmt(figures[ours])}"
  if ref in figures:
    ratio = figures[ours]["median"] / figures[ref]["median"]
    figures["ratio"] = ratio
    line += f" | torch {_fmt(figures[ref])} | ratio {ratio:.2f}x"
  print(line, flush=True)


def _platform():
  import jax
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
  torch_pair = _torch()
  if torch_pair:
    info["torch"] = torch_pair[0].__version__
    info["torch_threads"] = torch_pair[0].get_num_threads()
    info["torch_device"] = str(_torch_device(torch_pair[0]))
  return info


def _base_config(image_size, batch_size, stem="imagenet"):
  from experiments import resnet18_scratch
  config = resnet18_scratch.get_config()
  config.input.image_size = image_size
  config.input.batch_size = batch_size
  config.input.num_threads = _WORKERS.value
  config.model.stem = stem
  return config


# ----------------------------------------------------------------------------------------------
# (a) train step


def _jax_train_runner(config, steps):
  import jax
  import numpy as np
  from jaxray import models
  from jaxray.train import mesh as mesh_lib, optimizer, steps as steps_lib

  size, batch = config.input.image_size, config.input.batch_size
  mesh = mesh_lib.create_mesh()
  model = models.build_model(config.model, 2, size, config.seed, config.input.get("channels", 3))
  tx = optimizer.build(config.optimizer, steps_per_epoch=100)
  graphdef, state = steps_lib.create_state(model, tx, config.seed)
  replicated = mesh_lib.replicated(mesh)
  state = jax.device_put(state, replicated)
  train_fn, _ = steps_lib.jit_steps(graphdef, tx, config, replicated, mesh_lib.data_sharded(mesh))
  rng = np.random.default_rng(0)
  data = mesh_lib.to_global({"image": rng.integers(0, 256, (batch, size, size, 1), np.uint8),
                             "label": rng.integers(0, 2, (batch,), np.int32)}, mesh)
  holder = {"state": state, "metrics": jax.device_put(steps_lib.zero_metrics(), replicated)}

  def run(n):
    started = time.perf_counter()
    for _ in range(n):
      holder["state"], holder["metrics"] = train_fn(holder["state"], data, holder["metrics"])
    jax.block_until_ready(holder["state"])
    return batch * n, time.perf_counter() - started

  started = time.perf_counter()
  run(1)
  compile_seconds = time.perf_counter() - started
  run(_WARMUP.value)
  return (lambda: run(steps)), compile_seconds


def _jax_train_runner_with(config, steps, **conv_settings):
  """A train-step runner traced with `jaxray.models.conv` settings changed (they are read when
  the step is traced, at its first call), which are restored afterwards."""
  from jaxray.models import conv as conv_lib
  saved = {name: getattr(conv_lib, name) for name in conv_settings}
  for name, value in conv_settings.items():
    setattr(conv_lib, name, value)
  try:
    return _jax_train_runner(config, steps)[0]
  finally:
    for name, value in saved.items():
      setattr(conv_lib, name, value)


def _torch_train_runner(torch, torchvision, size, batch, stem, steps):
  model = torchvision.models.resnet18(num_classes=2)
  if stem == "cifar":  # MedMNIST's ResNet-18 (28): 3x3 stride-1 stem, no max-pool
    model.conv1 = torch.nn.Conv2d(3, 64, 3, 1, 1, bias=False)
    model.maxpool = torch.nn.Identity()
  device = _torch_device(torch)
  model.to(device).train()
  opt = torch.optim.Adam(model.parameters(), lr=1e-3)
  loss_fn = torch.nn.CrossEntropyLoss()
  generator = torch.Generator().manual_seed(0)
  images = torch.randn(batch, 3, size, size, generator=generator).to(device)
  labels = torch.randint(0, 2, (batch,), generator=generator).to(device)

  def run(n):
    started = time.perf_counter()
    for _ in range(n):
      opt.zero_grad(set_to_none=True)
      loss = loss_fn(model(images), labels)
      loss.backward()
      opt.step()
    _torch_sync(torch, device)
    return batch * n, time.perf_counter() - started

  run(1 + _WARMUP.value)
  return lambda: run(steps)


_WORKER_LINE = "jaxray.bench worker: "


def _torch_worker_environment():
  """The reference process's environment: no restart, no XLA settings and no accelerator for JAX
  (it runs torch only; on a GPU, JAX there would claim the memory jaxray's process has), and the
  user's malloc settings, or jaxray's with --reference_malloc=jaxray."""
  env = dict(os.environ, JAXRAY_XLA_CPU_DEFAULTS="0", JAX_PLATFORMS="cpu")
  return host_memory.user_environment(env) if _REFERENCE_MALLOC.value == "user" else env


class _TorchProcess:
  """The PyTorch reference in a process of its own: `job` ("train,SIZE,BATCH,STEM,STEPS",
  "pipeline,BATCH", "epoch" or "recipe") on `device`, one timed window per call.

  Sharing jaxray's process, the two runtimes' thread pools and malloc heap interfere: jaxray's
  224-px step measured 13.0-14.2 img/s there against 15.2-15.4 with torch in a process of its own
  (BENCH.md). Windows still alternate with jaxray's, so a machine that slows down slows both.
  The process is this command again (same flags) with --torch_worker; what it prints besides its
  answers is passed on."""

  def __init__(self, job, device):
    import subprocess
    self.process = subprocess.Popen(
        [sys.executable, "-m", "jaxray.bench", *sys.argv[1:], f"--torch_worker={job}:{device}"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        env=_torch_worker_environment())

  def receive(self):
    for line in self.process.stdout:
      if line.startswith(_WORKER_LINE):
        return json.loads(line[len(_WORKER_LINE):])
      sys.stdout.write(line)
      sys.stdout.flush()
    raise RuntimeError(f"The PyTorch reference process ended (exit status "
                       f"{self.process.wait()}); its messages are above.")

  def __call__(self):
    self.process.stdin.write("window\n")
    self.process.stdin.flush()
    return tuple(self.receive())

  def __enter__(self):
    return self

  def __exit__(self, *exc_info):
    self.process.stdin.close()
    self.process.wait(timeout=60)


@contextlib.contextmanager
def _torch_reference(job, torch_pair):
  """The `_TorchProcess` for `job`, once it has built and warmed up its side (None without
  `torch_pair`: the figure is jaxray's alone); the process ends with the block."""
  if not torch_pair:
    yield None
    return
  with _TorchProcess(job, _torch_device(torch_pair[0])) as reference:
    reference.receive()  # "ready"
    yield reference


def _serve_torch(job):
  """--torch_worker: build the reference's side of `job`, say so, then time one window per line
  of stdin; for "recipe", run it and send its figures."""
  def send(message):
    print(_WORKER_LINE + json.dumps(message, default=float), flush=True)

  kind, *spec = job.rpartition(":")[0].split(",")
  torch_pair = _torch()
  if kind == "recipe":
    return send(_torch_recipe(torch_pair))
  if kind == "train":
    size, batch, stem, steps = spec
    run = _torch_train_runner(*torch_pair, int(size), int(batch), stem, int(steps))
  elif kind == "pipeline":
    run = _torch_pipeline_runner(*torch_pair, int(spec[0]))
  else:
    config, train, val, _ = _epoch_setup()
    run = _torch_medmnist_epoch_runner(*torch_pair, config, train, val)
  send("ready")
  for _ in sys.stdin:
    send(run())


def _print_variant(figures, variant, label):
  """One line for jaxray's train step with other convolution settings, measured in the same run:
  its figure, its ratio to torch's, and how much faster the default is."""
  other = figures.get(f"jaxray_{variant}")
  if other is None:
    return
  ratio = other["median"] / figures["torch"]["median"] if "torch" in figures else None
  figures[f"ratio_{variant}"] = ratio
  figures[f"speedup_vs_{variant}"] = figures["jaxray"]["median"] / other["median"]
  line = f"  {label:>30s} jaxray {_fmt(other)}"
  if ratio is not None:
    line += f" | ratio {ratio:.2f}x"
  print(line + f" | default is {figures[f'speedup_vs_{variant}']:.2f}x this", flush=True)


def _default_steps(size, backend):
  """Steps per window: enough work that a window's timing is not its synchronization."""
  if backend == "cpu":
    return 2 if size >= 128 else 8
  return 100 if size >= 128 else 400


def _say_reference_process() -> dict:
  """Prints, and returns for the JSON file, the malloc settings of PyTorch's own process."""
  tunables = _torch_worker_environment().get("GLIBC_TUNABLES", "")
  print(f"  (PyTorch in a process of its own; its GLIBC_TUNABLES: {tunables or '(none)'})",
        flush=True)
  return {"glibc_tunables": tunables}


def bench_train():
  import jax
  from jaxray.models import conv as conv_lib
  results = {}
  torch_pair = _torch()
  print("Train step (ResNet-18, 2-way head, Adam 1e-3), images/s:")
  if torch_pair:
    results["torch_process"] = _say_reference_process()
  for spec in _TRAIN_SIZES.value:
    shape, _, stem = spec.partition(":")
    size, batch = (int(v) for v in shape.split("x"))
    stem = stem or "imagenet"
    steps = _STEPS.value or _default_steps(size, jax.default_backend())
    config = _base_config(size, batch, stem)
    jax_run, compile_seconds = _jax_train_runner(config, steps)
    runners = {"jaxray": jax_run}
    detour = conv_lib.im2col_weight_grad_enabled()
    on_cpu = jax.default_backend() == "cpu"
    if _OTHER_CONV_GRAD.value and on_cpu:
      runners["jaxray_other_conv_grad"] = _jax_train_runner_with(
          config, steps, IM2COL_WEIGHT_GRAD=not detour)
    if _COMPARE_WINOGRAD.value and on_cpu and conv_lib.WINOGRAD:
      runners["jaxray_without_winograd"] = _jax_train_runner_with(config, steps, WINOGRAD=False)
    with _torch_reference(f"train,{size},{batch},{stem},{steps}", torch_pair) as reference:
      if reference:
        runners["torch"] = reference
      figures = _interleaved(runners, _WINDOWS.value)
    figures.update(image_size=size, batch_size=batch, stem=stem, steps_per_window=steps,
                   jaxray_compile_seconds=compile_seconds, im2col_weight_grad=detour)
    _print_pair(f"{size}px batch {batch} {stem}", figures)
    _print_variant(figures, "other_conv_grad",
                   "(XLA weight grads)" if detour else "(im2col weight grads)")
    _print_variant(figures, "without_winograd", "(no Winograd)")
    results[spec] = figures
  return results


# ----------------------------------------------------------------------------------------------
# (b) input pipeline and (c) epoch


def _kermany_root(raw_dir):
  raw_dir = os.path.expanduser(raw_dir)
  nested = os.path.join(raw_dir, "chest_xray")
  if os.path.isdir(os.path.join(nested, "train")):
    return raw_dir, nested
  if os.path.isdir(os.path.join(raw_dir, "train")):
    return os.path.dirname(raw_dir.rstrip("/")) or ".", raw_dir
  raise FileNotFoundError(f"--raw_dir={raw_dir} holds neither chest_xray/train nor train/.")


def _prepared_dir(name):
  base = _PREPARED_DIR.value or os.path.join(tempfile.gettempdir(), "jaxray_bench_tfds")
  return os.path.join(base, name)


def _load_chest_xray():
  from jaxray import data
  data_dir, _ = _kermany_root(_RAW_DIR.value)
  sources, _ = data.load("chest_xray", data_dir, _prepared_dir("chest_xray"))
  return sources


def bench_pipeline():
  import jax
  from jaxray.data import pipeline
  from jaxray.train import steps as steps_lib
  if not _RAW_DIR.value:
    print("Pipeline benchmark skipped: it needs --raw_dir (a Kermany-layout folder).")
    return None
  sources = _load_chest_xray()
  config = _base_config(224, 32)
  config.augment = dict(rotation_degrees=25.0, hflip=True, brightness=0.2, contrast=0.2)
  prepare = jax.jit(lambda images, key: steps_lib.model_inputs(images, config, key))
  train = sources["train"]
  batch_size = min(32, len(train))
  epoch = {"n": 0}

  def jax_window(augment=True):
    count, started = 0, time.perf_counter()
    while count < _PIPELINE_IMAGES.value:  # whole epochs, until enough images went through
      epoch["n"] += 1
      for batch in pipeline.train_batches(train, batch_size=batch_size, image_size=224, seed=0,
                                          epoch=epoch["n"], num_threads=_WORKERS.value):
        out = prepare(batch["image"], jax.random.PRNGKey(epoch["n"])) if augment else batch
        count += len(batch["label"])
    jax.block_until_ready(out)
    return count, time.perf_counter() - started

  jax_window()  # compile the augmentation, warm the file cache
  runners = {"jaxray": jax_window, "jaxray_host_only": lambda: jax_window(augment=False)}
  print(f"Input pipeline ({len(train)} training images, batch {batch_size}, "
        f"{_WORKERS.value} workers, >= {_PIPELINE_IMAGES.value} images per window), images/s:")
  torch_pair = _torch()
  process = _say_reference_process() if torch_pair else None
  with _torch_reference(f"pipeline,{batch_size}", torch_pair) as reference:
    if reference:
      runners["torch"] = reference
    figures = _interleaved(runners, _WINDOWS.value)
  figures.update(train_examples=len(train), workers=_WORKERS.value)
  if process:
    figures["torch_process"] = process
  _print_pair("prepared+grain vs JPEG", figures)
  print(f"  {'  (grain only, no aug.)':22s} jaxray {_fmt(figures['jaxray_host_only'])}", flush=True)
  return figures


def _torch_pipeline_runner(torch, torchvision, batch_size):
  """torchvision's `ImageFolder` + `DataLoader` over the raw JPEGs of --raw_dir with report 000's
  training transforms and --workers worker processes: one window of >= --pipeline_images
  images (whole epochs) per call, after one to warm the file cache."""
  from torchvision import transforms
  _, root = _kermany_root(_RAW_DIR.value)
  transform = transforms.Compose([  # report 000's training transforms
      transforms.Resize((224, 224)),
      transforms.RandomRotation(25),
      transforms.ColorJitter(brightness=0.2, contrast=0.2),
      transforms.RandomHorizontalFlip(),
      transforms.Grayscale(num_output_channels=3),
      transforms.ToTensor(),
      transforms.Normalize([0.5303] * 3, [0.1944] * 3),
  ])
  folder = torchvision.datasets.ImageFolder(os.path.join(root, "train"), transform)
  loader = torch.utils.data.DataLoader(folder, batch_size=batch_size, shuffle=True,
                                       num_workers=_WORKERS.value, drop_last=True)

  def torch_window():
    count, started = 0, time.perf_counter()
    while count < _PIPELINE_IMAGES.value:
      for images, _ in loader:
        count += images.shape[0]
    return count, time.perf_counter() - started

  torch_window()
  return torch_window


def _epoch_setup():
  """(config, train source, val source, dataset label) for the epoch figure."""
  from jaxray import config as config_lib, data
  if _EPOCH_EXPERIMENT.value:
    config = config_lib.load(_EPOCH_EXPERIMENT.value)
    config.input.num_threads = _WORKERS.value
    sources, _ = data.load(config.dataset.name, _DATA_DIR.value,
                           _prepared_dir(f"{config.dataset.name}_{config.dataset.get('config')}"),
                           config.dataset.get("config") or None)
    return config, sources["train"], sources["val"], _EPOCH_EXPERIMENT.value
  config = _base_config(224, 32)
  if _RAW_DIR.value:
    sources, name = _load_chest_xray(), "chest_xray"
  else:
    sources, _ = data.load("synthetic", prepared_dir=_prepared_dir("synthetic"))
    name = "synthetic"
  batch = min(32, len(sources["train"]))
  config.input.batch_size = config.input.eval_batch_size = batch
  return config, sources["train"], sources["val"], name


def _jax_epoch_runner(config, train, val):
  import jax
  from jaxray import models
  from jaxray.data import pipeline
  from jaxray.train import loop, mesh as mesh_lib, optimizer, steps as steps_lib
  size, batch = config.input.image_size, config.input.batch_size
  mesh = mesh_lib.create_mesh()
  model = models.build_model(config.model, 2, size, config.seed, config.input.get("channels", 3))
  steps_per_epoch = pipeline.steps_per_epoch(len(train), batch, multiple=mesh.size)
  tx = optimizer.build(config.optimizer, steps_per_epoch)
  graphdef, state = steps_lib.create_state(model, tx, config.seed)
  replicated = mesh_lib.replicated(mesh)
  holder = {"state": jax.device_put(state, replicated), "epoch": 0}
  eval_batch = pipeline.even_batch_size(len(val), config.input.eval_batch_size, mesh.size)
  train_fn, eval_fn = steps_lib.jit_steps(graphdef, tx, config, replicated,
                                          mesh_lib.data_sharded(mesh))

  def one_epoch():
    epoch, holder["epoch"] = holder["epoch"], holder["epoch"] + 1
    started = time.perf_counter()
    running = jax.device_put(steps_lib.zero_metrics(), replicated)
    batches = pipeline.train_batches(train, batch_size=batch, image_size=size, seed=0,
                                     epoch=epoch, multiple=mesh.size, num_threads=_WORKERS.value)
    holder["state"], running = loop.train_epoch(train_fn, holder["state"], running, batches, mesh,
                                                show=False)
    images = int(jax.block_until_ready(running)["count"])  # the partial last batch included
    train_seconds = time.perf_counter() - started
    outputs = [eval_fn(holder["state"], mesh_lib.to_global(b, mesh))["probabilities"]
               for b in pipeline.eval_batches(val, batch_size=eval_batch, image_size=size,
                                              num_threads=_WORKERS.value)]
    jax.block_until_ready(outputs)
    return images, train_seconds, time.perf_counter() - started

  return one_epoch


class _TorchMedMNIST:
  """MedMNIST v2's PyTorch recipe (MedMNIST/experiments, train_and_eval_pytorch.py): its ResNet-18
  (28) (torchvision's blocks, 1 input channel, 3x3 stride-1 stem, no max-pool), Adam 1e-3,
  MultiStepLR (x0.1 at 50 and 75, from the config), CrossEntropyLoss, shuffled batches of 128
  with the last partial one kept, a pass over val after every epoch; convolutions keep
  nn.Conv2d's default init, as MedMNIST's network does. Images are normalized once up front and
  served from a TensorDataset, cheaper than MedMNIST's per-image PIL transforms: the reference
  gets the faster input path."""

  def __init__(self, torch, torchvision, config, train):
    self.torch = torch
    torch.manual_seed(config.seed)
    self.model = torchvision.models.resnet18(num_classes=2)
    self.model.conv1 = torch.nn.Conv2d(1, 64, 3, 1, 1, bias=False)
    self.model.maxpool = torch.nn.Identity()
    for module in self.model.modules():  # MedMNIST's network keeps nn.Conv2d's own init
      if isinstance(module, torch.nn.Conv2d):
        module.reset_parameters()
    self.device = _torch_device(torch)
    self.model.to(self.device)
    self.opt = torch.optim.Adam(self.model.parameters(), lr=config.optimizer.learning_rate)
    self.scheduler = torch.optim.lr_scheduler.MultiStepLR(
        self.opt, milestones=list(config.optimizer.decay_epochs),
        gamma=config.optimizer.decay_factor)
    self.loss_fn = torch.nn.CrossEntropyLoss()
    self.train_loader = self.loader(train, config.input.batch_size, shuffle=True)

  def loader(self, source, batch_size, shuffle=False):
    import numpy as np
    torch = self.torch
    images = np.stack([source[i]["image"] for i in range(len(source))])[..., :1]
    labels = np.array([source[i]["label"] for i in range(len(source))], np.int64)
    images = (torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255.0 - 0.5) / 0.5
    dataset = torch.utils.data.TensorDataset(images, torch.from_numpy(labels))
    return torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=shuffle)

  def train_epoch(self):
    """One epoch of training and the scheduler step: (images seen, mean training loss)."""
    self.model.train()
    seen, total_loss = 0, 0.0
    for images, labels in self.train_loader:
      images, labels = images.to(self.device), labels.to(self.device)
      self.opt.zero_grad()
      loss = self.loss_fn(self.model(images), labels)
      loss.backward()
      self.opt.step()
      seen += len(labels)
      total_loss += loss.item() * len(labels)  # .item() waits for the step, as MedMNIST's does
    self.scheduler.step()
    return seen, total_loss / seen

  def predict(self, loader):
    """(labels, softmax probabilities) as numpy arrays over a loader."""
    torch = self.torch
    self.model.eval()
    labels, probabilities = [], []
    with torch.no_grad():
      for images, batch_labels in loader:
        probabilities.append(torch.softmax(self.model(images.to(self.device)), dim=1).cpu())
        labels.append(batch_labels)
    return torch.cat(labels).numpy(), torch.cat(probabilities).numpy()


def _torch_medmnist_epoch_runner(torch, torchvision, config, train, val):
  reference = _TorchMedMNIST(torch, torchvision, config, train)
  val_loader = reference.loader(val, config.input.eval_batch_size)

  def one_epoch():
    started = time.perf_counter()
    seen, _ = reference.train_epoch()
    train_seconds = time.perf_counter() - started
    reference.predict(val_loader)
    return seen, train_seconds, time.perf_counter() - started

  return one_epoch


def bench_epoch():
  config, train, val, name = _epoch_setup()
  size, batch = config.input.image_size, config.input.batch_size
  runners = {"jaxray": _jax_epoch_runner(config, train, val)}
  print(f"Epoch end to end ({name}: {len(train)} train, {len(val)} val, {size} px, "
        f"batch {batch}):", flush=True)
  figures = {"dataset": name, "train_examples": len(train), "val_examples": len(val),
             "image_size": size, "batch_size": batch}
  torch_pair = _torch()
  if torch_pair and _EPOCH_EXPERIMENT.value == "resnet18_pneumoniamnist":
    figures["torch_process"] = _say_reference_process()
  elif torch_pair:
    if _EPOCH_EXPERIMENT.value:
      print(f"  (no PyTorch reference epoch for {_EPOCH_EXPERIMENT.value})")
    torch_pair = None
  with _torch_reference("epoch", torch_pair) as reference:
    if reference:
      runners["torch"] = reference
    first = {n: run()[2] for n, run in runners.items()}  # compilation / warm-up epoch
    timings = {n: [] for n in runners}
    for _ in range(max(2, _WINDOWS.value // 2)):
      for n, run in runners.items():
        timings[n].append(run())
  for n in runners:
    figures[n] = {"first_epoch_seconds": first[n], "train_images": timings[n][0][0],
                  "epoch_seconds": _summary([t for _, _, t in timings[n]]),
                  "train_images_per_second": _summary([i / t for i, t, _ in timings[n]])}
    e = figures[n]["epoch_seconds"]
    print(f"  {n:7s} epoch {e['median']:.1f} s [{e['min']:.1f} .. {e['max']:.1f}] (first, with "
          f"compilation: {first[n]:.1f} s); training part "
          f"{_fmt(figures[n]['train_images_per_second'])}", flush=True)
  if "torch" in figures:
    figures["ratio"] = (figures["torch"]["epoch_seconds"]["median"]
                        / figures["jaxray"]["epoch_seconds"]["median"])
    print(f"  epoch time ratio torch / jaxray: {figures['ratio']:.2f}x", flush=True)
  return figures


def bench_recipe():
  """The whole --epoch_experiment recipe in the PyTorch reference (`_torch_recipe`), in a
  process of its own as for the other figures; its progress lines are passed on."""
  if _EPOCH_EXPERIMENT.value != "resnet18_pneumoniamnist":
    raise app.UsageError("--what=recipe: the PyTorch recipe exists for "
                         "--epoch_experiment=resnet18_pneumoniamnist only")
  torch_pair = _torch()
  if not torch_pair:
    raise app.UsageError("--what=recipe runs the PyTorch reference: pip install torch torchvision")
  process = _say_reference_process()
  with _TorchProcess("recipe", _torch_device(torch_pair[0])) as reference:
    return dict(reference.receive(), torch_process=process)


def _torch_recipe(torch_pair):
  """The whole --epoch_experiment recipe in the PyTorch reference, timed start to test figures.

  The figure to set beside `python -m jaxray.main`'s wall time for the same experiment: MedMNIST's
  loop for every epoch of the recipe (train, then val AUC), the epoch with the best val AUC kept
  (strictly better, as MedMNIST's code does), then the selected and the last model on test, with
  jaxray's own metrics and bootstrap intervals.
  """
  import copy
  from jaxray import config as config_lib, data
  from jaxray.evaluate import metrics
  started = time.perf_counter()
  config = config_lib.load(_EPOCH_EXPERIMENT.value)
  epochs = _RECIPE_EPOCHS.value or config.num_epochs
  sources, info = data.load(config.dataset.name, _DATA_DIR.value,
                            _prepared_dir(f"{config.dataset.name}_{config.dataset.config}"),
                            config.dataset.config)
  class_names = info.features["label"].names
  reference = _TorchMedMNIST(*torch_pair, config, sources["train"])
  val_loader = reference.loader(sources["val"], config.input.eval_batch_size)
  test_loader = reference.loader(sources["test"], config.input.eval_batch_size)
  print(f"{_EPOCH_EXPERIMENT.value} in MedMNIST's PyTorch loop, {epochs} epochs:", flush=True)
  history, best = [], {"roc_auc": -1.0}
  for epoch in range(1, epochs + 1):
    epoch_started = time.perf_counter()
    seen, loss = reference.train_epoch()
    val_auc = metrics.compute(*reference.predict(val_loader))["roc_auc"]
    history.append({"epoch": epoch, "train_loss": loss, "val_roc_auc": val_auc,
                    "epoch_seconds": time.perf_counter() - epoch_started})
    if val_auc > best["roc_auc"]:
      best = {"roc_auc": val_auc, "epoch": epoch,
              "state": copy.deepcopy(reference.model.state_dict())}
    print(f"  epoch {epoch:3d}: train loss {loss:.4f} ({seen} images), val AUC {val_auc:.4f}, "
          f"{history[-1]['epoch_seconds']:.1f} s", flush=True)
  figures = {"experiment": _EPOCH_EXPERIMENT.value, "epochs": epochs, "history": history,
             "selected_epoch": best["epoch"]}
  figures["last"] = metrics.evaluate(*reference.predict(test_loader), class_names)
  reference.model.load_state_dict(best["state"])
  figures["selected"] = metrics.evaluate(*reference.predict(test_loader), class_names)
  figures["wall_seconds"] = time.perf_counter() - started
  minutes, seconds = divmod(round(figures["wall_seconds"]), 60)
  print(f"  wall time, start to test figures: {minutes // 60} h {minutes % 60} min {seconds} s; "
        f"median epoch {statistics.median(h['epoch_seconds'] for h in history):.1f} s")
  for label, key in ((f"selected (epoch {best['epoch']}, best val AUC)", "selected"),
                     (f"last (epoch {epochs})", "last")):
    result = figures[key]
    m, ci = result["metrics"], result["ci95"]
    print(f"  test, {label}: ACC {m['accuracy']:.3f} [{ci['accuracy'][0]:.3f}, "
          f"{ci['accuracy'][1]:.3f}], AUC {m['roc_auc']:.3f} [{ci['roc_auc'][0]:.3f}, "
          f"{ci['roc_auc'][1]:.3f}], confusion matrix {result['confusion_matrix']}", flush=True)
  return figures


def main(argv):
  del argv
  if _TORCH_WORKER.value:
    return _serve_torch(_TORCH_WORKER.value)
  import jax
  platform = _platform()
  print(f"Platform: {platform['backend']} ({platform['device_kind']}, "
        f"{platform['device_count']} device(s)), {platform['cpu_count']} CPUs, "
        f"jax {platform['jax']}, torch {platform.get('torch', 'not installed')}"
        + (f" on {platform['torch_device']}" if "torch_device" in platform else "")
        + (f", load average {platform['load_average'][0]:.1f}" if "load_average" in platform
           else ""))
  if platform["backend"] == "cpu":
    print(f"XLA_FLAGS: {platform['xla_flags'] or '(none)'}; "
          f"GLIBC_TUNABLES: {platform['glibc_tunables'] or '(none)'}", flush=True)
  results = {"platform": platform}
  benches = {"train": bench_train, "pipeline": bench_pipeline, "epoch": bench_epoch,
             "recipe": bench_recipe}
  for what in _WHAT.value:
    if what not in benches:
      raise app.UsageError(f"--what: unknown {what!r}; choose from {sorted(benches)}")
    results[what] = benches[what]()
  if _JSON.value:
    with open(_JSON.value, "w") as f:
      json.dump(results, f, indent=2, default=float)
    print(f"Wrote {_JSON.value}")
  del jax


if __name__ == "__main__":
  host_memory.restart_with_memory_settings()  # as jaxray.main does: both sides run under it
  app.run(main)
