"""Report 000's recipe in PyTorch, as the report ran it: the figures to set beside jaxray's.

`python -m jaxray.bench --what=recipe --epoch_experiment=resnet18_scratch --data_dir=DIR` trains
an experiment of report 000 (the chest_xray dataset, no pretrained weights: resnet18_scratch,
resnet18_scratch_aug, resnet18_scratch_15ep) the report's way: torchvision's `ImageFolder` over
the raw JPEGs of `DIR/chest_xray/{train,val,test}` with the report's transforms (Resize to the
square size, the augmentations, Grayscale to 3 channels, ToTensor, Normalize), torchvision's
`resnet18(num_classes=2)`, `torch.optim.Adam`, `CrossEntropyLoss`, shuffled batches, and after
every epoch the training loss and accuracy, val accuracy and test accuracy, as report 000 plotted
them. Every number it trains with comes from the experiment's config (with --set), so both
libraries run one recipe. What jaxray adds is done alike on both sides: the epoch kept is the one
jaxray's rule picks on val (`config.selection`, the earliest on ties, never test), and its test
figures and the last epoch's are jaxray's metrics with bootstrap intervals.

A config that this recipe would not reproduce (another model or dataset, pretrained weights, a
schedule or class balancing the report did not use) is refused with the fields that differ, not
run as something else. As everywhere in the bench, torch is imported inside functions only.
"""

import functools
import os
import time

from jaxray.bench import Options, kermany_root

# Field -> the values this recipe runs as jaxray does; any other value is refused.
_REPRODUCED = {
    "dataset.name": ("chest_xray",),
    "dataset.config": ("",),  # normal vs pneumonia, the class folders
    "model.name": ("resnet18",),
    "model.stem": ("imagenet",),
    "model.conv_init": ("torchvision", "torch_default"),
    "model.pretrained.source": ("",),
    "model.pretrained.path": ("",),
    "model.head.hidden": ((),),
    "model.head.init": ("torch",),
    "model.loss": ("softmax",),
    "model.freeze_backbone": (False,),
    "model.dtype": ("float32",),
    "input.channels": (3,),
    "input.normalization.kind": ("mean_std",),
    "optimizer.name": ("adam", "adamw"),
    "optimizer.schedule": ("constant", "piecewise_constant"),
    "class_balance.loss_weights": ("none",),
    "class_balance.sampling": ("shuffle",),
}


def unsupported(config) -> list[str]:
  """'field=value' for each field of `config` that this recipe does not reproduce ([]: none)."""
  differs = []
  for field, allowed in _REPRODUCED.items():
    value = functools.reduce(getattr, field.split("."), config)
    if (tuple(value) if isinstance(value, (list, tuple)) else value) not in allowed:
      differs.append(f"{field}={value!r}")
  return differs


def experiments() -> list[str]:
  """The experiments of experiments/ whose recipe this module runs."""
  from jaxray import config as config_lib
  return [name for name in config_lib.available()
          if not unsupported(config_lib.load(name))]


def _transforms(config, train: bool):
  """Report 000's torchvision transforms at the config's size, augmentation and normalization;
  the augmentations on the training split only."""
  from torchvision import transforms
  size, augment, norm = config.input.image_size, config.augment, config.input.normalization
  steps = [transforms.Resize((size, size))]
  if train and augment.rotation_degrees:
    steps.append(transforms.RandomRotation(augment.rotation_degrees))
  if train and (augment.brightness or augment.contrast):
    steps.append(transforms.ColorJitter(brightness=augment.brightness, contrast=augment.contrast))
  if train and augment.hflip:
    steps.append(transforms.RandomHorizontalFlip())
  steps += [transforms.Grayscale(num_output_channels=config.input.channels),
            transforms.ToTensor(), transforms.Normalize(list(norm.mean), list(norm.std))]
  return transforms.Compose(steps)


def _splits(config, root, torch, torchvision) -> dict:
  """{"train", "val", "test"}: ImageFolders of the config's split folders under `root`. With
  `dataset.val_from_train.fraction` > 0, val is the same patients jaxray carves from train
  (jaxray.data.splits on the file names' patient ids), read without augmentation."""
  from jaxray.data import chest_xray, splits as splits_lib
  dataset = config.dataset

  def folder(split, train):
    images = torchvision.datasets.ImageFolder(os.path.join(root, split), _transforms(config, train))
    if tuple(images.classes) != chest_xray.CLASS_NAMES:
      raise ValueError(f"{os.path.join(root, split)} holds {images.classes}, not the class "
                       f"folders {list(chest_xray.CLASS_NAMES)}")
    return images

  train = folder(dataset.train_split, train=True)
  carve = dataset.val_from_train
  if carve.fraction > 0:
    patients = [chest_xray.patient_id(os.path.basename(path)) for path, _ in train.samples]
    train_indices, val_indices = splits_lib.patient_split(patients, train.targets,
                                                          carve.fraction, carve.seed)
    val = torch.utils.data.Subset(folder(dataset.train_split, train=False), val_indices)
    train = torch.utils.data.Subset(train, train_indices)
  else:
    val = folder(dataset.val_split, train=False)
  return {"train": train, "val": val, "test": folder(dataset.test_split, train=False)}


class _Report000:
  """Report 000's model, optimizer and loop: torchvision's resnet18(num_classes=2) (its own init;
  model.conv_init="torch_default" resets convolutions to nn.Conv2d's), PyTorch's Adam (weight
  decay as L2 on the gradient) or AdamW, the learning rate multiplied by optimizer.decay_factor
  after each of optimizer.decay_epochs, CrossEntropyLoss, and the epoch's remainder trained as a
  last, smaller batch unless input.drop_remainder."""

  def __init__(self, options, torch, torchvision, config, splits):
    from jaxray.bench import reference
    self.torch = torch
    torch.manual_seed(config.seed)
    self.model = torchvision.models.resnet18(num_classes=2)
    if config.model.conv_init == "torch_default":
      for module in self.model.modules():
        if isinstance(module, torch.nn.Conv2d):
          module.reset_parameters()
    self.device = reference.device(options, torch)
    self.model.to(self.device)
    opt = config.optimizer
    optimizer = torch.optim.Adam if opt.name == "adam" else torch.optim.AdamW
    self.opt = optimizer(self.model.parameters(), lr=opt.learning_rate, betas=(opt.b1, opt.b2),
                         eps=opt.eps, weight_decay=opt.weight_decay)
    milestones = list(opt.decay_epochs) if opt.schedule == "piecewise_constant" else []
    self.scheduler = torch.optim.lr_scheduler.MultiStepLR(self.opt, milestones=milestones,
                                                          gamma=opt.decay_factor)
    self.loss_fn = torch.nn.CrossEntropyLoss()
    loader = functools.partial(torch.utils.data.DataLoader, num_workers=options.workers)
    self.loaders = {
        "train": loader(splits["train"], batch_size=config.input.batch_size, shuffle=True,
                        drop_last=config.input.drop_remainder,
                        generator=torch.Generator().manual_seed(config.seed)),
        "val": loader(splits["val"], batch_size=config.input.eval_batch_size),
        "test": loader(splits["test"], batch_size=config.input.eval_batch_size)}

  def train_epoch(self) -> dict:
    """One epoch of training and the scheduler's step: the images seen, their mean loss and
    accuracy (of the model as it trained, as report 000 logged them)."""
    self.model.train()
    seen, total_loss, correct = 0, 0.0, 0
    for images, labels in self.loaders["train"]:
      images, labels = images.to(self.device), labels.to(self.device)
      self.opt.zero_grad()
      logits = self.model(images)
      loss = self.loss_fn(logits, labels)
      loss.backward()
      self.opt.step()
      seen += len(labels)
      total_loss += loss.item() * len(labels)
      correct += (logits.argmax(1) == labels).sum().item()
    self.scheduler.step()
    return {"train_images": seen, "train_loss": total_loss / seen,
            "train_accuracy": correct / seen}

  def predict(self, split) -> dict:
    """{"label", "probabilities", "loss"} of every image of `split`, in order, as numpy arrays
    (the shape of jaxray.evaluate.predictions.predict's answer)."""
    torch = self.torch
    self.model.eval()
    labels, probabilities, losses = [], [], []
    with torch.no_grad():
      for images, batch_labels in self.loaders[split]:
        logits = self.model(images.to(self.device)).cpu()
        probabilities.append(torch.softmax(logits, dim=1))
        losses.append(torch.nn.functional.cross_entropy(logits, batch_labels, reduction="none"))
        labels.append(batch_labels)
    return {"label": torch.cat(labels).numpy(), "probabilities": torch.cat(probabilities).numpy(),
            "loss": torch.cat(losses).numpy()}


def recipe_config(options: Options):
  """The --epoch_experiment's config with --set applied."""
  from jaxray import config as config_lib
  return config_lib.apply_overrides(config_lib.load(options.epoch_experiment), options.overrides)


def recipe(options: Options) -> dict:
  """The whole --epoch_experiment recipe in report 000's PyTorch loop, timed start to test
  figures. Test is evaluated after every epoch (report 000's curves), so the selected model's
  test figures are those of its epoch's pass: the weights that made them are not kept."""
  from jaxray.bench import reference
  from jaxray.data import chest_xray
  from jaxray.evaluate import metrics, predictions
  from jaxray.rundir import checkpoint
  started = time.perf_counter()
  torch, torchvision = reference.available(options)
  config = recipe_config(options)
  epochs = options.recipe_epochs or config.num_epochs
  root = kermany_root(options.data_dir)[1]
  splits = _splits(config, root, torch, torchvision)
  loop = _Report000(options, torch, torchvision, config, splits)
  name, rule = options.epoch_experiment, config.selection
  print(f"{name} in report 000's PyTorch loop, {epochs} epochs ({root}: "
        + ", ".join(f"{split} {len(images)}" for split, images in splits.items())
        + f" images; {config.input.image_size} px, batch {config.input.batch_size}):")
  print("  epoch  train loss  train acc  val loss  val acc  val AUC  test acc  seconds",
        flush=True)
  history, best, last = [], None, None
  for epoch in range(1, epochs + 1):
    epoch_started = time.perf_counter()
    record = {"epoch": epoch, **loop.train_epoch()}
    last = {split: loop.predict(split) for split in ("val", "test")}
    for split, prediction in last.items():
      record.update(predictions.summary(prediction, split))
    record["epoch_seconds"] = time.perf_counter() - epoch_started
    history.append(record)
    if best is None or (checkpoint.selection_key(record, rule.metric, rule.mode)
                        > checkpoint.selection_key(best["record"], rule.metric, rule.mode)):
      best = {"record": record, "test": last["test"]}
    print(f"  {epoch:5d}  {record['train_loss']:10.4f}  {record['train_accuracy']:9.3f}  "
          f"{record['val_loss']:8.4f}  {record['val_accuracy']:7.3f}  "
          f"{record.get('val_roc_auc', float('nan')):7.3f}  {record['test_accuracy']:8.3f}  "
          f"{record['epoch_seconds']:7.1f}", flush=True)

  def test_figures(prediction):
    return metrics.evaluate(prediction["label"], prediction["probabilities"],
                            list(chest_xray.CLASS_NAMES), seed=config.seed,
                            bootstrap_samples=config.evaluation.bootstrap_samples)

  selected = best["record"]["epoch"]
  figures = {"experiment": name, "epochs": epochs, "history": history,
             "selected_epoch": selected, "selection": rule.to_dict(),
             "data": {"root": root, **{f"{split}_images": len(images)
                                       for split, images in splits.items()}},
             "selected": test_figures(best["test"]), "config": config.to_dict()}
  figures["last"] = figures["selected"] if selected == epochs else test_figures(last["test"])
  figures["wall_seconds"] = time.perf_counter() - started
  reference.print_recipe(figures, selected, epochs, history,
                         f"{rule.mode} {rule.metric} on val, earliest on ties")
  return figures
