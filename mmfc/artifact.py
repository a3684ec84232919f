"""Compiled artifacts: a folder holding everything needed to run a compiled model.

Layout (``mmfc compile ... -o OUT``)::

    OUT/manifest.json        format, mmfc and dependency versions, the target (its name, the options
                             it was compiled with, and its record: what the build depends on, e.g.
                             a Triton version or GPU architecture), pipeline, entry points, files
                             with their sizes and sha256 checksums, per-layer stats
    OUT/model.mlir           the final IR; its mmfc.weights attribute names weights.safetensors
    OUT/weights.safetensors  a standalone store holding exactly the tensors the IR references
                             (packed trits, scales, norms, embedding, ...)
    OUT/config.json          the model config (and tokenizer files) when the source had them
    OUT/<target files>       what the target's ``build`` made (generated code, binaries), checksummed
    OUT/cache/               caches filled later (e.g. GPU tuning): outside the checksums

Written atomically (``dialects.files.atomic_dir``): everything goes to a temporary folder beside OUT,
which then replaces OUT in one rename (an existing OUT must itself be an artifact; it is replaced only
after the new one is complete). ``mmfc compile`` creates that folder before it compiles anything
(:func:`artifact_dir`), so an OUT that cannot be written fails at once; the weights are streamed into
it tensor by tensor. ``load_artifact`` verifies every checksum before use; a mismatch is a ``UserError`` naming
the file.
"""

from __future__ import annotations

import hashlib
import json
import platform
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from xdsl.dialects.builtin import ModuleOp

from mmfc.dialects.diagnostics import UserError
from mmfc.dialects.files import atomic_dir, check_writable
from mmfc.dialects.target import Build
from mmfc.dialects.weights import STORE_ATTR, WeightStore, set_store_attr

FORMAT = "mmfc-artifact"
FORMAT_VERSION = 2
MANIFEST = "manifest.json"
IR_FILE = "model.mlir"
WEIGHTS_FILE = "weights.safetensors"
CONFIG_FILE = "config.json"
CACHE_DIR = "cache"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "tokenizer_config.json", "special_tokens_map.json")


class ArtifactError(UserError):
    """A folder that is not a valid compiled artifact; the message names the file."""


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def versions() -> dict[str, str]:
    """Versions of mmfc and what it ran with (only packages already imported, to stay light)."""
    import sys

    import numpy
    import xdsl

    from mmfc import __version__

    found = {"mmfc": __version__, "python": platform.python_version(), "numpy": numpy.__version__,
             "xdsl": str(getattr(xdsl, "__version__", "unknown"))}
    for name in ("torch", "triton"):
        mod = sys.modules.get(name)
        if mod is not None:
            found[name] = str(getattr(mod, "__version__", "unknown"))
    return found


def referenced_weights(module: ModuleOp) -> list[str]:
    """Symbols of every ``ternary.weight`` in ``module`` (sorted, unique)."""
    from mmfc.dialects.ternary import WeightOp

    return sorted({op.sym.string_value() for op in module.walk() if isinstance(op, WeightOp)})


def check_artifact_target(out: str | Path) -> Path:
    """``out`` if an artifact can be written there, checked before any work starts: it is absent, an
    artifact (replaced only once the new one is complete) or an empty folder, and its folder exists
    and takes new entries. Else an :class:`ArtifactError` saying why."""
    out = Path(out)
    if out.exists() and not (out / MANIFEST).is_file():
        if not out.is_dir() or any(out.iterdir()):
            raise ArtifactError(f"{out}: exists and is not a compiled artifact; refusing to overwrite it")
    parent = out.parent if str(out.parent) else Path(".")
    if not parent.is_dir():
        raise ArtifactError(f"{out}: {parent} is not a folder" if parent.exists() else f"{out}: folder {parent} does not exist")
    try:
        check_writable(out)
    except OSError as exc:
        raise ArtifactError(f"{out}: cannot write in folder {parent} ({exc.strerror or exc})") from None
    return out


@contextmanager
def artifact_dir(out: str | Path) -> Iterator[Path]:
    """The folder to fill, which becomes the artifact ``out`` when the block ends without an
    exception (``dialects.files.atomic_dir``: on a failure ``out`` stays as it was and the folder
    is removed). Checked and created at once, so a folder that cannot be written fails before the
    block's work. What the system refuses is an :class:`ArtifactError` naming ``out``."""
    out = check_artifact_target(out)
    try:
        with atomic_dir(out) as tmp:
            yield tmp
    except OSError as exc:
        raise ArtifactError(f"{out}: cannot write the artifact ({exc.strerror or exc})") from None


def fill_artifact(
    folder: Path,
    module: ModuleOp,
    store: WeightStore,
    *,
    target: str,
    pipeline: str,
    target_options: dict[str, Any] | None = None,
    build: Build | None = None,
    config: dict[str, Any] | None = None,
    source_dir: Path | None = None,
    stats: dict[str, Any] | None = None,
) -> None:
    """Write an artifact's files into ``folder`` (the temporary folder of :func:`artifact_dir`): the
    weights the IR references (streamed tensor by tensor, checksummed while written), the IR, config,
    tokenizer files, the target's files, then the manifest."""
    from xdsl.printer import Printer

    names = referenced_weights(module)
    saved = store.save(folder / WEIGHTS_FILE, standalone=True, names=names)
    clone = module.clone()
    set_store_attr(clone, WEIGHTS_FILE)
    with open(folder / IR_FILE, "w") as f:
        Printer(stream=f).print_op(clone)
        f.write("\n")
    if config is not None:
        (folder / CONFIG_FILE).write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    if source_dir is not None:
        for fname in TOKENIZER_FILES:
            if (source_dir / fname).is_file():
                shutil.copy2(source_dir / fname, folder / fname)
    build = build or Build()
    for fname, data in build.files.items():
        if Path(fname).name != fname or fname in (MANIFEST, IR_FILE, WEIGHTS_FILE, CONFIG_FILE, CACHE_DIR):
            raise ValueError(f"target {target}: artifact file name {fname!r} is not a free plain name")
        (folder / fname).write_bytes(data)
    files = {
        p.name: {
            "bytes": p.stat().st_size,
            "sha256": saved.sha256 if p.name == WEIGHTS_FILE and saved.sha256 else sha256_of(p),
        }
        for p in sorted(folder.iterdir())
        if p.is_file()
    }
    manifest = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "target": {"name": target, "options": target_options or {}, "record": build.record},
        "pipeline": pipeline,
        "entries": _entries(module),
        "versions": versions(),
        "files": files,
        "stats": stats or {},
    }
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")


def _entries(module: ModuleOp) -> list[str]:
    from xdsl.dialects import func

    return [op.sym_name.data for op in module.ops if isinstance(op, func.FuncOp)]


@dataclass
class Artifact:
    """A loaded, verified artifact."""

    path: Path
    manifest: dict[str, Any]
    module: ModuleOp
    store: WeightStore
    config: dict[str, Any] | None

    @property
    def target(self) -> str:
        return str(self.manifest["target"]["name"])

    @property
    def target_options(self) -> dict[str, Any]:
        return dict(self.manifest["target"].get("options") or {})

    @property
    def target_record(self) -> dict[str, Any]:
        return dict(self.manifest["target"].get("record") or {})


def read_manifest(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_dir():
        raise ArtifactError(f"{path}: no such directory")
    mf = path / MANIFEST
    if not mf.is_file():
        raise ArtifactError(f"{path}: no {MANIFEST} (not a compiled artifact; `mmfc compile -o` makes one)")
    try:
        manifest = json.loads(mf.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ArtifactError(f"{mf}: not valid JSON ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ArtifactError(f"{mf}: not an mmfc artifact manifest (format != {FORMAT!r})")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise ArtifactError(
            f"{mf}: artifact format version {manifest.get('format_version')!r}; this mmfc reads {FORMAT_VERSION} "
            "(compile the model again)"
        )
    target = manifest.get("target")
    if not isinstance(target, dict) or not isinstance(target.get("name"), str):
        raise ArtifactError(f"{mf}: no target name (the manifest's \"target\" must be {{\"name\": ...}})")
    return manifest


def verify_artifact(path: str | Path) -> dict[str, Any]:
    """Check every listed file's size and checksum; returns the manifest."""
    path = Path(path)
    manifest = read_manifest(path)
    files = manifest.get("files")
    if not isinstance(files, dict) or IR_FILE not in files or WEIGHTS_FILE not in files:
        raise ArtifactError(f"{path / MANIFEST}: the file list must name {IR_FILE} and {WEIGHTS_FILE}")
    for name, meta in files.items():
        f = path / name
        if Path(name).name != name:
            raise ArtifactError(f"{path / MANIFEST}: file name {name!r} is not a plain name")
        if not f.is_file():
            raise ArtifactError(f"{f}: listed in {MANIFEST} but missing")
        if f.stat().st_size != meta.get("bytes") or sha256_of(f) != meta.get("sha256"):
            raise ArtifactError(f"{f}: checksum mismatch (the artifact was modified or is corrupt)")
    return manifest


def load_artifact(path: str | Path) -> Artifact:
    """Verify and read an artifact: its IR (parsed with diagnostics) and its weight store."""
    from mmfc.dialects.context import mmfc_context
    from mmfc.dialects.source import parse_module, verify_module
    from mmfc.dialects.weights import resolve_store, set_mlir_path

    path = Path(path)
    manifest = verify_artifact(path)
    text = (path / IR_FILE).read_text()
    module, source = parse_module(mmfc_context(), text, str(path / IR_FILE))
    verify_module(module, source)
    set_mlir_path(module, path / IR_FILE)
    store = resolve_store(module, root=path)
    config = None
    if (path / CONFIG_FILE).is_file():
        config = json.loads((path / CONFIG_FILE).read_text())
    if STORE_ATTR not in module.attributes:
        raise ArtifactError(f"{path / IR_FILE}: the module does not name its weight store")
    return Artifact(path, manifest, module, store, config)
