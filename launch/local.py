"""Runs one jaxray command as P cooperating processes on this machine (multi-host, simulated).

  python launch/local.py --num_processes=2 --devices_per_process=2 --platform=cpu -- \
      --experiment=demo --workdir=runs/demo_2x2

Everything after `--` goes to `python -m jaxray.main`; the launcher adds `--distributed
--coordinator_address=localhost:PORT --num_processes=P --process_id=i` and gives every process
its own devices:

  --platform=cpu  each process gets `devices_per_process` virtual CPU devices
                  (XLA_FLAGS=--xla_force_host_platform_device_count=D);
  --platform=gpu  process i sees GPUs i*D .. i*D+D-1 of the machine's (or of --gpus)
                  (CUDA_VISIBLE_DEVICES).

Process 0 prints to this terminal; process i > 0 writes to LOG_DIR/process_i.log. If one process
fails, the launcher stops the others (they would wait for it forever) and exits with its code.
It is how the tests run jaxray on 2 processes, and a way to try a multi-host setup on one machine
before taking it to SLURM (launch/slurm.sbatch).
"""

import argparse
import os
import pathlib
import signal
import socket
import subprocess
import sys
import tempfile
import time

REPO = pathlib.Path(__file__).resolve().parent.parent


def free_port() -> int:
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


def visible_gpus(requested: str | None) -> list[str]:
  if requested:
    return requested.split(",")
  if os.environ.get("CUDA_VISIBLE_DEVICES"):
    return os.environ["CUDA_VISIBLE_DEVICES"].split(",")
  try:
    out = subprocess.run(["nvidia-smi", "--query-gpu=index", "--format=csv,noheader"],
                         capture_output=True, text=True, check=True).stdout
  except (OSError, subprocess.CalledProcessError):
    raise SystemExit("--platform=gpu: no GPU found (nvidia-smi failed); pass --gpus=0,1,...")
  return [line.strip() for line in out.splitlines() if line.strip()]


def process_env(index: int, args, gpus: list[str]) -> dict:
  env = dict(os.environ)
  env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
  if args.platform == "cpu":
    flag = f"--xla_force_host_platform_device_count={args.devices_per_process}"
    env["XLA_FLAGS"] = " ".join(filter(None, [env.get("XLA_FLAGS"), flag]))
    env["JAX_PLATFORMS"] = "cpu"
  elif args.platform == "gpu":
    mine = gpus[index * args.devices_per_process:(index + 1) * args.devices_per_process]
    env["CUDA_VISIBLE_DEVICES"] = ",".join(mine)
  return env


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--num_processes", type=int, required=True)
  parser.add_argument("--devices_per_process", type=int, default=1)
  parser.add_argument("--platform", choices=["cpu", "gpu"], default="cpu")
  parser.add_argument("--gpus", default=None, help="GPU ids to split between the processes "
                      "(default: CUDA_VISIBLE_DEVICES, else every GPU nvidia-smi lists).")
  parser.add_argument("--port", type=int, default=None, help="Coordinator port (default: a "
                      "free one).")
  parser.add_argument("--log_dir", default=None, help="Where processes 1.. log (default: a "
                      "new temporary folder).")
  parser.add_argument("main_args", nargs=argparse.REMAINDER,
                      help="-- then the arguments of jaxray.main")
  args = parser.parse_args(argv)
  main_args = args.main_args[1:] if args.main_args[:1] == ["--"] else args.main_args
  processes = args.num_processes
  if processes < 1 or args.devices_per_process < 1:
    parser.error("--num_processes and --devices_per_process must be at least 1")
  gpus = visible_gpus(args.gpus) if args.platform == "gpu" else []
  if args.platform == "gpu" and len(gpus) < processes * args.devices_per_process:
    parser.error(f"{processes} x {args.devices_per_process} GPUs requested, {len(gpus)} visible")
  port = args.port or free_port()
  log_dir = pathlib.Path(args.log_dir or tempfile.mkdtemp(prefix="jaxray_launch_"))
  log_dir.mkdir(parents=True, exist_ok=True)

  children, logs = [], []
  for index in range(processes):
    command = [sys.executable, "-m", "jaxray.main", *main_args, f"--platform={args.platform}",
               "--distributed", f"--coordinator_address=localhost:{port}",
               f"--num_processes={processes}", f"--process_id={index}"]
    if index == 0:
      output = None  # the terminal
      print(f"launch: {processes} processes x {args.devices_per_process} {args.platform} "
            f"device(s), coordinator localhost:{port}; logs of processes 1.. in {log_dir}",
            file=sys.stderr, flush=True)
    else:
      output = open(log_dir / f"process_{index}.log", "w")
      logs.append(output)
    children.append(subprocess.Popen(command, env=process_env(index, args, gpus), cwd=REPO,
                                     stdout=output, stderr=subprocess.STDOUT if output else None))

  code = 0
  try:
    running = set(range(processes))
    while running:
      for index in sorted(running):
        status = children[index].poll()
        if status is None:
          continue
        running.discard(index)
        if status and not code:
          code = status
          print(f"launch: process {index} exited with {status}; stopping the others"
                + (f" (its log: {log_dir / f'process_{index}.log'})" if index else ""),
                file=sys.stderr, flush=True)
          for other in running:
            children[other].terminate()
      time.sleep(0.2)
  except KeyboardInterrupt:
    for child in children:
      if child.poll() is None:
        child.send_signal(signal.SIGINT)
    for child in children:
      child.wait()
    code = 130
  finally:
    for log in logs:
      log.close()
  return code


if __name__ == "__main__":
  sys.exit(main())
