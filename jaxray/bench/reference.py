"""The PyTorch reference: every line of the bench that uses torch or torchvision, with
reference_kermany.py (report 000's whole recipe in PyTorch; MedMNIST's is here).

torch is imported inside functions only, when a figure runs, so `import jaxray.bench` and a
machine without PyTorch never pay for it. The runners here are built and timed in the reference's
own process (jaxray/bench/worker.py); the jaxray process only asks whether torch is there
(`available`) and which device it would use.
"""

import copy
import statistics
import time

from jaxray.bench import Options, epoch_setup, kermany_root

_WARNED = []  # the "skipped" message is printed once per process


def available(options: Options):
  """(torch, torchvision) or None, with the reason printed once."""
  if not options.reference:
    return None
  try:
    import torch
    import torchvision
  except ImportError as error:
    if not _WARNED:
      _WARNED.append(error)
      print(f"PyTorch reference skipped: torch/torchvision not importable ({error}). "
            f"`pip install torch torchvision` to measure it.")
    return None
  if options.torch_threads:
    torch.set_num_threads(options.torch_threads)
  return torch, torchvision


def device(options: Options, torch):
  """The reference runs where jaxray does: on the GPU when JAX has one and torch sees CUDA."""
  if options.torch_worker:  # the reference's own process: its parent chose the device
    return torch.device(options.torch_worker.rpartition(":")[2])
  import jax
  if jax.default_backend() == "gpu" and torch.cuda.is_available():
    return torch.device("cuda")
  return torch.device("cpu")


def platform(options: Options) -> dict:
  """What the platform line and the JSON file say about PyTorch ({} without it)."""
  torch_pair = available(options)
  if not torch_pair:
    return {}
  torch = torch_pair[0]
  return {"torch": torch.__version__, "torch_threads": torch.get_num_threads(),
          "torch_device": str(device(options, torch))}


def _sync(torch, where):
  """Waits for queued CUDA work, so a timed window ends when the reference's work does."""
  if where.type == "cuda":
    torch.cuda.synchronize(where)


def runner(options: Options, job: str):
  """fn() timing one window of `job` ("train,SIZE,BATCH,STEM,STEPS", "pipeline,BATCH" or
  "epoch"), built and warmed up."""
  torch, torchvision = available(options)
  kind, *spec = job.split(",")
  if kind == "train":
    size, batch, stem, steps = spec
    return _train_runner(options, torch, torchvision, int(size), int(batch), stem, int(steps))
  if kind == "pipeline":
    return _pipeline_runner(options, torch, torchvision, int(spec[0]))
  config, splits, _, _ = epoch_setup(options)
  return _medmnist_epoch_runner(options, torch, torchvision, config, splits["train"],
                                splits["val"])


# ------------------------------------------------------------------------------------------------
# (a) train step, (b) input pipeline


def _train_runner(options, torch, torchvision, size, batch, stem, steps):
  model = torchvision.models.resnet18(num_classes=2)
  if stem == "cifar":  # MedMNIST's ResNet-18 (28): 3x3 stride-1 stem, no max-pool
    model.conv1 = torch.nn.Conv2d(3, 64, 3, 1, 1, bias=False)
    model.maxpool = torch.nn.Identity()
  where = device(options, torch)
  model.to(where).train()
  opt = torch.optim.Adam(model.parameters(), lr=1e-3)
  loss_fn = torch.nn.CrossEntropyLoss()
  generator = torch.Generator().manual_seed(0)
  images = torch.randn(batch, 3, size, size, generator=generator).to(where)
  labels = torch.randint(0, 2, (batch,), generator=generator).to(where)

  def window(n):
    started = time.perf_counter()
    for _ in range(n):
      opt.zero_grad(set_to_none=True)
      loss = loss_fn(model(images), labels)
      loss.backward()
      opt.step()
    _sync(torch, where)
    return batch * n, time.perf_counter() - started

  window(1 + options.warmup)
  return lambda: window(steps)


def _pipeline_runner(options, torch, torchvision, batch_size):
  """torchvision's `ImageFolder` + `DataLoader` over the raw JPEGs of --raw_dir with report 000's
  training transforms and --workers worker processes: one window of >= --pipeline_images
  images (whole epochs) per call, after one to warm the file cache."""
  import os
  from torchvision import transforms
  _, root = kermany_root(options.raw_dir)
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
                                       num_workers=options.workers, drop_last=True)

  def window():
    count, started = 0, time.perf_counter()
    while count < options.pipeline_images:
      for images, _ in loader:
        count += images.shape[0]
    return count, time.perf_counter() - started

  window()
  return window


# ------------------------------------------------------------------------------------------------
# (c) epoch and the whole recipe: MedMNIST's loop


class _MedMNIST:
  """MedMNIST v2's PyTorch recipe (MedMNIST/experiments, train_and_eval_pytorch.py): its ResNet-18
  (28) (torchvision's blocks, 1 input channel, 3x3 stride-1 stem, no max-pool), Adam 1e-3,
  MultiStepLR (x0.1 at 50 and 75, from the config), CrossEntropyLoss, shuffled batches of 128
  with the last partial one kept, a pass over val after every epoch; convolutions keep
  nn.Conv2d's default init, as MedMNIST's network does. Images are normalized once up front and
  served from a TensorDataset, cheaper than MedMNIST's per-image PIL transforms: the reference
  gets the faster input path."""

  def __init__(self, options, torch, torchvision, config, train):
    self.torch = torch
    torch.manual_seed(config.seed)
    self.model = torchvision.models.resnet18(num_classes=2)
    self.model.conv1 = torch.nn.Conv2d(1, 64, 3, 1, 1, bias=False)
    self.model.maxpool = torch.nn.Identity()
    for module in self.model.modules():  # MedMNIST's network keeps nn.Conv2d's own init
      if isinstance(module, torch.nn.Conv2d):
        module.reset_parameters()
    self.device = device(options, torch)
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


def _medmnist_epoch_runner(options, torch, torchvision, config, train, val):
  reference = _MedMNIST(options, torch, torchvision, config, train)
  val_loader = reference.loader(val, config.input.eval_batch_size)

  def one_epoch():
    started = time.perf_counter()
    seen, _ = reference.train_epoch()
    train_seconds = time.perf_counter() - started
    reference.predict(val_loader)
    return seen, train_seconds, time.perf_counter() - started

  return one_epoch


def recipe(options: Options) -> dict:
  """The whole --epoch_experiment recipe in the PyTorch reference, timed start to test figures.

  The figure to set beside `python -m jaxray.main`'s wall time for the same experiment: MedMNIST's
  loop for every epoch of the recipe (train, then val AUC), the epoch with the best val AUC kept
  (strictly better, as MedMNIST's code does), then the selected and the last model on test, with
  jaxray's own metrics and bootstrap intervals.
  """
  from jaxray.evaluate import metrics
  started = time.perf_counter()
  torch, torchvision = available(options)
  config, splits, class_names, name = epoch_setup(options)
  epochs = options.recipe_epochs or config.num_epochs
  reference = _MedMNIST(options, torch, torchvision, config, splits["train"])
  val_loader = reference.loader(splits["val"], config.input.eval_batch_size)
  test_loader = reference.loader(splits["test"], config.input.eval_batch_size)
  print(f"{name} in MedMNIST's PyTorch loop, {epochs} epochs:", flush=True)
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
  figures = {"experiment": name, "epochs": epochs, "history": history,
             "selected_epoch": best["epoch"]}
  figures["last"] = metrics.evaluate(*reference.predict(test_loader), list(class_names))
  reference.model.load_state_dict(best["state"])
  figures["selected"] = metrics.evaluate(*reference.predict(test_loader), list(class_names))
  figures["wall_seconds"] = time.perf_counter() - started
  print_recipe(figures, best["epoch"], epochs, history, "best val AUC")
  return figures


def print_recipe(figures, selected, epochs, history, rule):
  """A recipe's wall time and test figures, of the model selected by `rule` and the last one."""
  minutes, seconds = divmod(round(figures["wall_seconds"]), 60)
  print(f"  wall time, start to test figures: {minutes // 60} h {minutes % 60} min {seconds} s; "
        f"median epoch {statistics.median(h['epoch_seconds'] for h in history):.1f} s")
  for label, key in ((f"selected (epoch {selected}, {rule})", "selected"),
                     (f"last (epoch {epochs})", "last")):
    result = figures[key]
    m, ci = result["metrics"], result["ci95"]
    print(f"  test, {label}: ACC {m['accuracy']:.3f} [{ci['accuracy'][0]:.3f}, "
          f"{ci['accuracy'][1]:.3f}], AUC {m['roc_auc']:.3f} [{ci['roc_auc'][0]:.3f}, "
          f"{ci['roc_auc'][1]:.3f}], confusion matrix {result['confusion_matrix']}", flush=True)
