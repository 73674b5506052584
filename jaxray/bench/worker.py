"""The PyTorch reference in a process of its own, fed one timed window at a time through a pipe.

Sharing jaxray's process, the two runtimes' thread pools and malloc heap interfere, and PyTorch's
DataLoader would fork its workers from a process where JAX's threads run (figures:
docs/performance.md). So the reference runs in this command started again with --torch_worker,
under the environment a PyTorch user has: the malloc settings the command was started with
(--reference_malloc=jaxray: jaxray's), none of the XLA options jaxray adds for itself, and JAX
kept off any accelerator. Windows still alternate with jaxray's, so a machine that slows down
slows both.
"""

import contextlib
import json
import os
import subprocess
import sys

from absl import app

from jaxray import runtime
from jaxray.bench import Options, kermany_root, reference, reference_kermany

_WORKER_LINE = "jaxray.bench worker: "
MEDMNIST = "resnet18_pneumoniamnist"  # the experiment whose recipe is MedMNIST's own loop
# XLA_FLAGS as the command was started, saved before jaxray.runtime adds its options (the saved
# value survives the runtime's restart of the process).
USER_XLA_FLAGS = "JAXRAY_BENCH_USER_XLA_FLAGS"


def keep_user_settings() -> None:
  """Saves the user's XLA_FLAGS for the reference's process; call it before
  `runtime.configure_process`."""
  os.environ.setdefault(USER_XLA_FLAGS, os.environ.get("XLA_FLAGS", ""))


def environment(options: Options) -> dict:
  """The reference process's environment: the user's malloc settings (or jaxray's, with
  --reference_malloc=jaxray), the user's XLA_FLAGS, and JAX on the CPU only (the process runs
  torch; on a GPU, JAX there would claim the memory jaxray's process has)."""
  env = runtime.user_environment() if options.reference_malloc == "user" else dict(os.environ)
  user_flags = env.pop(USER_XLA_FLAGS, None)
  if user_flags:
    env["XLA_FLAGS"] = user_flags
  elif user_flags is not None:
    env.pop("XLA_FLAGS", None)
  env["JAX_PLATFORMS"] = "cpu"
  return env


def say_reference_process(options: Options) -> dict:
  """Prints, and returns for the JSON file, the malloc settings of PyTorch's own process."""
  tunables = environment(options).get("GLIBC_TUNABLES", "")
  print(f"  (PyTorch in a process of its own; its GLIBC_TUNABLES: {tunables or '(none)'})",
        flush=True)
  return {"glibc_tunables": tunables}


class TorchProcess:
  """The reference's side of `job` ("train,SIZE,BATCH,STEM,STEPS", "pipeline,BATCH", "epoch" or
  "recipe") on `device`, one timed window per call. The process is this command again (same
  flags) with --torch_worker; what it prints besides its answers is passed on."""

  def __init__(self, options: Options, job, device):
    self.process = subprocess.Popen(
        [sys.executable, "-m", "jaxray.bench", *sys.argv[1:], f"--torch_worker={job}:{device}"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=environment(options))

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
def torch_reference(options: Options, job, torch_pair):
  """The `TorchProcess` for `job`, once it has built and warmed up its side (None without
  `torch_pair`: the figure is jaxray's alone); the process ends with the block."""
  if not torch_pair:
    yield None
    return
  with TorchProcess(options, job, reference.device(options, torch_pair[0])) as process:
    process.receive()  # "ready"
    yield process


def serve(options: Options) -> None:
  """--torch_worker: build the reference's side of the job, say so, then time one window per
  line of stdin; for "recipe", run it and send its figures."""
  def send(message):
    print(_WORKER_LINE + json.dumps(message, default=float), flush=True)

  job = options.torch_worker.rpartition(":")[0]
  if job == "recipe":
    if options.epoch_experiment == MEDMNIST:
      return send(reference.recipe(options))
    return send(reference_kermany.recipe(options))
  run = reference.runner(options, job)
  send("ready")
  for _ in sys.stdin:
    send(run())


def _check_recipe(options: Options) -> None:
  """A clear error for a --what=recipe that has no PyTorch recipe or no data to run on."""
  if options.epoch_experiment == MEDMNIST:
    return
  if not options.epoch_experiment:
    differs = ["no --epoch_experiment"]
  else:
    try:
      differs = reference_kermany.unsupported(reference_kermany.recipe_config(options))
    except ValueError as error:  # an unknown experiment or a bad --set
      raise app.UsageError(str(error)) from None
  if differs:
    raise app.UsageError(
        f"--what=recipe: no PyTorch recipe for --epoch_experiment={options.epoch_experiment} "
        f"({', '.join(differs)}). There is one for {MEDMNIST} (MedMNIST's loop) and for report "
        f"000's experiments on chest_xray without pretrained weights: "
        f"{', '.join(reference_kermany.experiments())}.")
  if options.data_dir:
    try:
      kermany_root(options.data_dir)
      return
    except FileNotFoundError:
      pass
  raise app.UsageError(f"--what=recipe --epoch_experiment={options.epoch_experiment} reads the "
                       f"raw JPEGs: --data_dir=DIR with DIR/chest_xray/{{train,val,test}}/ "
                       f"(got --data_dir={options.data_dir}).")


def bench_recipe(options: Options) -> dict:
  """The whole --epoch_experiment recipe in the PyTorch reference (`reference.recipe` for
  MedMNIST's, `reference_kermany.recipe` for report 000's), in a process of its own as for the
  other figures; its progress lines are passed on."""
  _check_recipe(options)
  torch_pair = reference.available(options)
  if not torch_pair:
    raise app.UsageError("--what=recipe runs the PyTorch reference: pip install torch torchvision")
  process = say_reference_process(options)
  with TorchProcess(options, "recipe", reference.device(options, torch_pair[0])) as recipe:
    return dict(recipe.receive(), torch_process=process)
