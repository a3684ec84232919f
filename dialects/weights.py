"""The weight store: where the tensors named by ``@symbol`` in mmfc IR live.

IR never carries weights inline. A module names its store with one attribute, a path relative to
the ``.mlir`` file::

    builtin.module attributes {mmfc.weights = "tiny.weights.safetensors"} { ... }

and ops name tensors by symbol (``@model.layers.0.attn.i_proj.weight``): a symbol name *is* the
tensor name in the store. This module is the one API through which the driver, the passes (plugins
included) and the backends read and write weights. It needs numpy and the safetensors file format
only (never torch): numpy has no bfloat16, so bf16 tensors are upcast to float32 when read.

Stores (all answer ``names()``, ``in``, ``get(name)``, ``info(name)``, ``shape_dtype(name)``,
``derive()``, ``save(path)``):

* :class:`MemoryStore`: a dict of numpy arrays, optionally layered over a base store. The only
  writable kind (``put``). A model built in Python starts with one; ``derive()`` returns one.
* :class:`FileStore`: one safetensors file written by :meth:`WeightStore.save`, read lazily through
  ``mmap``. Its header may record a base store (``__metadata__["mmfc.base"]``, a path relative to the
  file) whose tensors it shows under its own.
* :class:`CheckpointStore`: a checkpoint directory (``config.json`` + ``model.safetensors`` or a
  sharded ``model.safetensors.index.json``), read lazily in place: float masters are never copied
  into a second float store. Pre-quantized checkpoints (int8 trits + ``X.weight_scale``) read the
  same way.

Saving (one design, two modes):

* ``save(path)`` (layered, the default) writes the tensors held in memory (this store's own and its
  in-memory bases' down to the first store on disk) into one safetensors file, and records that
  on-disk store as the file's base. Nothing already on disk is copied or touched.
* ``save(path, standalone=True, names=...)`` materializes every visible tensor (or only ``names``)
  into one self-contained file with no base (compiled artifacts). Tensors read from disk are copied
  byte for byte, so a bf16 embedding stays bf16.

Both write a temporary file beside the target and ``os.replace`` it into place (atomic: a failure
leaves the previous file, or none, and no partial file; or within a caller's ``atomic_files`` block,
landing with its other files). A save never writes over a file the saved store reads from (a pass
never mutates its input).

Streaming (a 2.7B model is compiled in about the memory of its packed trits): ``blocks(name)`` reads a
tensor a block of rows at a time, ``release(name)`` drops a mapped tensor's pages from the process
once the reader is done, a :class:`MemoryStore` may hold trits packed (``put_packed_trits``), and a
save produces, writes and releases one tensor after another on the worker threads, checksumming the
file as it goes.

Module attribute (``STORE_ATTR``) values:

* a relative path (POSIX separators, ``..`` allowed), relative to the directory of the ``.mlir``
  file; for IR read from stdin or printed to stdout, relative to the current directory;
* an absolute path;
* ``"<memory>"`` (``MEMORY``): the store lives in memory in the process that printed the IR (the
  path is elided, so printed IR is deterministic). Such text cannot be resolved from a file.

A path may name a store file or a checkpoint directory. With ``root=`` (e.g. a compiled artifact's
folder), a path, and every base a store file records, must stay inside ``root`` (symlinks resolved):
a path that escapes is a :class:`StorePathError`.

In-process, a module is bound to its store object (a weak registry keyed by the ``ModuleOp``; a
clone is not bound). The driver calls :func:`set_mlir_path` after parsing and
:func:`write_module_store` before printing; a pass calls :func:`resolve_store` to read and
:func:`bind` to attach the store it derived. Parsing and verifying never touch the store: files are
opened only when :func:`resolve_store` (or :func:`open_store`) is called.

Every problem a user can cause is a :class:`WeightStoreError` (a ``UserError``) naming the store path
and, where there is one, the tensor. Misuse of the API by code (``put`` into a read-only store, an
array dtype with no safetensors code) raises ``TypeError``/``ValueError``.
"""

from __future__ import annotations

import hashlib
import json
import math
import mmap
import os
import struct
import weakref
from abc import ABC, abstractmethod
from collections.abc import Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from xdsl.dialects.builtin import ModuleOp, StringAttr

from mmfc.dialects import dtypes
from mmfc.dialects import numerics as nm
from mmfc.dialects.diagnostics import UserError
from mmfc.dialects.files import AtomicFiles, atomic_files
from mmfc.dialects.parallel import map_in_order, worker_count
from mmfc.dialects.progress import progress

__all__ = [
    "STORE_ATTR",
    "MEMORY",
    "STORE_SUFFIX",
    "BASE_KEY",
    "WeightStoreError",
    "StoreNotFoundError",
    "TensorNotFoundError",
    "CorruptStoreError",
    "StorePathError",
    "TensorInfo",
    "WeightStore",
    "MemoryStore",
    "FileStore",
    "CheckpointStore",
    "open_store",
    "default_store_path",
    "get_store_attr",
    "set_store_attr",
    "relocate_value",
    "relocate",
    "set_mlir_path",
    "resolve_store",
    "bind",
    "write_module_store",
]

#: module attribute naming the weight store
STORE_ATTR = "mmfc.weights"
#: attribute value of a store that lives only in memory (the path elided from printed IR)
MEMORY = "<memory>"
#: ``OUT.mlir`` keeps its new weights in ``OUT`` + this suffix
STORE_SUFFIX = ".weights.safetensors"
#: safetensors ``__metadata__`` key of a layered store file: its base, relative to the file
BASE_KEY = "mmfc.base"

CHECKPOINT_SINGLE = "model.safetensors"
CHECKPOINT_INDEX = "model.safetensors.index.json"
#: a pre-quantized checkpoint's ``X.weight_scale``: the float32 scale of the trits ``X.weight``
SCALE_TENSOR_SUFFIX = ".weight_scale"

# the safetensors library refuses bigger headers; so do we (a corrupt length would allocate GBs)
_MAX_HEADER_BYTES = 100_000_000
# a chain of layered stores longer than this is a cycle or a mistake
_MAX_LAYERS = 256


# ------------------------------------------------------------------------------------------ errors


class WeightStoreError(UserError):
    """A weight store that cannot be used; the message names the store path and the tensor."""


class StoreNotFoundError(WeightStoreError):
    """The store file or checkpoint directory named by IR (or by a store's base) does not exist."""


class TensorNotFoundError(WeightStoreError):
    """A tensor name that no layer of the store holds."""


class CorruptStoreError(WeightStoreError):
    """A store file that is not valid safetensors, or a tensor that cannot be read as an array."""


class StorePathError(WeightStoreError):
    """A store path that mmfc does not accept: empty, not a string, or escaping the allowed root."""


# ------------------------------------------------------------------------------------------ tensors


@dataclass(frozen=True)
class TensorInfo:
    """What a store knows of a tensor without reading its data.

    ``shape``: the tensor's shape; ``stored``: the safetensors dtype code on disk (``"BF16"``, ``"I8"``,
    ...; for an in-memory array the code it will be saved as); ``dtype``: the numpy dtype ``get``
    returns (float32 for ``BF16``), None when mmfc cannot read it as an array (float8 kinds).
    """

    shape: tuple[int, ...]
    stored: str
    dtype: np.dtype | None


def _code_of(dtype: np.dtype) -> str:
    return dtypes.of_numpy(dtype).code


def _bf16_to_f32(raw: np.ndarray) -> np.ndarray:
    """bfloat16 bit patterns (uint8 bytes, little-endian) -> float32: bf16 is the high half of f32."""
    bits = raw.view("<u2").astype("<u4")
    bits <<= np.uint32(16)
    return bits.view("<f4")


@dataclass(frozen=True)
class _Entry:
    """One tensor of a safetensors file: its dtype code, shape and absolute byte range in the file."""

    name: str
    stored: str
    shape: tuple[int, ...]
    begin: int
    end: int


class _SafetensorsFile:
    """A parsed safetensors header plus a read-only memory map of the whole file.

    Only the header is read; tensor bytes are paged in by the OS when an array view is first touched.
    Header and map come from one open file, so a file replaced later (``os.replace``) cannot pair
    an old header with new bytes.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            with open(path, "rb") as f:
                size = os.fstat(f.fileno()).st_size
                prefix = f.read(8)
                if len(prefix) < 8:
                    raise CorruptStoreError(f"{path}: not a safetensors file (shorter than 8 bytes)")
                (header_len,) = struct.unpack("<Q", prefix)
                if header_len > _MAX_HEADER_BYTES or 8 + header_len > size:
                    raise CorruptStoreError(
                        f"{path}: not a safetensors file (header length {header_len} does not fit a "
                        f"{size}-byte file)"
                    )
                header_bytes = f.read(header_len)
                self._mmap = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
                self._map = np.frombuffer(self._mmap, dtype=np.uint8)
        except FileNotFoundError:
            raise StoreNotFoundError(f"{path}: weight store not found") from None
        except IsADirectoryError:
            raise StoreNotFoundError(f"{path}: is a directory, not a safetensors file") from None
        except (OSError, ValueError) as exc:
            raise WeightStoreError(
                f"{path}: cannot read weight store ({getattr(exc, 'strerror', None) or exc})"
            ) from None
        try:
            header = json.loads(header_bytes.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise CorruptStoreError(f"{path}: not a safetensors file (header is not JSON: {exc})") from None
        if not isinstance(header, dict):
            raise CorruptStoreError(f"{path}: not a safetensors file (header is not a JSON object)")
        data_start = 8 + header_len
        data_len = size - data_start
        metadata = header.pop("__metadata__", None) or {}
        if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
            raise CorruptStoreError(f"{path}: __metadata__ must map strings to strings")
        self.metadata: dict[str, str] = metadata
        self.entries: dict[str, _Entry] = {}
        for name, spec in header.items():
            self.entries[name] = self._entry(name, spec, data_start, data_len)

    def _entry(self, name: str, spec: Any, data_start: int, data_len: int) -> _Entry:
        where = f"{self.path}: tensor {name}"
        try:
            stored = spec["dtype"]
            shape = tuple(spec["shape"])
            begin, end = spec["data_offsets"]
        except (TypeError, KeyError, ValueError):
            raise CorruptStoreError(f"{where}: header entry needs dtype, shape and data_offsets") from None
        if not isinstance(stored, str):
            raise CorruptStoreError(f"{where}: dtype {stored!r} is not a string")
        if not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape):
            raise CorruptStoreError(f"{where}: shape {list(shape)} is not a list of sizes")
        if not all(isinstance(o, int) and not isinstance(o, bool) for o in (begin, end)):
            raise CorruptStoreError(f"{where}: data_offsets are not integers")
        if not 0 <= begin <= end <= data_len:
            raise CorruptStoreError(
                f"{where}: data_offsets [{begin}, {end}] lie outside the {data_len}-byte data section "
                "(truncated file?)"
            )
        known = dtypes.by_code(stored)
        if known is not None and end - begin != math.prod(shape) * known.itemsize:
            raise CorruptStoreError(
                f"{where}: {end - begin} bytes do not hold a {stored} tensor of shape {list(shape)}"
            )
        return _Entry(name, stored, shape, data_start + begin, data_start + end)

    def raw(self, name: str) -> np.ndarray:
        """The tensor's bytes as a read-only uint8 view of the memory map (no copy)."""
        entry = self.entries[name]
        return self._map[entry.begin : entry.end]

    def release(self, name: str) -> None:
        """Drop the pages of ``name``'s bytes from this process (they stay in the OS page cache and
        fault back in when touched again): reading a large checkpoint tensor by tensor then holds
        one tensor's pages at a time, not the whole file's."""
        advice = getattr(mmap, "MADV_DONTNEED", None)
        entry = self.entries[name]
        if advice is None or entry.end <= entry.begin:
            return
        start = entry.begin - entry.begin % mmap.PAGESIZE
        try:
            self._mmap.madvise(advice, start, entry.end - start)
        except (OSError, ValueError):  # only a hint
            pass


def _info(entry: _Entry) -> TensorInfo:
    known = dtypes.by_code(entry.stored)
    return TensorInfo(entry.shape, entry.stored, None if known is None else known.read_as)


# ------------------------------------------------------------------------------------------ stores


class WeightStore(ABC):
    """A set of named tensors, possibly layered over a base store (a layer's names hide the base's).

    Reading is lazy: ``names``, ``info`` and ``shape_dtype`` never read tensor data; ``get`` reads one
    tensor. Arrays returned by ``get`` are read-only. Subclasses provide the own layer
    (``_own_names``, ``_own_info``, ``_own_get``, ``_own_raw``); this class walks the layers.
    """

    #: the file or directory this store reads (None for a store in memory)
    path: Path | None = None
    #: the store this one is layered over (its tensors are visible unless overridden)
    base: WeightStore | None = None

    # ---- own layer (subclasses)

    @abstractmethod
    def _own_names(self) -> Collection[str]: ...

    @abstractmethod
    def _own_info(self, name: str) -> TensorInfo | None: ...

    @abstractmethod
    def _own_get(self, name: str) -> np.ndarray: ...

    @abstractmethod
    def _own_raw(self, name: str) -> tuple[str, tuple[int, ...], np.ndarray]:
        """(safetensors code, shape, C-contiguous array whose bytes are the tensor's, little-endian)."""

    def describe(self) -> str:
        """How errors name this store: its path, or ``<memory>``."""
        return str(self.path) if self.path is not None else MEMORY

    # ---- layered reading

    def layers(self) -> Iterator[WeightStore]:
        """This store, then its base, its base's base, ..."""
        store: WeightStore | None = self
        while store is not None:
            yield store
            store = store.base

    def own_names(self) -> list[str]:
        """Names this layer holds itself (sorted)."""
        return sorted(self._own_names())

    def names(self) -> list[str]:
        """Every visible tensor name, over all layers (sorted)."""
        seen: set[str] = set()
        for layer in self.layers():
            seen.update(layer._own_names())
        return sorted(seen)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self._owner(name) is not None

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def _owner(self, name: str) -> WeightStore | None:
        for layer in self.layers():
            if layer._own_info(name) is not None:
                return layer
        return None

    def _require(self, name: str) -> WeightStore:
        owner = self._owner(name)
        if owner is None:
            chain = [layer.describe() for layer in self.layers()]
            searched = f" (layered over {', '.join(chain[1:])})" if len(chain) > 1 else ""
            raise TensorNotFoundError(f"{chain[0]}: no tensor {name} in the weight store{searched}")
        return owner

    def info(self, name: str) -> TensorInfo:
        """Shape and dtypes of ``name`` without reading its data."""
        info = self._require(name)._own_info(name)
        assert info is not None
        return info

    def shape_dtype(self, name: str) -> tuple[tuple[int, ...], np.dtype]:
        """``(shape, dtype)`` of what ``get(name)`` returns, without reading the data."""
        info = self.info(name)
        if info.dtype is None:
            raise CorruptStoreError(
                f"{self._require(name).describe()}: tensor {name} has dtype {info.stored}, which mmfc "
                "cannot read as an array"
            )
        return info.shape, info.dtype

    def get(self, name: str) -> np.ndarray:
        """The tensor ``name`` as a read-only numpy array (bf16 upcast to float32), read lazily."""
        return self._require(name)._own_get(name)

    def __getitem__(self, name: str) -> np.ndarray:
        return self.get(name)

    def blocks(self, name: str) -> Iterator[np.ndarray]:
        """The tensor ``name`` as ``get`` returns it, in the blocks of leading-axis rows of
        ``numerics.row_blocks`` (one block for a 0-d or 1-d tensor): a reader streaming a large
        tensor holds one block at a time (a bf16 block is upcast on its own). Read-only arrays."""
        return self._require(name)._own_blocks(name)

    def release(self, name: str) -> None:
        """A hint that the caller is done with ``name`` for now: a store reading a file drops the
        tensor's pages from this process (so streaming a checkpoint holds one tensor's pages, not
        the whole file's) and any upcast copy it caches. Reading it again works as before."""
        owner = self._owner(name)
        if owner is not None:
            owner._own_release(name)

    def packed_trits(self, name: str, fmt: str) -> np.ndarray:
        """The int8 trits ``name`` (``[N, K]``) packed in ``fmt`` (``numerics.pack``): the bytes as
        held when a layer keeps them packed in that format (no work), else packed block by block.
        Raises ``ValueError`` when the tensor is not 2-D trits in {-1, 0, +1}."""
        return self._require(name)._own_packed_trits(name, fmt)

    # ---- reading by blocks (subclasses may do better)

    def _own_blocks(self, name: str) -> Iterator[np.ndarray]:
        array = self._own_get(name)
        for rows in nm.row_blocks(array.shape):
            yield array[rows]

    def _own_release(self, name: str) -> None:
        pass

    def _own_nbytes(self, name: str) -> int:
        info = self._own_info(name)
        assert info is not None
        return math.prod(info.shape) * _itemsize(info.stored)

    def _own_packed_trits(self, name: str, fmt: str) -> np.ndarray:
        info = self._own_info(name)
        assert info is not None
        if info.dtype != np.dtype(np.int8) or len(info.shape) != 2:
            raise ValueError(f"{name}: expected int8 trits [N, K], got {info.stored} of shape {list(info.shape)}")
        n, k = info.shape
        out = np.empty((n, nm.packed_row_bytes(k, fmt)), np.uint8)
        start = 0
        for block in self._own_blocks(name):
            out[start : start + block.shape[0]] = nm.pack(block, fmt)
            start += block.shape[0]
        return out

    # ---- writing

    def put(self, name: str, array: np.ndarray, *, copy: bool = True) -> None:
        """Add or override a tensor. Only :class:`MemoryStore` is writable: call ``derive()`` first."""
        raise TypeError(f"weight store {self.describe()} is read-only: put() into store.derive() instead")

    def derive(self) -> MemoryStore:
        """A new, empty, writable store layered over this one (this one is never modified)."""
        return MemoryStore(base=self)

    def on_disk(self) -> WeightStore | None:
        """The store on disk that holds exactly what this one shows, or None if some tensor is in memory.

        A store read from disk is its own answer; an empty in-memory layer answers for its base (an
        empty in-memory store with no base answers None too: see :meth:`is_empty`).
        """
        return self if self.path is not None else None

    def is_empty(self) -> bool:
        """True when no layer holds any tensor."""
        return all(not layer._own_names() for layer in self.layers())

    def _files(self) -> set[str]:
        """Real paths of every file any layer reads (a save must never replace one of them)."""
        out: set[str] = set()
        for layer in self.layers():
            out.update(layer._own_files())
        return out

    def _own_files(self) -> set[str]:
        return set()

    def save(
        self,
        path: str | Path,
        *,
        standalone: bool = False,
        names: Iterable[str] | None = None,
        files: AtomicFiles | None = None,
    ) -> FileStore:
        """Write this store to the safetensors file ``path`` atomically; return the store read back.

        Layered (default): the tensors held in memory (this layer and its in-memory bases, the upper
        layer winning), plus ``__metadata__["mmfc.base"]`` naming the first on-disk base by a path
        relative to ``path``'s directory (absolute if no relative path exists). ``standalone=True``:
        every visible tensor, or only ``names``, copied into one file with no base. The parent
        directory must exist. Raises :class:`WeightStoreError` when ``path`` is a file this store
        reads (saving would mutate the input) and :class:`TensorNotFoundError` for an unknown name.

        Tensors are streamed: each is produced (read from its file, or unpacked), written and
        released in turn, several produced ahead on the worker threads (``dialects.parallel``), so
        memory holds a few tensors, not the file. ``files``: write within that
        :func:`~mmfc.dialects.files.atomic_files` block, so the file lands together with the block's
        other files (the returned store reads the temporary file until then). The returned store's
        ``sha256`` is the written file's checksum (hex).
        """
        target = Path(path)
        if os.path.realpath(target) in self._files():
            raise WeightStoreError(
                f"{target}: refusing to overwrite a file that weight store {self.describe()} reads "
                "(a pass never mutates its input; write the new store elsewhere)"
            )
        if names is not None and not standalone:
            raise ValueError("names= selects tensors of a standalone save only")
        metadata: dict[str, str] = {"format": "np"}
        owners: dict[str, WeightStore] = {}
        if standalone:
            wanted = self.names() if names is None else list(dict.fromkeys(names))
            for name in wanted:
                owners[name] = self._require(name)
        else:
            base: WeightStore | None = None
            for layer in self.layers():
                if layer.path is not None:
                    base = layer
                    break
                for name in layer._own_names():
                    owners.setdefault(name, layer)
            if base is not None:
                metadata[BASE_KEY] = _relative_or_absolute(base.path, target.parent)  # type: ignore[arg-type]
        written, digest = _write_safetensors(target, owners, metadata, files)
        saved = FileStore(written)
        if written != target:
            saved._reads_for(target)
        saved.sha256 = digest
        return saved

    @staticmethod
    def open(path: str | Path, *, root: str | Path | None = None) -> WeightStore:
        """Open the store at ``path`` (same as :func:`open_store`)."""
        return open_store(path, root=root)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.describe()!r}, {len(list(self._own_names()))} own tensors)"


class MemoryStore(WeightStore):
    """A writable store of numpy arrays in memory, optionally layered over ``base``.

    ``put`` copies the array (``copy=False`` takes it as it is: the caller promises not to mutate it)
    and keeps it read-only. ``put_packed_trits`` holds int8 trits packed (4 or 5 per byte, as
    ``numerics.pack`` lays them out): the store shows them as the int8 ``[N, K]`` tensor they are
    (unpacked when read or saved), while a large model's trits take a quarter of the memory, and
    :meth:`~WeightStore.packed_trits` in the same format hands the bytes out as they are. A layer is a
    live view of its base; a pass never writes into its input, so the base does not change under it.
    """

    def __init__(
        self,
        tensors: Mapping[str, np.ndarray] | None = None,
        *,
        base: WeightStore | None = None,
        copy: bool = True,
        label: str = MEMORY,
    ) -> None:
        self.base = base
        self.label = label
        self._tensors: dict[str, np.ndarray] = {}
        self._packed: dict[str, tuple[np.ndarray, tuple[int, int], str]] = {}
        self._unpacked: weakref.WeakValueDictionary[str, np.ndarray] = weakref.WeakValueDictionary()
        for name, array in (tensors or {}).items():
            self.put(name, array, copy=copy)

    @staticmethod
    def _check_name(name: str) -> None:
        if not isinstance(name, str) or not name or name == "__metadata__":
            raise ValueError(
                f"a tensor name must be a non-empty string other than __metadata__, got {name!r}"
            )

    def put(self, name: str, array: np.ndarray, *, copy: bool = True) -> None:
        """Add or override tensor ``name`` (any dtype safetensors stores: bool, (u)int8..64, f16/32/64)."""
        self._check_name(name)
        arr = np.asarray(array)
        _code_of(arr.dtype)
        if arr.dtype.byteorder == ">":
            arr = arr.astype(arr.dtype.newbyteorder("<"))
        elif copy or not arr.flags.c_contiguous:
            arr = np.array(arr, order="C", copy=True)
        else:
            arr = arr.view()
        arr.flags.writeable = False
        self._packed.pop(name, None)
        self._tensors[name] = arr

    def put_packed_trits(self, name: str, packed: np.ndarray, shape: tuple[int, int], fmt: str) -> None:
        """Add or override the int8 trits ``name`` of ``shape`` ``[N, K]``, given packed in ``fmt``
        (``uint8 [N, packed_row_bytes(K, fmt)]``, taken as it is: do not change it afterwards)."""
        self._check_name(name)
        n, k = shape
        p = np.asarray(packed)
        if p.dtype != np.uint8 or p.shape != (n, nm.packed_row_bytes(k, fmt)):
            raise ValueError(f"{name}: packed trits of [{n}, {k}] in {fmt} are uint8 [{n}, "
                             f"{nm.packed_row_bytes(k, fmt)}], got {p.dtype} {list(p.shape)}")
        p = p.view()
        p.flags.writeable = False
        self._tensors.pop(name, None)
        self._unpacked.pop(name, None)
        self._packed[name] = (p, (n, k), fmt)

    def describe(self) -> str:
        return self.label

    def on_disk(self) -> WeightStore | None:
        if self._tensors or self._packed or self.base is None:
            return None
        return self.base.on_disk()

    def _own_names(self) -> Collection[str]:
        if not self._packed:
            return self._tensors.keys()
        return self._tensors.keys() | self._packed.keys()

    def _own_info(self, name: str) -> TensorInfo | None:
        arr = self._tensors.get(name)
        if arr is not None:
            return TensorInfo(arr.shape, _code_of(arr.dtype), arr.dtype)
        held = self._packed.get(name)
        return None if held is None else TensorInfo(held[1], "I8", np.dtype(np.int8))

    def _own_get(self, name: str) -> np.ndarray:
        arr = self._tensors.get(name)
        if arr is not None:
            return arr
        arr = self._unpacked.get(name)
        if arr is None:
            packed, (_, k), fmt = self._packed[name]
            arr = nm.unpack(packed, k, fmt)
            arr.flags.writeable = False
            self._unpacked[name] = arr
        return arr

    def _own_blocks(self, name: str) -> Iterator[np.ndarray]:
        if name in self._tensors:
            yield from super()._own_blocks(name)
            return
        packed, (n, k), fmt = self._packed[name]
        for rows in nm.row_blocks((n, k)):
            block = nm.unpack(packed[rows], k, fmt)
            block.flags.writeable = False
            yield block

    def _own_packed_trits(self, name: str, fmt: str) -> np.ndarray:
        held = self._packed.get(name)
        if held is not None and held[2] == fmt:
            return held[0]
        return super()._own_packed_trits(name, fmt)

    def _own_release(self, name: str) -> None:
        self._unpacked.pop(name, None)

    def _own_raw(self, name: str) -> tuple[str, tuple[int, ...], np.ndarray]:
        arr = self._own_get(name)
        return _code_of(arr.dtype), arr.shape, arr


class _MappedStore(WeightStore):
    """Shared reading of tensors that live in safetensors files (views cached, upcasts weakly cached)."""

    def __init__(self) -> None:
        self._entries: dict[str, tuple[_SafetensorsFile, _Entry]] = {}
        self._views: dict[str, np.ndarray] = {}
        # an upcast copy is kept while someone holds it: no second float copy of a big checkpoint
        self._upcasts: weakref.WeakValueDictionary[str, np.ndarray] = weakref.WeakValueDictionary()

    def _own_names(self) -> Collection[str]:
        return self._entries.keys()

    def _own_info(self, name: str) -> TensorInfo | None:
        found = self._entries.get(name)
        return None if found is None else _info(found[1])

    def _own_files(self) -> set[str]:
        return {os.path.realpath(f.path) for f, _ in self._entries.values()}

    def _own_get(self, name: str) -> np.ndarray:
        view = self._views.get(name)
        if view is not None:
            return view
        upcast = self._upcasts.get(name)
        if upcast is not None:
            return upcast
        file, entry = self._entries[name]
        raw = file.raw(name)
        if entry.stored == "BF16":
            arr = _bf16_to_f32(raw).reshape(entry.shape)
            arr.flags.writeable = False
            self._upcasts[name] = arr
            return arr
        known = dtypes.by_code(entry.stored)
        dtype = None if known is None else known.numpy
        if dtype is None:
            raise CorruptStoreError(
                f"{file.path}: tensor {name} has dtype {entry.stored}, which mmfc cannot read as an array"
            )
        arr = raw.view(dtype).reshape(entry.shape)
        self._views[name] = arr
        return arr

    def _own_raw(self, name: str) -> tuple[str, tuple[int, ...], np.ndarray]:
        file, entry = self._entries[name]
        return entry.stored, entry.shape, file.raw(name)

    def _own_blocks(self, name: str) -> Iterator[np.ndarray]:
        file, entry = self._entries[name]
        if entry.stored != "BF16":
            yield from super()._own_blocks(name)  # views of the map: no copy
            return
        raw = file.raw(name)
        row_bytes = 2 * max(1, math.prod(entry.shape[1:])) if len(entry.shape) >= 2 else 0
        for rows in nm.row_blocks(entry.shape):
            if len(entry.shape) < 2:
                block = _bf16_to_f32(raw).reshape(entry.shape)
            else:
                block = _bf16_to_f32(raw[rows.start * row_bytes : rows.stop * row_bytes])
                block = block.reshape((rows.stop - rows.start, *entry.shape[1:]))
            block.flags.writeable = False
            yield block

    def _own_release(self, name: str) -> None:
        self._upcasts.pop(name, None)
        file, _ = self._entries[name]
        file.release(name)

    def _own_nbytes(self, name: str) -> int:
        _, entry = self._entries[name]
        return entry.end - entry.begin


class FileStore(_MappedStore):
    """One safetensors store file, read-only; its base (``__metadata__["mmfc.base"]``) is opened too.

    Opening reads the headers only (of this file and of every base). ``root``: every base must lie
    inside it (see :func:`open_store`).
    """

    def __init__(
        self, path: str | Path, *, root: str | Path | None = None, _seen: tuple[str, ...] = ()
    ) -> None:
        super().__init__()
        self.path = Path(path)
        #: the sha256 of the file when this store object wrote it (``save``), else None
        self.sha256: str | None = None
        file = _SafetensorsFile(self.path)
        self.metadata = dict(file.metadata)
        self._entries = {name: (file, entry) for name, entry in file.entries.items()}
        base_value = file.metadata.get(BASE_KEY)
        if base_value is None:
            return
        seen = (*_seen, os.path.realpath(self.path))
        if len(seen) > _MAX_LAYERS:
            raise CorruptStoreError(f"{self.path}: more than {_MAX_LAYERS} layered stores")
        if not base_value or "\0" in base_value:
            raise CorruptStoreError(f"{self.path}: {BASE_KEY} {base_value!r} is not a path")
        base_path = Path(os.path.normpath(self.path.parent / base_value))
        if os.path.realpath(base_path) in seen:
            raise CorruptStoreError(f"{self.path}: layered stores form a cycle through {base_path}")
        where = f"{self.path}: layered over {base_value}"
        if root is not None:
            _check_inside(base_path, Path(root), where)
        if not base_path.exists():
            raise StoreNotFoundError(f"{where} ({base_path}), which does not exist")
        self.base = open_store(base_path, root=root, _seen=seen)

    def _reads_for(self, path: Path) -> None:
        """Name this store by ``path``, the name its file gets when a pending write commits."""
        self.path = path
        for file, _ in self._entries.values():
            file.path = path


class CheckpointStore(_MappedStore):
    """A checkpoint directory read in place: ``model.safetensors`` or the shards of
    ``model.safetensors.index.json`` (tensors in a shard but missing from the index are visible too,
    as the checkpoint loader sees them). ``config.json`` is optional for the store; :attr:`config`
    reads it on demand. A pre-quantized ``X.weight_scale`` stored with shape ``[1]`` reads as the
    scalar (shape ``[]``) it is.
    """

    def __init__(self, directory: str | Path) -> None:
        super().__init__()
        self.path = Path(directory)
        if not self.path.is_dir():
            if self.path.exists():
                raise StoreNotFoundError(f"{self.path}: not a checkpoint directory")
            raise StoreNotFoundError(f"{self.path}: checkpoint directory not found")
        index = self.path / CHECKPOINT_INDEX
        single = self.path / CHECKPOINT_SINGLE
        if index.is_file():
            self._read_index(index)
        elif single.is_file():
            file = _SafetensorsFile(single)
            self._entries = {name: (file, entry) for name, entry in file.entries.items()}
        else:
            pickles = sorted(p.name for p in (*self.path.glob("*.bin"), *self.path.glob("*.pt")))
            hint = (
                f" (only pickle weights {', '.join(pickles)}; mmfc reads safetensors only)" if pickles else ""
            )
            raise StoreNotFoundError(f"{self.path}: no {CHECKPOINT_SINGLE} or {CHECKPOINT_INDEX}{hint}")
        # a pre-quantized scale stored as [1] is the scalar it means (the checkpoint loader reads it so)
        for name, (file, entry) in self._entries.items():
            if name.endswith(SCALE_TENSOR_SUFFIX) and entry.shape == (1,):
                self._entries[name] = (file, replace(entry, shape=()))

    def _read_index(self, index: Path) -> None:
        try:
            weight_map = json.loads(index.read_text())["weight_map"]
            if not isinstance(weight_map, dict) or not all(isinstance(v, str) for v in weight_map.values()):
                raise TypeError("weight_map does not map names to file names")
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as exc:
            raise CorruptStoreError(f"{index}: not a safetensors index ({exc})") from None
        shards: dict[str, _SafetensorsFile] = {}
        for name, fname in weight_map.items():
            shard_path = self.path / fname
            # checked lexically: hub caches symlink shards to blobs outside the snapshot folder
            if os.path.isabs(fname) or os.path.normpath(fname).split(os.sep)[0] == "..":
                raise StorePathError(f"{index}: tensor {name} points outside the checkpoint ({fname})")
            if fname not in shards:
                if not shard_path.is_file():
                    raise StoreNotFoundError(f"{index}: tensor {name} points to missing shard {fname}")
                shards[fname] = _SafetensorsFile(shard_path)
            if name not in shards[fname].entries:
                raise CorruptStoreError(f"{index}: tensor {name} is not in its shard {fname}")
            self._entries[name] = (shards[fname], shards[fname].entries[name])
        # tensors a shard holds but the index omits are visible too (the checkpoint loader sees them)
        unindexed: dict[str, str] = {}
        for fname, shard in shards.items():
            for name, entry in shard.entries.items():
                if name in weight_map:
                    continue
                if name in unindexed:
                    raise CorruptStoreError(
                        f"{index}: tensor {name} is in two shards, {unindexed[name]} and {fname}"
                    )
                unindexed[name] = fname
                self._entries[name] = (shard, entry)

    def file_of(self, name: str) -> Path:
        """The safetensors file (the single file or a shard) that holds tensor ``name``."""
        found = self._entries.get(name)
        if found is None:
            self._require(name)  # raises TensorNotFoundError naming the store
        assert found is not None
        return found[0].path

    @property
    def config(self) -> dict[str, Any] | None:
        """``config.json`` as a dict (None when the directory has none)."""
        cfg = self.path / "config.json"  # type: ignore[operator]
        if not cfg.is_file():
            return None
        try:
            data = json.loads(cfg.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise CorruptStoreError(f"{cfg}: not valid JSON ({exc})") from None
        if not isinstance(data, dict):
            raise CorruptStoreError(f"{cfg}: not a JSON object")
        return data

    @property
    def quantization_config(self) -> dict[str, Any] | None:
        """``config.json``'s ``quantization_config`` (pre-quantized checkpoints), else None."""
        cfg = self.config or {}
        q = cfg.get("quantization_config")
        return q if isinstance(q, dict) else None


def open_store(
    path: str | Path, *, root: str | Path | None = None, _seen: tuple[str, ...] = ()
) -> WeightStore:
    """Open the store at ``path``: a checkpoint directory or a store file (headers only).

    ``root``: ``path`` and every base it records must lie inside ``root`` (:class:`StorePathError`).
    """
    p = Path(path)
    if root is not None:
        _check_inside(p, Path(root), str(p))
    if p.is_dir():
        return CheckpointStore(p)
    if not p.exists():
        raise StoreNotFoundError(f"{p}: weight store not found")
    return FileStore(p, root=root, _seen=_seen)


# ------------------------------------------------------------------------------------------ files


def _relative_or_absolute(path: Path, start: Path) -> str:
    """``path`` relative to the directory ``start`` in POSIX form, absolute where none exists."""
    try:
        rel = os.path.relpath(os.path.abspath(path), os.path.abspath(start))
    except ValueError:  # another drive (Windows): no relative path
        return Path(os.path.abspath(path)).as_posix()
    return Path(rel).as_posix()


def _check_inside(path: Path, root: Path, where: str) -> None:
    real, real_root = os.path.realpath(path), os.path.realpath(root)
    if os.path.commonpath([real, real_root]) != real_root:
        raise StorePathError(f"{where}: weight store path {path} escapes {root}")


def _itemsize(code: str) -> int:
    known = dtypes.by_code(code)
    return 1 if known is None else known.itemsize


def _write_tensor_bytes(f: Any, data: np.ndarray) -> None:
    """Write an array's bytes (C order); a separate function so tests can make a write fail."""
    if data.size:
        f.write(np.ascontiguousarray(data).reshape(-1).view(np.uint8).data)


class _Checksummed:
    """A binary file being written, and the sha256 of what went into it."""

    def __init__(self, f: Any) -> None:
        self.f = f
        self.digest = hashlib.sha256()
        self.written = 0

    def write(self, data: Any) -> int:
        self.digest.update(data)
        self.written += memoryview(data).nbytes
        return int(self.f.write(data))


def _write_safetensors(
    target: Path, owners: Mapping[str, WeightStore], metadata: Mapping[str, str], files: AtomicFiles | None = None
) -> tuple[Path, str]:
    """Write the tensors ``owners`` names (each read from the layer given) as a safetensors file,
    atomically (``dialects/files.py``: a temporary file beside ``target``, then ``os.replace``; with
    ``files``, at that block's commit). Returns the file to read it from now (``target``, or the
    temporary file until ``files`` commits) and its sha256.

    Tensors are laid out largest item size first, then by name, with no gaps (what the safetensors
    library expects), so every tensor stays aligned to its item size after the 8-aligned header. Only
    headers are consulted to lay the file out; each tensor's bytes are then produced on the worker
    threads a few ahead, written in order and released (pages of a mapped file dropped).
    """
    infos = {name: owner._own_info(name) for name, owner in owners.items()}
    order = sorted(owners, key=lambda n: (-_itemsize(infos[n].stored), n))  # type: ignore[union-attr]
    header: dict[str, Any] = {"__metadata__": dict(metadata)}
    offset = 0
    sizes: dict[str, int] = {}
    for name in order:
        info = infos[name]
        assert info is not None
        sizes[name] = owners[name]._own_nbytes(name)
        header[name] = {"dtype": info.stored, "shape": list(info.shape), "data_offsets": [offset, offset + sizes[name]]}
        offset += sizes[name]
    encoded = json.dumps(header, separators=(",", ":")).encode("utf-8")
    encoded += b" " * (-len(encoded) % 8)
    if not target.parent.is_dir():
        raise WeightStoreError(f"{target}: directory {target.parent} does not exist")

    def produce(name: str) -> np.ndarray:
        return owners[name]._own_raw(name)[2]

    def write(f: Any) -> str:
        out = _Checksummed(f)
        out.write(struct.pack("<Q", len(encoded)))
        out.write(encoded)
        with progress(f"write {target.name}", offset, "B") as advance:
            # each worker produces one tensor ahead of the one being written: a few tensors in memory
            produced = map_in_order(produce, order, ahead=worker_count() + 1)
            for name in order:
                data = next(produced)  # (not zip: its reused tuple would keep the last tensor alive)
                if data.nbytes != sizes[name]:  # a layer's header and data disagree: a bug, not the user's
                    raise AssertionError(f"{name}: {data.nbytes} bytes, header said {sizes[name]}")
                _write_tensor_bytes(out, data)
                del data
                owners[name]._own_release(name)
                advance(sizes[name])
        return out.digest.hexdigest()

    try:
        if files is not None:
            f = files.open(target, "wb")
            digest = write(f)
            f.close()
            return files.pending_path(target), digest
        with atomic_files() as own:
            f = own.open(target, "wb")
            digest = write(f)
        return target, digest
    except OSError as exc:
        raise WeightStoreError(f"{target}: cannot write weight store ({exc.strerror or exc})") from None


# ------------------------------------------------------------------------------------------ modules


def default_store_path(mlir_path: str | Path) -> Path:
    """Where new weights of ``OUT.mlir`` go: ``OUT.weights.safetensors`` beside it."""
    p = Path(mlir_path)
    stem = p.name[: -len(".mlir")] if p.name.endswith(".mlir") and p.name != ".mlir" else p.name
    return p.with_name(stem + STORE_SUFFIX)


def get_store_attr(module: ModuleOp) -> str | None:
    """The module's ``mmfc.weights`` value (None when absent). Reads the attribute only, no file."""
    attr = module.attributes.get(STORE_ATTR)
    if attr is None:
        return None
    if not isinstance(attr, StringAttr):
        raise StorePathError(f"module attribute {STORE_ATTR} must be a string, got {attr}")
    value = attr.data
    if not value or "\0" in value:
        raise StorePathError(f"module attribute {STORE_ATTR} = {value!r} is not a path")
    return value


def set_store_attr(module: ModuleOp, value: str | None) -> None:
    """Set (or with None remove) the module's ``mmfc.weights`` attribute."""
    if value is None:
        module.attributes.pop(STORE_ATTR, None)
        return
    if not value or "\0" in value:
        raise StorePathError(f"{value!r} is not a weight store path")
    module.attributes[STORE_ATTR] = StringAttr(value)


def _dir_of(mlir_path: str | Path | None) -> Path:
    # IR from stdin or to stdout: paths are relative to the current directory
    return Path(os.path.abspath(mlir_path)).parent if mlir_path is not None else Path(os.getcwd())


def relocate_value(value: str, old_mlir_path: str | Path | None, new_mlir_path: str | Path | None) -> str:
    """The attribute value naming the same store once the IR moves from ``old`` to ``new`` (None:
    stdin/stdout, i.e. the current directory). Absolute paths and ``<memory>`` stay; no file is
    touched (paths are compared lexically, symlinks are not resolved)."""
    if value == MEMORY or os.path.isabs(value):
        return value
    target = os.path.normpath(_dir_of(old_mlir_path) / value)
    return _relative_or_absolute(Path(target), _dir_of(new_mlir_path))


@dataclass
class _Binding:
    """What the process knows of a module beyond its text."""

    store: WeightStore | None = None
    origin: Path | None = None  # the .mlir file the attribute is relative to (None: current dir)


_BINDINGS: weakref.WeakKeyDictionary[ModuleOp, _Binding] = weakref.WeakKeyDictionary()


def _binding(module: ModuleOp) -> _Binding:
    b = _BINDINGS.get(module)
    if b is None:
        b = _BINDINGS[module] = _Binding()
    return b


def set_mlir_path(module: ModuleOp, mlir_path: str | Path | None) -> None:
    """Record the file ``module`` was parsed from (None: stdin), against which its store path resolves.

    The driver calls this after parsing; nothing is opened.
    """
    _binding(module).origin = Path(mlir_path) if mlir_path is not None else None


def relocate(
    module: ModuleOp, old_mlir_path: str | Path | None, new_mlir_path: str | Path | None
) -> str | None:
    """Rewrite the module's relative store path for IR written to ``new_mlir_path`` (``-o``,
    ``--dump-dir``) instead of ``old_mlir_path``; record the new location. Returns the new value."""
    value = get_store_attr(module)
    if value is not None:
        value = relocate_value(value, old_mlir_path, new_mlir_path)
        set_store_attr(module, value)
    set_mlir_path(module, new_mlir_path)
    return value


def resolve_store(
    module: ModuleOp, mlir_path: str | Path | None = None, *, root: str | Path | None = None
) -> WeightStore:
    """The module's weight store, opened on first use and then bound to the module.

    A store already bound (:func:`bind`, or an earlier call) is returned as it is. Otherwise the
    attribute is resolved against ``mlir_path``, else the path recorded by :func:`set_mlir_path`,
    else the current directory. A module without the attribute gets an empty :class:`MemoryStore`
    (a module with no weights). ``root``: the store must lie inside it (compiled artifacts).
    Raises :class:`StoreNotFoundError` for a missing file and :class:`StorePathError` for
    ``<memory>`` in text (the IR was printed without its weights) or a path escaping ``root``.
    """
    b = _binding(module)
    if b.store is not None:
        return b.store
    if mlir_path is not None:
        b.origin = Path(mlir_path)
    value = get_store_attr(module)
    if value is None:
        b.store = MemoryStore(label=f"<module without {STORE_ATTR} attribute>")
        return b.store
    source = str(b.origin) if b.origin is not None else "IR read from stdin"
    if value == MEMORY:
        raise StorePathError(
            f"{source}: {STORE_ATTR} = {MEMORY!r}: this IR was printed while its weights were in memory; "
            "write it with -o FILE or --store-dir DIR to keep the weights"
        )
    path = Path(os.path.normpath(_dir_of(b.origin) / value))
    if root is not None:
        _check_inside(path, Path(root), f"{source}: {STORE_ATTR} = {value!r}")
    if not path.exists():
        raise StoreNotFoundError(
            f"{path}: weight store not found (named by {STORE_ATTR} = {value!r} in {source})"
        )
    b.store = open_store(path, root=root)
    return b.store


def bind(module: ModuleOp, store: WeightStore) -> None:
    """Attach ``store`` to ``module`` in this process (a pass that derived a store calls this).

    The attribute is updated to what printing now would show: the on-disk store's path relative to
    the module's recorded location, or ``<memory>`` while tensors live in memory.
    """
    b = _binding(module)
    b.store = store
    disk = store.on_disk()
    if disk is not None:
        set_store_attr(module, _relative_or_absolute(disk.path, _dir_of(b.origin)))  # type: ignore[arg-type]
    elif store.is_empty():
        set_store_attr(module, None)
    else:
        set_store_attr(module, MEMORY)


def write_module_store(
    module: ModuleOp,
    mlir_path: str | Path | None = None,
    *,
    store_dir: str | Path | None = None,
    name: str | None = None,
    rebind: bool = True,
    files: AtomicFiles | None = None,
) -> Path | None:
    """Prepare ``module`` to be printed to ``mlir_path`` (None: stdout); return its store's path.

    Where new stores go: tensors held in memory are saved (layered) to ``store_dir/NAME`` when
    ``store_dir`` is given (created if missing; NAME is ``name``, else ``OUT.weights.safetensors``
    from ``mlir_path``, else ``module.weights.safetensors``), else next to ``mlir_path`` as
    ``OUT.weights.safetensors``, else kept in memory and the attribute set to ``<memory>`` (returns
    None). Then the attribute is set to the store's path relative to ``mlir_path``'s directory (the
    current directory for stdout). ``rebind=False`` (``--dump-dir`` snapshots) keeps the in-memory
    store bound, so the final output does not layer over a dump. A module whose store was never
    resolved only has its path rewritten (no file is opened). ``files``: the store file is written
    within that :func:`~mmfc.dialects.files.atomic_files` block, landing with the IR written there.
    """
    b = _binding(module)
    out_dir = _dir_of(mlir_path)
    if b.store is None:
        value = relocate(module, b.origin, mlir_path)
        if value is None or value == MEMORY:
            return None
        return Path(os.path.normpath(out_dir / value))
    disk = b.store.on_disk()
    if disk is None and b.store.is_empty():
        set_store_attr(module, None)
        b.origin = Path(mlir_path) if mlir_path is not None else None
        return None
    if disk is None:
        if store_dir is not None:
            directory = Path(store_dir)
            directory.mkdir(parents=True, exist_ok=True)
            fname = name or (
                default_store_path(mlir_path).name if mlir_path is not None else "module" + STORE_SUFFIX
            )
            target: Path | None = directory / fname
        elif mlir_path is not None:
            target = default_store_path(mlir_path)
        else:
            target = None
        if target is None:
            set_store_attr(module, MEMORY)
            b.origin = None
            return None
        disk = b.store.save(target, files=files)
        if rebind:
            b.store = disk
    set_store_attr(module, _relative_or_absolute(disk.path, out_dir))  # type: ignore[arg-type]
    b.origin = Path(mlir_path) if mlir_path is not None else None
    return disk.path
