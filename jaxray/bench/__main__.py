"""python -m jaxray.bench [--what=train,pipeline,epoch,recipe] [--set key=value ...]: the flags,
and the process set up by the `runtime` section (jaxray/runtime.py) before JAX starts, as
`python -m jaxray.main` does, so the bench measures the process a training run has. What each
figure is: jaxray/bench/__init__.py.
"""

import json

from absl import app, flags

from jaxray.bench import Options

flags.DEFINE_list("what", ["train"], "Any of train, pipeline, epoch, recipe.")
flags.DEFINE_list("train_sizes", ["224x32", "28x128"],
                  "SIZExBATCH[:stem] for the train-step benchmark (stem: imagenet or cifar; "
                  "default imagenet).")
flags.DEFINE_integer("windows", 5, "Timed windows per figure.")
flags.DEFINE_integer("steps_per_window", 0,
                     "Train steps per window (0: enough that a window is not its "
                     "synchronization: on a CPU 2 steps at 224 px, 8 at 28 px; on an "
                     "accelerator 100 and 400).")
flags.DEFINE_integer("warmup", 2, "Untimed steps (after compilation) before timing.")
flags.DEFINE_string("raw_dir", None,
                    "Kermany-layout folder (holding chest_xray/{train,val,test}/ or "
                    "{train,val,test}/ directly) for the pipeline and epoch figures.")
flags.DEFINE_string(
    "epoch_experiment", None,
    "Epoch figure: run this experiment's recipe (its dataset from --data_dir) instead of report "
    "000's at 224 px. resnet18_pneumoniamnist also runs MedMNIST's PyTorch recipe as reference; "
    "--what=recipe also runs report 000's (resnet18_scratch, _aug, _15ep) in PyTorch.")
flags.DEFINE_integer("recipe_epochs", 0, "--what=recipe: epochs to run (0: the experiment's).")
flags.DEFINE_string("data_dir", None,
                    "The --epoch_experiment's raw data, as for python -m jaxray.main.")
flags.DEFINE_string("prepared_dir", None,
                    "Where the prepared datasets go (default: a temporary folder).")
flags.DEFINE_integer("workers", 2, "grain threads / DataLoader workers.")
flags.DEFINE_integer("pipeline_images", 480,
                     "Images per pipeline window (whole epochs of the train split, repeated).")
flags.DEFINE_bool("reference", True, "Also measure the PyTorch reference.")
flags.DEFINE_bool(
    "other_conv_grad", True,
    "On a CPU, also measure jaxray's train step with the other convolution weight-gradient path "
    "(runtime.im2col_weight_grad toggled), in the same run.")
flags.DEFINE_bool(
    "compare_winograd", True,
    "On a CPU, also measure jaxray's train step with its Winograd convolutions off "
    "(runtime.winograd=False), in the same run.")
flags.DEFINE_enum(
    "reference_malloc", "user", ["user", "jaxray"],
    "Malloc settings (GLIBC_TUNABLES) of the PyTorch reference's own process: 'user', "
    "those this command was started with, as PyTorch runs for its users; 'jaxray', the ones "
    "jaxray adds for itself (runtime.malloc_*, jaxray/runtime.py).")
flags.DEFINE_string(
    "torch_worker", None, "Internal: run the PyTorch reference's side (JOB:DEVICE, JOB one of "
    "train,SIZE,BATCH,STEM,STEPS / pipeline,BATCH / epoch / recipe) in this process, on "
    "stdin/stdout.")
flags.DEFINE_integer("torch_threads", 0, "torch.set_num_threads (0: default).")
flags.DEFINE_string("json", None, "Write every figure to this JSON file.")
flags.DEFINE_multi_string(
    "set", [], "Config override key.path=value for every config the bench builds; repeatable, "
    "e.g. --set runtime.winograd=False. The figure's size, batch and --workers win over it.")
FLAGS = flags.FLAGS
_FIGURES = ("train", "pipeline", "epoch", "recipe")


def _options() -> Options:
  values = {name: FLAGS[name].value for name in Options.__dataclass_fields__ if name in FLAGS}
  return Options(**values | {"what": tuple(FLAGS.what), "train_sizes": tuple(FLAGS.train_sizes),
                             "overrides": tuple(FLAGS.set)})


def main(argv):
  del argv
  options = _options()
  if options.torch_worker:  # the reference's process: no runtime settings, no restart
    from jaxray.bench import worker
    return worker.serve(options)
  for what in options.what:
    if what not in _FIGURES:
      raise app.UsageError(f"--what: unknown {what!r}; choose from {sorted(_FIGURES)}")
  from jaxray import runtime
  from jaxray.bench import base_config, worker
  try:
    section = base_config(options, 224, 32).runtime
    worker.keep_user_settings()
    # May start this process again, once, with malloc settings: before JAX and any work.
    runtime.configure_process(section, runtime.intended_platform(None))
  except ValueError as error:
    raise app.UsageError(str(error)) from None

  from jaxray.bench import jaxray_side
  platform = jaxray_side.describe_platform(options)
  results = {"platform": platform, "overrides": list(options.overrides)}
  benches = {"train": jaxray_side.bench_train, "pipeline": jaxray_side.bench_pipeline,
             "epoch": jaxray_side.bench_epoch, "recipe": worker.bench_recipe}
  for what in options.what:
    results[what] = benches[what](options)
  if options.json:
    with open(options.json, "w") as f:
      json.dump(results, f, indent=2, default=float)
    print(f"Wrote {options.json}")


if __name__ == "__main__":
  app.run(main)
