"""Where pretrained weights come from: canonical URLs, checksums, download and the local cache.

Each source is one published file per variant (with or without the classification top). It is
downloaded once, checked against its published checksum, converted to the Flax layout and cached
as `<cache>/<source>[_notop].npz` (`$JAXRAY_CACHE`, default ~/.cache/jaxray/weights). Later runs
read only the cache. Machines without internet get the original file some other way and either
point the run at it (--set model.pretrained.path=...) or convert it into the cache once with
`python -m jaxray.weights convert`.
"""

import dataclasses
import hashlib
import json
import os
import shutil
import tempfile
import urllib.error
import urllib.request
from typing import Callable

from absl import logging
from flax import nnx

from jaxray.models import mobilenet
from jaxray.models import resnet
from jaxray.models import vgg
from jaxray.weights import convert
from jaxray.weights import keras_h5
from jaxray.weights import pth


class WeightsUnavailableError(FileNotFoundError):
  """The weights are neither cached nor downloadable; the message says how to provide them."""


@dataclasses.dataclass(frozen=True)
class WeightFile:
  url: str
  # Digests of the published file: a sha256 prefix (torchvision names its files after the first
  # 8 hex digits) and/or the md5 that keras.applications checks.
  sha256_prefix: str = ""
  md5: str = ""
  # Whether the digest is published by the framework itself (a mismatch is then an error) or
  # comes from elsewhere (a mismatch is only reported).
  official_hash: bool = True

  @property
  def filename(self) -> str:
    return self.url.rsplit("/", 1)[-1]


@dataclasses.dataclass(frozen=True)
class Source:
  """One family of pretrained weights and how to turn its files into Flax weights."""
  name: str
  model_name: str  # the model.name these weights are for
  top: WeightFile  # the file with the ImageNet classification top
  notop: WeightFile | None  # the file without it (None: the top file serves both)
  read: Callable[[str], object]
  to_flax: Callable[[object], convert.Weights]
  # The ImageNet model with or without its top: what every file of the source must fit.
  reference_model: Callable[[bool], nnx.Module]

  def file_for(self, include_top: bool) -> WeightFile:
    return self.top if include_top or self.notop is None else self.notop

  def convert_file(self, path: str) -> convert.Weights:
    try:
      return self.to_flax(self.read(path))
    except convert.WeightsMismatchError as e:
      raise convert.WeightsMismatchError(f"{path}: {e}") from None

  def validate(self, weights: convert.Weights, origin: str) -> None:
    """Checks every key and shape against the reference model, without initialising it."""
    model = nnx.eval_shape(lambda: self.reference_model(weights.has_top))
    convert.assign(model, weights, origin)


_KERAS = "https://storage.googleapis.com/tensorflow/keras-applications"

SOURCES = {
    s.name: s for s in (
        Source(
            name="torchvision_resnet18", model_name="resnet18",
            # torchvision's file names end in the first 8 hex digits of their sha256.
            top=WeightFile("https://download.pytorch.org/models/resnet18-f37072fd.pth",
                           sha256_prefix="f37072fd"),
            notop=None, read=pth.load_state_dict, to_flax=convert.from_torchvision_resnet,
            reference_model=lambda top: resnet.resnet18(num_classes=1000 if top else None,
                                                        rngs=nnx.Rngs(0))),
        Source(
            name="keras_vgg16", model_name="vgg16",
            # md5 digests from keras.applications.vgg16.
            top=WeightFile(f"{_KERAS}/vgg16/vgg16_weights_tf_dim_ordering_tf_kernels.h5",
                           md5="64373286793e3c8b2b4e3219cbf3544b"),
            notop=WeightFile(f"{_KERAS}/vgg16/vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5",
                             md5="6d6bbae143d832006294945121d1f1fc"),
            read=keras_h5.read_weights, to_flax=convert.from_keras_vgg16,
            reference_model=lambda top: vgg.VGG16(include_top=top, image_size=224,
                                                  rngs=nnx.Rngs(0))),
        Source(
            name="keras_mobilenet", model_name="mobilenet",
            # keras.applications.mobilenet publishes no digest; these md5s are from a public
            # mirror of the same files, so a mismatch is reported but not fatal.
            top=WeightFile(f"{_KERAS}/mobilenet/mobilenet_1_0_224_tf.h5",
                           md5="03394917f9a9ea3362f46332a5b6a215", official_hash=False),
            notop=WeightFile(f"{_KERAS}/mobilenet/mobilenet_1_0_224_tf_no_top.h5",
                             md5="725ccbd03d61d7ced5b5c4cd17e7d527", official_hash=False),
            read=keras_h5.read_weights, to_flax=convert.from_keras_mobilenet,
            reference_model=lambda top: mobilenet.MobileNet(include_top=top, rngs=nnx.Rngs(0))),
    )
}


def get_source(name: str) -> Source:
  try:
    return SOURCES[name]
  except KeyError:
    raise ValueError(f"Unknown model.pretrained.source {name!r}; available: "
                     f"{sorted(SOURCES)} (or '' for random initialisation)") from None


def cache_dir() -> str:
  return os.environ.get("JAXRAY_CACHE") or os.path.join(
      os.path.expanduser("~"), ".cache", "jaxray", "weights")


def cache_path(source: Source, has_top: bool) -> str:
  suffix = "" if has_top or source.notop is None else "_notop"
  return os.path.join(cache_dir(), f"{source.name}{suffix}.npz")


def _digests(path: str) -> tuple[str, str]:
  sha256, md5 = hashlib.sha256(), hashlib.md5()
  with open(path, "rb") as f:
    for chunk in iter(lambda: f.read(1 << 20), b""):
      sha256.update(chunk)
      md5.update(chunk)
  return sha256.hexdigest(), md5.hexdigest()


def check_file(path: str, expected: WeightFile) -> str:
  """Verifies a download against its published digest; returns the file's sha256.

  Raises:
    ValueError: the digest differs (truncated or corrupted download, or a different file).
  """
  sha256, md5 = _digests(path)
  problems = []
  if expected.sha256_prefix and not sha256.startswith(expected.sha256_prefix):
    problems.append(f"sha256 {sha256} does not start with {expected.sha256_prefix}")
  if expected.md5 and md5 != expected.md5:
    problems.append(f"md5 {md5} != {expected.md5}")
  if problems:
    message = (f"{path}: checksum mismatch for {expected.url}: {'; '.join(problems)}")
    if expected.official_hash:
      raise ValueError(message + ". Delete the file and download it again.")
    logging.warning("%s (the expected digest is not an official one; using the file anyway)",
                    message)
  return sha256


def offline_message(source: Source, wanted: WeightFile, reason: str) -> str:
  return (
      f"Pretrained weights {source.name!r} are not cached in {cache_dir()} and could not be "
      f"downloaded ({reason}).\n"
      f"Download {wanted.url} on a machine with internet access, copy it here and either run "
      f"with\n  --set model.pretrained.path=/path/to/{wanted.filename}\n"
      f"or convert it into the cache once with\n"
      f"  python -m jaxray.weights convert --source={source.name} "
      f"--file=/path/to/{wanted.filename}")


def _urlopen(url: str, timeout: float):
  """Indirection so that tests can forbid the network."""
  return urllib.request.urlopen(url, timeout=timeout)


def download(source: Source, wanted: WeightFile, directory: str) -> str:
  """Downloads `wanted` into `directory` and checks its digest; returns the file's path."""
  if os.environ.get("JAXRAY_OFFLINE"):
    raise WeightsUnavailableError(offline_message(source, wanted, "JAXRAY_OFFLINE is set"))
  os.makedirs(directory, exist_ok=True)
  target = os.path.join(directory, wanted.filename)
  logging.info("Downloading %s", wanted.url)
  try:
    with _urlopen(wanted.url, timeout=60) as response, tempfile.NamedTemporaryFile(
        dir=directory, delete=False, suffix=".part") as out:
      shutil.copyfileobj(response, out)
  except (urllib.error.URLError, OSError) as e:
    raise WeightsUnavailableError(offline_message(source, wanted, str(e))) from None
  try:
    check_file(out.name, wanted)
  except ValueError:
    os.remove(out.name)
    raise
  os.replace(out.name, target)
  return target


def read_original(source: Source, path: str, check_digest: bool = True
                  ) -> tuple[convert.Weights, str]:
  """Converts an original weight file of `source`; returns the weights and the file's sha256.

  The digest is checked when the file has the canonical name of one of the source's files,
  which catches truncated downloads; other files (e.g. fine-tuned elsewhere) are only checked
  structurally, by the conversion and later by `convert.assign`.
  """
  name = os.path.basename(path)
  canonical = [f for f in (source.top, source.notop) if f is not None and f.filename == name]
  sha256 = check_file(path, canonical[0]) if (canonical and check_digest) else _digests(path)[0]
  return source.convert_file(path), sha256


def convert_and_cache(source: Source, path: str,
                      check_digest: bool = True) -> tuple[str, convert.Weights]:
  """Converts an original weight file of `source` into the cache; returns its path and weights.

  Only files that fit the source's ImageNet model are cached, so a bad file fails here, naming
  itself, rather than later in every run that reads the cache.
  """
  weights, sha256 = read_original(source, path, check_digest)
  source.validate(weights, path)
  target = cache_path(source, weights.has_top)
  os.makedirs(os.path.dirname(target), exist_ok=True)
  meta = json.dumps(dict(source=source.name, file=os.path.basename(path), sha256=sha256))
  partial = f"{target}.{os.getpid()}.part"  # atomic: readers never see half a file
  try:
    convert.save_npz(partial, weights, meta)
    os.replace(partial, target)
  finally:
    if os.path.exists(partial):
      os.remove(partial)
  return target, weights


def fetch(source: Source, include_top: bool) -> tuple[str, convert.Weights]:
  """Converted weights for a model with or without the top: cache, else download + convert.

  A cached file with the top also serves a model without one (the top is skipped).
  """
  candidates = [cache_path(source, include_top)]
  if not include_top:
    candidates.append(cache_path(source, True))
  for candidate in candidates:
    if os.path.exists(candidate):
      weights, _ = convert.load_npz(candidate)
      return candidate, weights
  wanted = source.file_for(include_top)
  with tempfile.TemporaryDirectory(dir=_mkdirs(cache_dir())) as tmp:
    original = download(source, wanted, tmp)
    target, weights = convert_and_cache(source, original, check_digest=False)  # checked already
  logging.info("Converted %s to %s", wanted.filename, target)
  return target, weights


def _mkdirs(path: str) -> str:
  os.makedirs(path, exist_ok=True)
  return path
