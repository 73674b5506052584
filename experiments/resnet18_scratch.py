"""Report 000, Task 1.1 §3.3: ResNet-18 from scratch on Kermany chest X-ray, no augmentation.

Methods (report 000): torchvision ResNet-18, random initialisation, the final fully connected
layer replaced by a 2-way one; images resized to 224x224, grayscale replicated to 3 channels and
normalized with the dataset's mean 0.5303 / std 0.1944; Adam, learning rate 1e-3, batch 32,
cross-entropy, 5 epochs, training batches reshuffled every epoch. Test accuracy was tracked
after every epoch.

  python -m jaxray.main --experiment=resnet18_scratch --data_dir=~/data   # holds chest_xray/

Report: test accuracy 0.83 after 5 epochs (training accuracy 0.96).
Differences, on purpose: the checkpoint reported is chosen on validation, never on test, and the
last partial training batch of each epoch is dropped (16 of 5216 images, different every epoch).
"""

import ml_collections


def get_config():
  config = ml_collections.ConfigDict()
  config.seed = 0

  config.dataset = dict(name="chest_xray", config="", prepared_dir="",
                        train_split="train", val_split="val", test_split="test")
  config.input = dict(
      image_size=224,
      channels=3,  # grayscale replicated, as torchvision's 3-channel ResNet expects
      batch_size=32,
      eval_batch_size=32,
      normalization=dict(kind="mean_std", mean=(0.5303,) * 3, std=(0.1944,) * 3),
      drop_remainder=False,  # the epoch's remainder is a last, smaller batch, as in PyTorch
      num_threads=2,  # grain reader threads
  )
  config.augment = dict(rotation_degrees=0.0, hflip=False, brightness=0.0, contrast=0.0)

  config.model = dict(
      name="resnet18",
      stem="imagenet",
      conv_init="torchvision",  # Kaiming normal, fan-out, as torchvision.models.resnet18 does
      head=dict(hidden=(), dropout=(), init="torch"),  # fc replaced by Linear(512, 2)
      loss="softmax",
      freeze_backbone=False,
      dtype="float32",
      pretrained=dict(source="", path=""),  # "" = random init
  )

  config.optimizer = dict(name="adam", learning_rate=1e-3, b1=0.9, b2=0.999, eps=1e-8,
                          weight_decay=0.0, schedule="constant", decay_epochs=(),
                          decay_factor=0.1)
  config.num_epochs = 5

  # Which checkpoint is evaluated on test: the best epoch by this validation metric.
  config.selection = dict(metric="val_accuracy", mode="max")
  config.track_test_per_epoch = True  # report 000 plotted test accuracy every epoch
  config.evaluation = dict(bootstrap_samples=1000, failure_cases=8, tsne_max_train=1000)

  # The report's own figures, for the side-by-side in report.md.
  config.reference = dict(
      report="000 (Task 1.1, §3.3)",
      accuracy=0.83,
      notes="Test accuracy after epoch 5 of 5; the report gives no other test metric for "
            "this run.",
  )
  return config
