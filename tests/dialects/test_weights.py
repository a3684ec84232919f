"""The weight store (mmfc.dialects.weights): memory/file/checkpoint stores, layering, module attributes."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from safetensors import safe_open
from safetensors.numpy import load_file, save_file
from xdsl.context import Context
from xdsl.dialects.builtin import Builtin, IntegerAttr, ModuleOp, i32
from xdsl.parser import Parser

from mmfc.dialects import weights as W
from mmfc.dialects.diagnostics import UserError


def _bits_equal(a: np.ndarray, b: np.ndarray) -> bool:
    """Same dtype, shape and bytes (NaN payloads included)."""
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


def _header(path: Path) -> dict:
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    return json.loads(raw[8 : 8 + n])


def _parse(text: str) -> ModuleOp:
    ctx = Context()
    ctx.load_dialect(Builtin)
    return Parser(ctx, text).parse_module()


def _snapshot(path: Path) -> tuple[bytes, int]:
    return path.read_bytes(), path.stat().st_mtime_ns


# ------------------------------------------------------------------------------------------ layering


def test_import_does_not_pull_torch() -> None:
    code = (
        "import sys, mmfc.dialects.weights\n"
        "heavy = [m for m in ('torch', 'triton', 'iree') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_memory_store_put_get() -> None:
    a = np.arange(6, dtype=np.int8).reshape(2, 3)
    store = W.MemoryStore({"a": a})
    a[0, 0] = 100  # put copied: the store does not see later changes
    assert store.get("a")[0, 0] == 0
    assert "a" in store and "b" not in store and 3 not in store
    assert store.names() == ["a"]
    assert store.shape_dtype("a") == ((2, 3), np.dtype(np.int8))
    assert store.info("a") == W.TensorInfo((2, 3), "I8", np.dtype(np.int8))
    with pytest.raises(ValueError):
        store.get("a")[0, 0] = 1  # read-only
    store.put("b", np.ones(2, dtype=">f4"))  # big-endian input is stored little-endian
    assert store.get("b").dtype == np.dtype("<f4") and store.get("b").tolist() == [1.0, 1.0]
    with pytest.raises(ValueError, match="complex"):
        store.put("c", np.zeros(2, dtype=np.complex64))
    with pytest.raises(ValueError, match="non-empty"):
        store.put("", np.zeros(2))


@given(
    st.dictionaries(
        st.text(alphabet="abcdefghij._0123456789", min_size=1, max_size=12),
        hnp.arrays(
            dtype=st.sampled_from(
                [np.int8, np.uint8, np.float32, np.float16, np.int32, np.float64, np.bool_]
            ),
            shape=hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=5),
        ),
        max_size=6,
    )
)
def test_round_trip_random_arrays(tmp_path_factory: pytest.TempPathFactory, tensors: dict) -> None:
    path = tmp_path_factory.mktemp("rt") / "s.weights.safetensors"
    saved = W.MemoryStore(tensors).save(path)
    reopened = W.open_store(path)
    assert reopened.names() == sorted(tensors) == saved.names()
    for name, arr in tensors.items():
        assert _bits_equal(reopened.get(name), arr)
        assert reopened.shape_dtype(name) == (arr.shape, arr.dtype)
    # the file is plain safetensors: the library reads it back the same
    for name, arr in load_file(str(path)).items():
        assert _bits_equal(arr, tensors[name])


def test_reads_files_written_by_safetensors(tmp_path: Path) -> None:
    tensors = {"x": np.arange(12, dtype=np.float32).reshape(3, 4), "t": np.array([-1, 0, 1], dtype=np.int8)}
    save_file(tensors, str(tmp_path / "lib.safetensors"))
    store = W.open_store(tmp_path / "lib.safetensors")
    assert isinstance(store, W.FileStore) and store.base is None
    for name, arr in tensors.items():
        assert _bits_equal(store.get(name), arr)


def test_layering_never_mutates_base(tmp_path: Path) -> None:
    base_path = tmp_path / "base.weights.safetensors"
    W.MemoryStore({"w": np.ones((2, 2), np.float32), "keep": np.arange(3, dtype=np.int32)}).save(base_path)
    before = _snapshot(base_path)
    base = W.open_store(base_path)
    derived = base.derive()
    derived.put("w", np.full((2, 2), 7, np.int8))  # override (another dtype)
    derived.put("new", np.zeros(4, np.uint8))
    assert derived.names() == ["keep", "new", "w"]
    assert derived.get("w").dtype == np.int8 and base.get("w").dtype == np.float32
    assert derived.get("keep").tolist() == [0, 1, 2]
    with pytest.raises(TypeError, match="read-only"):
        base.put("w", np.zeros(1))

    out_dir = tmp_path / "sub"
    out_dir.mkdir()
    saved = derived.save(out_dir / "pass.weights.safetensors")
    assert _snapshot(base_path) == before
    # the new file holds only the new layer and records its base relative to itself
    with safe_open(str(out_dir / "pass.weights.safetensors"), framework="np") as f:
        assert sorted(f.keys()) == ["new", "w"]
        assert f.metadata()[W.BASE_KEY] == "../base.weights.safetensors"
    again = W.open_store(out_dir / "pass.weights.safetensors")
    assert again.names() == ["keep", "new", "w"] and saved.names() == again.names()
    assert again.get("w").tolist() == [[7, 7], [7, 7]]
    assert again.get("keep").tolist() == [0, 1, 2]
    assert again.base is not None and again.base.path == base_path


def test_in_memory_layers_fold_into_one_file(tmp_path: Path) -> None:
    base = W.MemoryStore({"a": np.zeros(2, np.float32)}).save(tmp_path / "a.safetensors")
    mid = base.derive()
    mid.put("b", np.ones(2, np.float32))
    mid.put("c", np.ones(2, np.float32))
    top = mid.derive()
    top.put("c", np.full(2, 3, np.float32))
    top.save(tmp_path / "top.safetensors")
    hdr = _header(tmp_path / "top.safetensors")
    assert sorted(k for k in hdr if k != "__metadata__") == ["b", "c"]
    assert hdr["__metadata__"][W.BASE_KEY] == "a.safetensors"
    reopened = W.open_store(tmp_path / "top.safetensors")
    assert reopened.get("c").tolist() == [3, 3] and reopened.get("a").tolist() == [0, 0]


def test_save_refuses_to_overwrite_its_input(tmp_path: Path) -> None:
    path = tmp_path / "s.safetensors"
    store = W.MemoryStore({"a": np.zeros(1, np.float32)}).save(path)
    before = _snapshot(path)
    derived = store.derive()
    derived.put("b", np.zeros(1, np.float32))
    with pytest.raises(W.WeightStoreError, match="refusing to overwrite"):
        derived.save(path)
    with pytest.raises(W.WeightStoreError, match="refusing to overwrite"):
        derived.save(path, standalone=True)
    assert _snapshot(path) == before


def test_standalone_save_selects_and_copies(tmp_path: Path) -> None:
    base = W.MemoryStore({"a": np.arange(3, dtype=np.int8), "b": np.ones(2, np.float16)}).save(
        tmp_path / "a.st"
    )
    top = base.derive()
    top.put("c", np.zeros(2, np.float32))
    out = top.save(tmp_path / "art.safetensors", standalone=True, names=["c", "a"])
    assert out.base is None and out.names() == ["a", "c"]
    assert W.BASE_KEY not in _header(tmp_path / "art.safetensors")["__metadata__"]
    full = top.save(tmp_path / "full.safetensors", standalone=True)
    assert full.names() == ["a", "b", "c"] and _bits_equal(full.get("b"), np.ones(2, np.float16))
    with pytest.raises(W.TensorNotFoundError, match="nope"):
        top.save(tmp_path / "x.safetensors", standalone=True, names=["nope"])
    assert not (tmp_path / "x.safetensors").exists()


# ------------------------------------------------------------------------------------------ checkpoints


def _bf16_bytes(values: np.ndarray) -> bytes:
    """bf16 by truncation of exactly representable float32 values (the high 16 bits)."""
    return (values.astype("<f4").view("<u4") >> 16).astype("<u2").tobytes()


def _write_raw_safetensors(
    path: Path, tensors: dict[str, tuple[str, list[int], bytes]], metadata=None
) -> None:
    header: dict = {"__metadata__": metadata} if metadata else {}
    offset = 0
    for name, (code, shape, data) in tensors.items():
        header[name] = {"dtype": code, "shape": shape, "data_offsets": [offset, offset + len(data)]}
        offset += len(data)
    hdr = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(hdr)) + hdr + b"".join(d for _, _, d in tensors.values()))


def test_bf16_upcast_from_hand_made_bytes(tmp_path: Path) -> None:
    values = np.array([1.0, -2.0, 0.5, 3.140625, np.inf, -0.0, 2.0**-130], dtype=np.float32)
    _write_raw_safetensors(tmp_path / "b.safetensors", {"x": ("BF16", [7], _bf16_bytes(values))})
    store = W.open_store(tmp_path / "b.safetensors")
    assert store.info("x") == W.TensorInfo((7,), "BF16", np.dtype(np.float32))
    got = store.get("x")
    assert _bits_equal(got, values)  # all exactly representable in bf16, sign of -0 included
    assert store.get("x") is got  # cached while held


def _torch_checkpoint(directory: Path, quantized: bool = False) -> dict:
    """A small HF-style checkpoint written by torch (bf16, fp16, fp32 masters)."""
    import torch
    from safetensors.torch import save_file as torch_save

    g = torch.Generator().manual_seed(0)
    tensors = {
        "model.embeddings.weight": torch.randn(8, 4, generator=g).to(torch.bfloat16),
        "model.norm.weight": torch.randn(4, generator=g).to(torch.float16),
        "lm_head.norm.weight": torch.randn(4, generator=g),
    }
    if quantized:
        tensors["lm_head.weight"] = torch.randint(-1, 2, (8, 4), generator=g, dtype=torch.int8)
        tensors["lm_head.weight_scale"] = torch.tensor(0.125)
    else:
        tensors["lm_head.weight"] = torch.randn(8, 4, generator=g).to(torch.bfloat16)
    directory.mkdir()
    torch_save(tensors, str(directory / "model.safetensors"), metadata={"format": "pt"})
    config = {"model_type": "hgrn_bit", "hidden_size": 4}
    if quantized:
        config["quantization_config"] = {"quant_method": "mmfc-ternary", "weights": "int8-trits"}
    (directory / "config.json").write_text(json.dumps(config))
    return {name: t.float().numpy() if t.is_floating_point() else t.numpy() for name, t in tensors.items()}


def test_checkpoint_reads_float_masters_lazily(tmp_path: Path) -> None:
    expected = _torch_checkpoint(tmp_path / "ckpt")
    store = W.open_store(tmp_path / "ckpt")
    assert isinstance(store, W.CheckpointStore) and store.config["hidden_size"] == 4
    assert store.quantization_config is None
    assert store.names() == sorted(expected)
    assert [
        store.info(n).stored for n in ("model.embeddings.weight", "model.norm.weight", "lm_head.norm.weight")
    ] == [
        "BF16",
        "F16",
        "F32",
    ]
    for name, want in expected.items():
        got = store.get(name).astype(np.float32)
        np.testing.assert_array_equal(got, want)
    fp32 = store.get("lm_head.norm.weight")
    # a view of the memory-mapped file, not a copy
    assert _mapped_view(fp32)
    assert not fp32.flags.writeable


def _mapped_view(array: np.ndarray) -> bool:
    """Whether ``array`` is a view whose memory is a file mapping (``mmap.mmap``), not a copy."""
    import mmap

    owner: object = array
    while isinstance(owner, np.ndarray):
        owner = owner.base
    if isinstance(owner, memoryview):
        owner = owner.obj
    return isinstance(owner, mmap.mmap)


def test_layer_over_checkpoint_copies_no_floats(tmp_path: Path) -> None:
    _torch_checkpoint(tmp_path / "ckpt")
    ckpt_file = tmp_path / "ckpt" / "model.safetensors"
    before = _snapshot(ckpt_file)
    store = W.open_store(tmp_path / "ckpt").derive()
    store.put("lm_head.weight", np.zeros((8, 4), np.int8))
    out = store.save(tmp_path / "q.weights.safetensors")
    assert _snapshot(ckpt_file) == before
    hdr = _header(tmp_path / "q.weights.safetensors")
    assert hdr["__metadata__"][W.BASE_KEY] == "ckpt"
    assert sorted(k for k in hdr if k != "__metadata__") == ["lm_head.weight"]
    assert isinstance(out.base, W.CheckpointStore)
    assert out.get("model.embeddings.weight").dtype == np.float32
    # a standalone copy keeps bf16 tensors as bf16 bytes
    art = out.save(tmp_path / "art.safetensors", standalone=True)
    assert art.info("model.embeddings.weight").stored == "BF16"
    np.testing.assert_array_equal(art.get("model.embeddings.weight"), out.get("model.embeddings.weight"))


def test_prequantized_checkpoint(tmp_path: Path) -> None:
    expected = _torch_checkpoint(tmp_path / "ckpt", quantized=True)
    store = W.open_store(tmp_path / "ckpt")
    assert store.quantization_config == {"quant_method": "mmfc-ternary", "weights": "int8-trits"}
    assert store.shape_dtype("lm_head.weight") == ((8, 4), np.dtype(np.int8))
    assert _bits_equal(store.get("lm_head.weight"), expected["lm_head.weight"])
    assert store.shape_dtype("lm_head.weight_scale") == ((), np.dtype(np.float32))
    assert float(store.get("lm_head.weight_scale")) == 0.125


def _sharded(directory: Path) -> dict[str, np.ndarray]:
    directory.mkdir()
    a = {"model.embeddings.weight": np.arange(8, dtype=np.float32).reshape(2, 4)}
    b = {"lm_head.weight": np.array([[-1, 0, 1]], dtype=np.int8), "model.norm.weight": np.ones(4, np.float16)}
    save_file(a, str(directory / "model-00001-of-00002.safetensors"))
    save_file(b, str(directory / "model-00002-of-00002.safetensors"))
    weight_map = {n: "model-00001-of-00002.safetensors" for n in a} | {
        n: "model-00002-of-00002.safetensors" for n in b
    }
    (directory / "model.safetensors.index.json").write_text(
        json.dumps({"metadata": {}, "weight_map": weight_map})
    )
    return a | b


def test_sharded_checkpoint(tmp_path: Path) -> None:
    tensors = _sharded(tmp_path / "ckpt")
    store = W.open_store(tmp_path / "ckpt")
    assert store.names() == sorted(tensors)
    for name, arr in tensors.items():
        assert _bits_equal(store.get(name), arr)


def test_sharded_checkpoint_errors(tmp_path: Path) -> None:
    _sharded(tmp_path / "ckpt")
    index = tmp_path / "ckpt" / "model.safetensors.index.json"
    data = json.loads(index.read_text())
    data["weight_map"]["lm_head.weight"] = "model-00003-of-00002.safetensors"
    index.write_text(json.dumps(data))
    with pytest.raises(W.StoreNotFoundError, match="lm_head.weight points to missing shard model-00003"):
        W.open_store(tmp_path / "ckpt")
    data["weight_map"]["lm_head.weight"] = "model-00001-of-00002.safetensors"
    index.write_text(json.dumps(data))
    with pytest.raises(W.CorruptStoreError, match="lm_head.weight is not in its shard model-00001"):
        W.open_store(tmp_path / "ckpt")
    data["weight_map"]["lm_head.weight"] = "../elsewhere.safetensors"
    index.write_text(json.dumps(data))
    with pytest.raises(W.StorePathError, match="outside the checkpoint"):
        W.open_store(tmp_path / "ckpt")
    index.write_text("{not json")
    with pytest.raises(W.CorruptStoreError, match="index.json: not a safetensors index"):
        W.open_store(tmp_path / "ckpt")


def test_checkpoint_without_weights(tmp_path: Path) -> None:
    (tmp_path / "ckpt").mkdir()
    (tmp_path / "ckpt" / "pytorch_model.bin").write_bytes(b"pickle")
    with pytest.raises(W.StoreNotFoundError, match="no model.safetensors.*pytorch_model.bin"):
        W.open_store(tmp_path / "ckpt")


# ------------------------------------------------------------------------------------------ errors


def test_missing_tensor_names_store_and_tensor(tmp_path: Path) -> None:
    path = tmp_path / "s.safetensors"
    W.MemoryStore({"a": np.zeros(1, np.float32)}).save(path)
    derived = W.open_store(path).derive()
    with pytest.raises(W.TensorNotFoundError) as err:
        derived.get("model.layers.0.attn.i_proj.weight")
    assert "model.layers.0.attn.i_proj.weight" in str(err.value) and str(path) in str(err.value)
    assert isinstance(err.value, UserError)
    with pytest.raises(W.TensorNotFoundError, match="nope"):
        derived.shape_dtype("nope")


def _raw(header: bytes, data_len: int) -> bytes:
    return struct.pack("<Q", len(header)) + header + b"\0" * data_len


@pytest.mark.parametrize(
    "content, message",
    [
        (b"abc", "shorter than 8 bytes"),
        (struct.pack("<Q", 1 << 40) + b"{}", "header length"),
        (struct.pack("<Q", 4) + b"nope", "header is not JSON"),
        (struct.pack("<Q", 2) + b"[]", "not a JSON object"),
        (
            _raw(b'{"x":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}', 8),
            "tensor x: data_offsets .*truncated",
        ),
        (_raw(b'{"x":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}', 8), "tensor x: 8 bytes do not hold"),
        (_raw(b'{"x":{"dtype":"F32","shape":[2]}}', 8), "tensor x: header entry needs"),
        (_raw(b'{"x":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}}', 8), "tensor x: shape"),
    ],
    ids=[
        "short",
        "huge-header",
        "not-json",
        "not-object",
        "truncated",
        "wrong-size",
        "no-offsets",
        "bad-shape",
    ],
)
def test_corrupt_files(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "bad.safetensors"
    path.write_bytes(content)
    with pytest.raises(W.CorruptStoreError, match=message) as err:
        W.open_store(path)
    assert str(path) in str(err.value)


def test_unreadable_dtype_is_reported_on_get_only(tmp_path: Path) -> None:
    _write_raw_safetensors(tmp_path / "f8.safetensors", {"x": ("F8_E4M3", [2], b"\x01\x02")})
    store = W.open_store(tmp_path / "f8.safetensors")
    assert store.info("x").dtype is None
    with pytest.raises(W.CorruptStoreError, match="x has dtype F8_E4M3"):
        store.get("x")
    copy = store.save(tmp_path / "copy.safetensors", standalone=True)  # still copied byte for byte
    assert copy.info("x").stored == "F8_E4M3"


def test_missing_base_and_cycles(tmp_path: Path) -> None:
    save_file(
        {"a": np.zeros(1, np.float32)}, str(tmp_path / "top.safetensors"), metadata={W.BASE_KEY: "gone.st"}
    )
    with pytest.raises(W.StoreNotFoundError, match="top.safetensors: layered over gone.st"):
        W.open_store(tmp_path / "top.safetensors")
    save_file(
        {"a": np.zeros(1, np.float32)},
        str(tmp_path / "x.safetensors"),
        metadata={W.BASE_KEY: "y.safetensors"},
    )
    save_file(
        {"b": np.zeros(1, np.float32)},
        str(tmp_path / "y.safetensors"),
        metadata={W.BASE_KEY: "x.safetensors"},
    )
    with pytest.raises(W.CorruptStoreError, match="cycle"):
        W.open_store(tmp_path / "x.safetensors")


def test_root_confinement(tmp_path: Path) -> None:
    root = tmp_path / "artifact"
    root.mkdir()
    W.MemoryStore({"a": np.zeros(1, np.float32)}).save(tmp_path / "outside.safetensors")
    module = _parse('builtin.module attributes {mmfc.weights = "../outside.safetensors"} {}')
    with pytest.raises(W.StorePathError, match="escapes"):
        W.resolve_store(module, root / "model.mlir", root=root)
    # without a root the same relative path is fine, and so is an absolute one
    assert W.resolve_store(_parse(str(module)), root / "model.mlir").names() == ["a"]
    absolute = _parse(
        f'builtin.module attributes {{mmfc.weights = "{tmp_path / "outside.safetensors"}"}} {{}}'
    )
    assert W.resolve_store(absolute, root / "model.mlir").names() == ["a"]
    # a base recorded inside a store file is confined as well, symlinks included
    inner = W.open_store(tmp_path / "outside.safetensors").derive()
    inner.put("b", np.zeros(1, np.float32))
    inner.save(root / "w.safetensors")
    with pytest.raises(W.StorePathError, match="escapes"):
        W.open_store(root / "w.safetensors", root=root)
    os.symlink(tmp_path / "outside.safetensors", root / "link.safetensors")
    with pytest.raises(W.StorePathError, match="escapes"):
        W.open_store(root / "link.safetensors", root=root)


# ------------------------------------------------------------------------------------------ atomic writes


def test_failed_save_leaves_nothing_behind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = W.MemoryStore({"a": np.zeros(1000, np.float32), "b": np.ones(1000, np.float32)})
    calls = []

    def fail_after_first(f, data):
        calls.append(1)
        if len(calls) > 1:
            raise RuntimeError("disk full")
        f.write(data.tobytes())

    target = tmp_path / "s.safetensors"
    monkeypatch.setattr(W, "_write_tensor_bytes", fail_after_first)
    with pytest.raises(RuntimeError):
        store.save(target)
    assert list(tmp_path.iterdir()) == []  # no target, no temporary file
    monkeypatch.undo()
    W.MemoryStore({"old": np.zeros(1, np.int8)}).save(target)
    before = _snapshot(target)
    calls.clear()
    monkeypatch.setattr(W, "_write_tensor_bytes", fail_after_first)
    with pytest.raises(RuntimeError):
        store.save(target)
    assert _snapshot(target) == before and list(tmp_path.iterdir()) == [target]


def test_save_into_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(W.WeightStoreError, match="does not exist"):
        W.MemoryStore({"a": np.zeros(1)}).save(tmp_path / "no" / "s.safetensors")


# ------------------------------------------------------------------------------------------ modules


def test_attribute_helpers() -> None:
    module = ModuleOp([])
    assert W.get_store_attr(module) is None
    W.set_store_attr(module, "tiny.weights.safetensors")
    assert 'attributes {mmfc.weights = "tiny.weights.safetensors"}' in str(module)
    W.set_store_attr(module, None)
    assert W.STORE_ATTR not in module.attributes
    module.attributes[W.STORE_ATTR] = IntegerAttr(3, i32)
    with pytest.raises(W.StorePathError, match="must be a string"):
        W.get_store_attr(module)
    assert W.default_store_path("out/tiny.mlir") == Path("out/tiny.weights.safetensors")
    assert W.default_store_path("out/tiny.txt") == Path("out/tiny.txt.weights.safetensors")


def test_parsing_never_opens_the_store(tmp_path: Path) -> None:
    text = 'builtin.module attributes {mmfc.weights = "missing.weights.safetensors"} {}'
    module = _parse(text)
    module.verify()
    W.set_mlir_path(module, tmp_path / "m.mlir")
    with pytest.raises(W.StoreNotFoundError) as err:
        W.resolve_store(module)
    assert "missing.weights.safetensors" in str(err.value) and str(tmp_path) in str(err.value)


def test_relocate_when_the_mlir_moves(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b" / "c").mkdir(parents=True)
    W.MemoryStore({"w": np.arange(4, dtype=np.int8)}).save(tmp_path / "a" / "m.weights.safetensors")
    module = _parse('builtin.module attributes {mmfc.weights = "m.weights.safetensors"} {}')
    W.set_mlir_path(module, tmp_path / "a" / "m.mlir")
    new = W.relocate(module, tmp_path / "a" / "m.mlir", tmp_path / "b" / "c" / "m.mlir")
    assert new == "../../a/m.weights.safetensors"
    (tmp_path / "b" / "c" / "m.mlir").write_text(str(module))
    # a fresh parse of the moved text finds the same store
    moved = _parse((tmp_path / "b" / "c" / "m.mlir").read_text())
    assert W.resolve_store(moved, tmp_path / "b" / "c" / "m.mlir").get("w").tolist() == [0, 1, 2, 3]
    assert W.relocate_value("/abs/s.safetensors", "x/m.mlir", "y/m.mlir") == "/abs/s.safetensors"
    assert W.relocate_value(W.MEMORY, "x/m.mlir", "y/m.mlir") == W.MEMORY
    assert W.relocate_value("s.st", tmp_path / "m.mlir", tmp_path / "d" / "n.mlir") == "../s.st"


def test_memory_store_printing_and_writing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    module = ModuleOp([])
    W.bind(module, W.MemoryStore({"w": np.ones(3, np.float32)}))
    assert 'mmfc.weights = "<memory>"' in str(module)
    # stdout with no --store-dir: the store stays in memory, the path is elided
    assert W.write_module_store(module, None) is None
    assert W.get_store_attr(module) == W.MEMORY
    assert W.resolve_store(module).get("w").tolist() == [1, 1, 1]  # still bound in this process
    with pytest.raises(W.StorePathError, match="in memory"):
        W.resolve_store(_parse(str(module)))  # the printed text alone cannot find the weights
    # a dump keeps the in-memory store bound (rebind=False); -o then writes OUT.weights.safetensors
    (tmp_path / "dump").mkdir()
    dumped = W.write_module_store(module, tmp_path / "dump" / "01.mlir", rebind=False)
    assert dumped == tmp_path / "dump" / "01.weights.safetensors" and dumped.is_file()
    assert W.resolve_store(module).path is None
    (tmp_path / "out").mkdir()
    written = W.write_module_store(module, tmp_path / "out" / "tiny.mlir")
    assert written == tmp_path / "out" / "tiny.weights.safetensors"
    assert W.get_store_attr(module) == "tiny.weights.safetensors"
    assert W.resolve_store(module).path == written
    # a clean store is not written again when the IR goes elsewhere: only the path changes
    mtime = written.stat().st_mtime_ns
    W.write_module_store(module, tmp_path / "elsewhere.mlir")
    assert W.get_store_attr(module) == "out/tiny.weights.safetensors" and written.stat().st_mtime_ns == mtime


def test_store_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    module = ModuleOp([])
    W.bind(module, W.MemoryStore({"w": np.ones(3, np.float32)}))
    path = W.write_module_store(module, None, store_dir="stores")
    assert path == Path("stores/module.weights.safetensors")
    assert W.get_store_attr(module) == "stores/module.weights.safetensors"
    assert W.resolve_store(_parse(str(module))).get("w").tolist() == [1, 1, 1]


def test_pass_workflow_derive_and_bind(tmp_path: Path) -> None:
    W.MemoryStore({"x.weight": np.full((2, 2), 0.5, np.float32)}).save(tmp_path / "in.weights.safetensors")
    (tmp_path / "in.mlir").write_text(
        'builtin.module attributes {mmfc.weights = "in.weights.safetensors"} {}'
    )
    before = _snapshot(tmp_path / "in.weights.safetensors")
    module = _parse((tmp_path / "in.mlir").read_text())
    W.set_mlir_path(module, tmp_path / "in.mlir")
    # what a quantizing pass does: read, derive, put, bind
    store = W.resolve_store(module)
    new = store.derive()
    new.put("x.weight", np.ones((2, 2), np.int8))
    new.put("x.weight_scale", np.array(0.5, np.float32))
    W.bind(module, new)
    assert W.get_store_attr(module) == W.MEMORY
    out = W.write_module_store(module, tmp_path / "out.mlir")
    assert out == tmp_path / "out.weights.safetensors"
    assert _snapshot(tmp_path / "in.weights.safetensors") == before
    reread = W.resolve_store(_parse(str(module)), tmp_path / "out.mlir")
    assert reread.get("x.weight").dtype == np.int8 and float(reread.get("x.weight_scale")) == 0.5
    assert reread.base is not None and reread.base.path == tmp_path / "in.weights.safetensors"


def test_module_without_store_attribute() -> None:
    module = ModuleOp([])
    store = W.resolve_store(module)
    assert store.names() == []
    with pytest.raises(W.TensorNotFoundError, match="without mmfc.weights"):
        store.get("w")
    assert W.write_module_store(module, None) is None and W.get_store_attr(module) is None


def test_open_store_keeps_reading_the_file_it_opened(tmp_path: Path) -> None:
    path = tmp_path / "s.safetensors"
    W.MemoryStore({"a": np.zeros(4, np.float32)}).save(path)
    old = W.WeightStore.open(path)
    # another process replaces the file (atomically) with different tensors at the same offsets
    W.MemoryStore({"a": np.ones(4, np.float32)}).save(tmp_path / "other.safetensors")
    os.replace(tmp_path / "other.safetensors", path)
    assert old.get("a").tolist() == [0, 0, 0, 0]
    assert W.open_store(path).get("a").tolist() == [1, 1, 1, 1]


def test_metadata_is_not_a_tensor_name() -> None:
    with pytest.raises(ValueError, match="__metadata__"):
        W.MemoryStore({"__metadata__": np.zeros(1)})


def test_writing_an_unopened_module_only_rewrites_the_path(tmp_path: Path) -> None:
    # the store does not exist: writing the IR elsewhere must not try to open it
    module = _parse('builtin.module attributes {mmfc.weights = "w/m.weights.safetensors"} {}')
    W.set_mlir_path(module, tmp_path / "a" / "m.mlir")
    path = W.write_module_store(module, tmp_path / "b" / "m.mlir")
    assert path == tmp_path / "a" / "w" / "m.weights.safetensors"
    assert W.get_store_attr(module) == "../a/w/m.weights.safetensors"
    with pytest.raises(W.StoreNotFoundError, match="m.weights.safetensors"):
        W.resolve_store(module)  # now resolved against b/m.mlir: the same (missing) file


# ------------------------------------------------------------------------------------------ streaming (issue 12)


def _rss_file_bytes() -> int:
    """Resident file-backed memory of this process (Linux: RssFile of /proc/self/status)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("RssFile:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no RssFile line")


def test_blocks_stream_a_tensor_as_get_returns_it(tmp_path: Path) -> None:
    from mmfc.dialects import numerics as nm

    expected = _torch_checkpoint(tmp_path / "ckpt")
    store = W.open_store(tmp_path / "ckpt")
    for name, want in expected.items():
        blocks = list(store.blocks(name))
        assert len(blocks) == len(nm.row_blocks(want.shape))
        got = np.concatenate(blocks) if want.ndim else blocks[0]
        assert _bits_equal(got, store.get(name)) and all(not b.flags.writeable for b in blocks)
    rows = 3 * nm.BLOCK_ELEMENTS // 64 + 5  # several blocks, the last one short
    memory = W.MemoryStore({"w": np.arange(rows * 64, dtype=np.float32).reshape(rows, 64)})
    assert [b.shape[0] for b in memory.blocks("w")] == [s.stop - s.start for s in nm.row_blocks((rows, 64))]
    assert _bits_equal(np.concatenate(list(memory.blocks("w"))), memory.get("w"))


@pytest.mark.skipif(not Path("/proc/self/status").is_file(), reason="reads Linux's /proc")
def test_release_drops_a_mapped_tensors_pages(tmp_path: Path) -> None:
    """Streaming a checkpoint holds one tensor's pages at a time, not the whole file's."""
    big = np.random.default_rng(0).standard_normal((4096, 4096)).astype(np.float32)  # 64 MiB
    save_file({"big": big}, str(tmp_path / "big.safetensors"))
    store = W.FileStore(tmp_path / "big.safetensors")
    before = _rss_file_bytes()
    assert np.isfinite(store.get("big")).all()  # touches every page
    touched = _rss_file_bytes() - before
    store.release("big")
    after = _rss_file_bytes() - before
    assert touched > 48 * 2**20 and after < 8 * 2**20, (touched, after)
    assert _bits_equal(store.get("big"), big)  # still readable: the pages fault back in


def test_trits_held_packed_read_as_int8(tmp_path: Path) -> None:
    from mmfc.dialects import numerics as nm

    trits = np.random.default_rng(1).integers(-1, 2, (37, 23)).astype(np.int8)
    store = W.MemoryStore()
    store.put_packed_trits("t", nm.pack(trits, "2bit"), trits.shape, "2bit")
    assert store.info("t") == W.TensorInfo((37, 23), "I8", np.dtype(np.int8))
    assert _bits_equal(store.get("t"), trits) and _bits_equal(np.concatenate(list(store.blocks("t"))), trits)
    held = store.packed_trits("t", "2bit")
    assert held is store.packed_trits("t", "2bit")  # the bytes as held: no work
    assert _bits_equal(store.packed_trits("t", "base3"), nm.pack(trits, "base3"))
    saved = store.save(tmp_path / "s.safetensors")  # written as the int8 tensor it is
    assert _header(tmp_path / "s.safetensors")["t"]["dtype"] == "I8" and _bits_equal(saved.get("t"), trits)
    store.put("t", np.zeros((2, 2), np.int8))  # a plain put replaces the packed tensor
    assert store.get("t").shape == (2, 2)
    with pytest.raises(ValueError, match="uint8"):
        store.put_packed_trits("u", np.zeros((37, 5), np.uint8), (37, 23), "2bit")
    bad = W.MemoryStore({"t": np.full((2, 3), 2, np.int8)})
    with pytest.raises(ValueError, match=r"\{-1, 0, \+1\}"):
        bad.packed_trits("t", "2bit")


def test_save_reports_the_checksum_of_what_it_wrote(tmp_path: Path) -> None:
    import hashlib

    store = W.MemoryStore({"a": np.arange(10, dtype=np.float32), "b": np.ones((3, 3), np.int8)})
    saved = store.save(tmp_path / "s.safetensors", standalone=True)
    assert saved.sha256 == hashlib.sha256((tmp_path / "s.safetensors").read_bytes()).hexdigest()


def test_save_within_an_atomic_files_block_lands_with_the_block(tmp_path: Path) -> None:
    from mmfc.dialects import files

    store = W.MemoryStore({"a": np.arange(4, dtype=np.float32)})
    target = tmp_path / "s.safetensors"
    with files.atomic_files() as block:
        saved = store.save(target, files=block)
        assert not target.exists() and saved.path == target  # named by its final path already
        assert _bits_equal(saved.get("a"), store.get("a"))
        block.write_text(tmp_path / "m.mlir", "ir")
    assert target.is_file() and (tmp_path / "m.mlir").read_text() == "ir"
    with pytest.raises(RuntimeError):
        with files.atomic_files() as block:
            W.MemoryStore({"a": np.zeros(4, np.float32)}).save(target, files=block)
            raise RuntimeError("the IR could not be written")
    assert _bits_equal(W.FileStore(target).get("a"), store.get("a"))  # untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.mlir", "s.safetensors"]


def test_a_checkpoint_scale_stored_as_one_element_reads_as_a_scalar(tmp_path: Path) -> None:
    import torch
    from safetensors.torch import load_file as torch_load
    from safetensors.torch import save_file as torch_save

    _torch_checkpoint(tmp_path / "ckpt", quantized=True)
    tensors = torch_load(str(tmp_path / "ckpt" / "model.safetensors"))
    tensors["lm_head.weight_scale"] = tensors["lm_head.weight_scale"].reshape(1)
    torch_save(tensors, str(tmp_path / "ckpt" / "model.safetensors"))
    assert isinstance(tensors["lm_head.weight_scale"], torch.Tensor)
    store = W.open_store(tmp_path / "ckpt")
    assert store.info("lm_head.weight_scale").shape == () and store.get("lm_head.weight_scale").shape == ()
    copied = store.save(tmp_path / "a.safetensors", standalone=True)  # e.g. into a compiled artifact
    assert _header(tmp_path / "a.safetensors")["lm_head.weight_scale"]["shape"] == []
    assert float(copied.get("lm_head.weight_scale")) == 0.125
