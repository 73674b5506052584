"""Runs one experiment over seeds, cross-validation folds and a grid of config values.

  python launch/sweep.py --experiment=resnet18_scratch --seeds=0,1,2 --workdir=runs/scratch \
      -- --data_dir=~/data
  python launch/sweep.py --experiment=resnet18_scratch --folds=5 --workdir=runs/scratch_cv \
      --executor=slurm --slurm_partition=gpu --gpus_per_node=1 -- --data_dir=~/data
  python launch/sweep.py --experiment=demo --grid=optimizer.learning_rate=1e-3,1e-4 \
      --workdir=runs/demo_lr

Each job is the same `python -m jaxray.main` command a single run uses, with `--set seed=K`,
`--set dataset.cross_validation.fold=F` or the grid's values added, into its own workdir:
WORKDIR/seed_K[/fold_F][/key=value]. Everything after `--` goes to every job. A job that stops
(a preempted SLURM task, a crash) is resumed by running the sweep again: each job resumes or
reports its run as `jaxray.main` does.

Executors: `sequential` (one after another in this process's machine, the default), `local`
(submitit's local executor: jobs as background processes, as the tests run it) and `slurm` (a
SLURM job array through submitit, one task per job; `--slurm_*` set the resources). Compare the
runs afterwards with `python -m jaxray.compare WORKDIR/seed_*` (the seeds' mean, sd and range), or
pool the folds' held-out predictions with `python -m jaxray.compare --pool=val WORKDIR/fold_*`.
"""

import argparse
import itertools
import pathlib
import subprocess
import sys


def jobs(args, extra) -> list[tuple[pathlib.Path, list[str]]]:
  """(workdir, command) of every job: the product of seeds, folds and grid values."""
  seeds = [int(s) for s in args.seeds.split(",")] if args.seeds else [None]
  folds = list(range(args.folds)) if args.folds else [None]
  grid = [[(key, value) for value in values.split(",")]
          for key, _, values in (g.partition("=") for g in args.grid)]
  result = []
  for seed, fold, *values in itertools.product(seeds, folds, *grid):
    parts, sets = [], []
    if seed is not None:
      parts.append(f"seed_{seed}")
      sets.append(f"seed={seed}")
    if fold is not None:
      parts.append(f"fold_{fold}")
      sets += [f"dataset.cross_validation.folds={args.folds}",
               f"dataset.cross_validation.fold={fold}",
               f"dataset.cross_validation.seed={args.fold_seed}"]
    for key, value in values:
      parts.append(f"{key}={value}")
      sets.append(f"{key}={value}")
    workdir = pathlib.Path(args.workdir).joinpath(*parts)
    command = [sys.executable, "-m", "jaxray.main", f"--experiment={args.experiment}",
               f"--workdir={workdir}", *(f"--set={s}" for s in sets), *extra]
    result.append((workdir, command))
  return result


def submit(args, commands: list[list[str]]) -> list:
  """Submits the commands as one job array through submitit; returns its jobs."""
  import submitit
  folder = pathlib.Path(args.workdir) / "submitit" / "%j"
  executor = (submitit.LocalExecutor(folder=folder) if args.executor == "local"
              else submitit.AutoExecutor(folder=folder, cluster="slurm"))
  parameters = dict(timeout_min=args.timeout_min)
  if args.executor == "slurm":
    parameters.update(slurm_partition=args.slurm_partition, gpus_per_node=args.gpus_per_node,
                      cpus_per_task=args.cpus_per_task, slurm_array_parallelism=args.parallel)
    parameters = {k: v for k, v in parameters.items() if v is not None}
  executor.update_parameters(**parameters)
  # submitit's CommandFunction: the job runs the command and fails if it fails, with no module
  # of this script to import on the node.
  with executor.batch():
    submitted = [executor.submit(submitit.helpers.CommandFunction(command))
                 for command in commands]
  return submitted


def main(argv=None) -> int:
  argv = sys.argv[1:] if argv is None else argv
  extra = argv[argv.index("--") + 1:] if "--" in argv else []
  own = argv[:argv.index("--")] if "--" in argv else argv
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--experiment", required=True)
  parser.add_argument("--workdir", required=True, help="Parent folder of the jobs' workdirs.")
  parser.add_argument("--seeds", default="", help="Comma-separated seeds, e.g. 0,1,2.")
  parser.add_argument("--folds", type=int, default=0, help="k-fold cross-validation by patient.")
  parser.add_argument("--fold_seed", type=int, default=0, help="Seed of the fold assignment.")
  parser.add_argument("--grid", action="append", default=[],
                      help="key=v1,v2: one job per value (repeatable; the product is run).")
  parser.add_argument("--executor", choices=("sequential", "local", "slurm"),
                      default="sequential")
  parser.add_argument("--timeout_min", type=int, default=24 * 60)
  parser.add_argument("--slurm_partition", default=None)
  parser.add_argument("--gpus_per_node", type=int, default=None)
  parser.add_argument("--cpus_per_task", type=int, default=None)
  parser.add_argument("--parallel", type=int, default=None,
                      help="SLURM: at most this many array tasks at once.")
  args = parser.parse_args(own)
  if args.folds == 1 or args.folds < 0:
    parser.error("--folds must be 0 (no cross-validation) or at least 2")
  planned = jobs(args, extra)
  if len(planned) == 1 and not (args.seeds or args.folds or args.grid):
    parser.error("name --seeds, --folds or --grid: a single run is python -m jaxray.main")
  print(f"{len(planned)} job(s): " + ", ".join(str(w) for w, _ in planned), flush=True)
  if args.executor == "sequential":
    failed = [w for w, command in planned if subprocess.run(command).returncode]
  else:
    submitted = submit(args, [command for _, command in planned])
    print("submitted: " + ", ".join(job.job_id for job in submitted), flush=True)
    failed = []
    for (workdir, _), job in zip(planned, submitted):
      try:
        job.result()
      except Exception as error:  # the task's own exception, re-raised by submitit
        print(f"{workdir}: {error}", file=sys.stderr)
        failed.append(workdir)
  if failed:
    print(f"{len(failed)} job(s) failed: " + ", ".join(map(str, failed))
          + ". Run the same sweep again to resume them.", file=sys.stderr)
    return 1
  return 0


if __name__ == "__main__":
  sys.exit(main())
