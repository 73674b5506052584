"""Report 000, Task 1.1 §4-5: ResNet-18 from scratch with augmentation and weight decay.

Methods: as `resnet18_scratch`, plus random rotation within ±25 degrees, color jitter
(brightness and contrast; hue and saturation do nothing to a grayscale image), random horizontal
flip, and weight decay 1e-4 in PyTorch's Adam (L2 added to the gradient, not AdamW). 5 epochs.

  python -m jaxray.main --experiment=resnet18_scratch_aug --data_dir=~/data

Report: test accuracy 0.855 at epoch 5; its metrics table ("sample run of best model"):
accuracy .806, specificity .487, precision .764, recall .997, F1 .865; confusion matrix
[[114, 120], [1, 389]].
"""

from experiments import resnet18_scratch


def get_config():
  config = resnet18_scratch.get_config()
  config.augment.update(dict(rotation_degrees=25.0, hflip=True, brightness=0.2, contrast=0.2))
  config.optimizer.weight_decay = 1e-4  # PyTorch Adam(weight_decay=1e-4): L2 on the gradient
  config.reference.update(
      report="000 (Task 1.1, §4-5)",
      accuracy=0.806, specificity=0.487, precision=0.764, sensitivity=0.997, f1=0.865,
      notes="Headline test accuracy 0.855 at epoch 5; the other figures are the report's "
            "metrics table (accuracy .806 there). Confusion matrix [[114, 120], [1, 389]].",
  )
  return config
