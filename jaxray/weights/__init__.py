"""ImageNet weights from torchvision and keras.applications, ported to the Flax models.

  load_pretrained(model, config.model)  # fills model.backbone per config.model.pretrained
  preprocessing(source)                 # the input normalisation those weights expect

Modules: `pth` (safe PyTorch reader), `keras_h5` (Keras HDF5 reader), `convert` (layout
mapping and checked loading), `hub` (URLs, checksums, download, cache), `__main__` (CLI).
"""

from jaxray.weights.convert import WeightsMismatchError
from jaxray.weights.hub import SOURCES, WeightsUnavailableError, cache_dir
from jaxray.weights.pretrained import load_pretrained, preprocessing

__all__ = ["load_pretrained", "preprocessing", "SOURCES", "cache_dir", "WeightsMismatchError",
           "WeightsUnavailableError"]
