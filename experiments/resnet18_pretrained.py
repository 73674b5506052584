"""Report 000, Task 1.2: ResNet-18 fine-tuned from torchvision's ImageNet weights.

Methods: as `resnet18_scratch_aug` (same augmentation: rotation ±25°, color jitter, horizontal
flip; 224 px; batch 32; 5 epochs; fc replaced by a 2-way layer), but starting from torchvision's
ImageNet weights (resnet18-f37072fd.pth), with the learning rate lowered tenfold to 1e-4 and no
weight decay. Inputs use the normalization the ImageNet weights were trained with (ImageNet
mean/std on [0, 1] RGB) rather than the dataset's, as torchvision's pretrained models expect.

  python -m jaxray.main --experiment=resnet18_pretrained --data_dir=~/data
  # offline: --set model.pretrained.path=/path/to/resnet18-f37072fd.pth

Report: best test accuracy 0.858 (epoch 1 of 5); its metrics table: accuracy .822, specificity
.529, precision .779, recall .997, F1 .875; confusion matrix [[124, 110], [1, 389]].
"""

from experiments import resnet18_scratch_aug
from jaxray import weights


def get_config():
  config = resnet18_scratch_aug.get_config()
  config.model.pretrained = dict(source="torchvision_resnet18", path="")
  config.input.normalization = weights.preprocessing("torchvision_resnet18")
  config.optimizer.learning_rate = 1e-4
  config.optimizer.weight_decay = 0.0
  config.reference = dict(
      report="000 (Task 1.2)",
      accuracy=0.822, specificity=0.529, precision=0.779, sensitivity=0.997, f1=0.875,
      notes="Headline test accuracy 0.858 (epoch 1, chosen on test); the other figures are the "
            "report's metrics table (accuracy .822 there). Confusion matrix [[124, 110], [1, 389]].",
  )
  return config
