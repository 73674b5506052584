"""Reads PyTorch `.pth` state dicts into numpy without PyTorch and without running pickled code.

`torch.load` unpickles arbitrary objects, and unpickling can call any importable function (a
`.pth` can run `os.system` on load). A state dict needs very little of that machinery: an
OrderedDict, the tensor rebuild function and the typed storage classes. This reader maps exactly
those globals to numpy stand-ins and refuses every other one, so a malicious file fails with an
error instead of executing.

The file is the zip written by `torch.save` since PyTorch 1.6:
  <name>/data.pkl   the pickled object; tensors reference storages by persistent id
  <name>/data/<key> the raw little-endian bytes of each storage
  <name>/byteorder  "little" (or absent, meaning little)
"""

import collections
import io
import os
import pickle
import zipfile

import ml_dtypes
import numpy as np


class UnsafePickleError(pickle.UnpicklingError):
  """The file references a global that a state dict does not need; nothing was executed."""


class _StorageType:
  """Stands in for torch.FloatStorage & co.: only the element type matters."""

  def __init__(self, name: str, dtype):
    self.name = name
    self.dtype = np.dtype(dtype)

  def __repr__(self):
    return f"torch.{self.name}"


_STORAGE_TYPES = {
    name: _StorageType(name, dtype) for name, dtype in {
        "FloatStorage": np.float32,
        "DoubleStorage": np.float64,
        "HalfStorage": np.float16,
        "BFloat16Storage": ml_dtypes.bfloat16,
        "LongStorage": np.int64,
        "IntStorage": np.int32,
        "ShortStorage": np.int16,
        "CharStorage": np.int8,
        "ByteStorage": np.uint8,
        "BoolStorage": np.bool_,
    }.items()
}


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False,
                       backward_hooks=None, metadata=None):
  """torch._utils._rebuild_tensor_v2, as a copy of a strided view of the storage."""
  del requires_grad, backward_hooks, metadata  # autograd bookkeeping, meaningless here
  if not isinstance(storage, np.ndarray):
    raise pickle.UnpicklingError(f"tensor rebuilt from a non-storage {type(storage).__name__}")
  size, stride = tuple(int(s) for s in size), tuple(int(s) for s in stride)
  offset = int(storage_offset)
  if len(size) != len(stride) or any(s < 0 for s in size + stride) or offset < 0:
    raise pickle.UnpicklingError(f"bad tensor geometry size={size} stride={stride} "
                                 f"offset={offset}")
  if 0 in size:
    return np.zeros(size, storage.dtype)
  # Bounds-check before as_strided, which would otherwise read outside the buffer.
  last = offset + sum((n - 1) * s for n, s in zip(size, stride))
  if last >= storage.size:
    raise pickle.UnpicklingError(f"tensor of size {size}, stride {stride} at offset {offset} "
                                 f"overruns its storage of {storage.size} elements")
  itemsize = storage.dtype.itemsize
  view = np.lib.stride_tricks.as_strided(storage[offset:], shape=size,
                                         strides=tuple(s * itemsize for s in stride),
                                         writeable=False)
  return np.array(view)  # contiguous copy that owns its memory


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None):
  """torch._utils._rebuild_parameter: an nn.Parameter is just its data here."""
  del requires_grad, backward_hooks
  return data


# (module, name) -> the object it becomes. Everything else is refused.
_ALLOWED_GLOBALS = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    **{("torch", name): storage_type for name, storage_type in _STORAGE_TYPES.items()},
}


class _StateDictUnpickler(pickle.Unpickler):
  """An Unpickler whose only reachable globals are the entries of `_ALLOWED_GLOBALS`."""

  def __init__(self, file, load_storage):
    super().__init__(file)
    self._load_storage = load_storage

  def find_class(self, module, name):
    try:
      return _ALLOWED_GLOBALS[(module, name)]
    except KeyError:
      raise UnsafePickleError(
          f"refusing to load global {module}.{name}: a PyTorch state dict only needs tensors "
          "and OrderedDicts (is this a full pickled model, or a malicious file?)") from None

  def persistent_load(self, pid):
    if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"):
      raise pickle.UnpicklingError(f"unsupported persistent id {pid!r}")
    _, storage_type, key, _location, numel = pid
    if not isinstance(storage_type, _StorageType):
      raise pickle.UnpicklingError(f"unsupported storage type {storage_type!r}")
    return self._load_storage(str(key), storage_type.dtype, int(numel))


def load_state_dict(path: str | os.PathLike) -> dict[str, np.ndarray]:
  """The tensors of a `torch.save`d state dict, as numpy arrays keyed by parameter name.

  Raises:
    UnsafePickleError: the pickle references anything beyond tensors and OrderedDicts.
    ValueError: the file is not a zip-format `.pth`, or does not hold a flat dict of tensors.
  """
  path = os.fspath(path)
  if not zipfile.is_zipfile(path):
    raise ValueError(f"{path}: not a zip-format PyTorch file (torch.save since PyTorch 1.6 "
                     "writes zips; re-save older files with a current torch)")
  with zipfile.ZipFile(path) as archive:
    pickles = [n for n in archive.namelist() if n.endswith("/data.pkl") and n.count("/") == 1]
    if len(pickles) != 1:
      raise ValueError(f"{path}: expected one <name>/data.pkl in the zip, found {pickles}")
    prefix = pickles[0][: -len("data.pkl")]
    if prefix + "byteorder" in archive.namelist():
      byteorder = archive.read(prefix + "byteorder").decode().strip()
      if byteorder != "little":
        raise ValueError(f"{path}: byteorder {byteorder!r} is not supported")
    storages = {}

    def load_storage(key, dtype, numel):
      if key not in storages:
        entry = f"{prefix}data/{key}"
        try:
          raw = archive.read(entry)
        except KeyError:
          raise ValueError(f"{path}: storage {entry} is missing from the zip") from None
        if len(raw) < numel * dtype.itemsize:
          raise ValueError(f"{path}: storage {entry} has {len(raw)} bytes, expected "
                           f"{numel} x {dtype.itemsize}")
        storages[key] = np.frombuffer(raw, dtype=dtype, count=numel)
      if storages[key].dtype != dtype:
        raise ValueError(f"{path}: storage {key} is read both as {storages[key].dtype} and {dtype}")
      return storages[key]

    unpickler = _StateDictUnpickler(io.BytesIO(archive.read(pickles[0])), load_storage)
    obj = unpickler.load()
  if not isinstance(obj, dict):
    raise ValueError(f"{path}: holds a {type(obj).__name__}, not a state dict")
  if "state_dict" in obj and isinstance(obj["state_dict"], dict):
    obj = obj["state_dict"]  # common training-checkpoint wrapper
  tensors = {}
  for name, value in obj.items():
    if not isinstance(value, np.ndarray):
      raise ValueError(f"{path}: entry {name!r} is a {type(value).__name__}, not a tensor")
    tensors[str(name)] = value
  return tensors
