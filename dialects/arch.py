"""An accelerator description: one TOML file, validated, as a frozen dataclass.

A hypothetical ternary accelerator is described by a TOML file (``docs/simulator.md`` documents every
key)::

    name = "my-design"
    clock_mhz = 200

    [tacc]                 # the ternary accumulate array: lanes of add/subtract
    lanes = 4096
    accumulator_bits = 32

    [vector]               # vector / special-function unit
    lanes = 64
    sigmoid = "lut"

    [sram]
    capacity_bytes = 2097152
    banks = 8
    bytes_per_cycle = 256

    [dram]
    gbps = 19.2
    latency_ns = 100

    [dma]
    engines = 2

    [weights]
    format = "2bit"

    [energy]               # picojoules per action, watts of static power
    add_pj = 0.1
    ...

:func:`parse_arch` validates a parsed document against :data:`SCHEMA`: every mistake is one
:class:`ArchError` (a ``UserError``) naming the file, the key path and what is wrong, e.g.
``arch.toml: dram.gbps: must be > 0, got -5``. Keys left out take the defaults of the schema (the
resolved description, :meth:`Accelerator.to_dict`, lists them all).

Presets (``edge-fpga``, ``asic``, ``tereffic-hbm``) are TOML files shipped in
``mmfc.dialects.accelerators`` and found through the entry-point group ``mmfc.accelerators``, exactly
as a plugin registers its own (:func:`installed_accelerators`, :func:`load_arch`). The description
lives on the ground floor because both the lowering pass (``lower-to-accel``, which tiles to the SRAM)
and the simulator (``backends/sim``) read it.
"""

from __future__ import annotations

import copy
import math
import os
import tomllib
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from fractions import Fraction
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path
from typing import Any

from mmfc.dialects.diagnostics import UserError

ENTRY_POINT_GROUP = "mmfc.accelerators"
DEFAULT_ARCH = "edge-fpga"


class ArchError(UserError):
    """A mistake in an accelerator description: ``<where>: <key path>: <what is wrong>``."""


# --------------------------------------------------------------------------------------------------
# The schema: every section, key, type, default and range, as data
# --------------------------------------------------------------------------------------------------

_REQUIRED: Any = object()


@dataclass(frozen=True)
class Key:
    """One key of the description: its type (``int``, ``float``, ``str``, ``bool``), default
    (required when absent), a range check returning the problem in words (None when fine), the
    allowed values of a string, and its meaning (for ``docs/simulator.md`` and ``--help``)."""

    kind: type
    doc: str
    default: Any = _REQUIRED
    check: Callable[[Any], str | None] | None = None
    choices: tuple[str, ...] | None = None

    @property
    def required(self) -> bool:
        return self.default is _REQUIRED


def _above(low: float) -> Callable[[Any], str | None]:
    return lambda v: None if v > low else f"must be > {low:g}, got {v:g}"


def _at_least(low: float) -> Callable[[Any], str | None]:
    return lambda v: None if v >= low else f"must be >= {low:g}, got {v:g}"


def _between(low: int, high: int) -> Callable[[Any], str | None]:
    return lambda v: None if low <= v <= high else f"must be in [{low}, {high}], got {v}"


SIGMOID_METHODS = ("lut", "pwl", "exp-div")
SILU_METHODS = ("lut", "sigmoid-mul")
RSQRT_METHODS = ("lut", "newton", "sqrt-div")
WEIGHT_FORMATS = ("2bit", "base3")

SCHEMA: dict[str, dict[str, Key]] = {
    "": {
        "name": Key(str, "the design's name (reports, sweeps)", ""),
        "description": Key(str, "one line about the design", ""),
        "clock_mhz": Key(float, "clock of every unit, MHz", check=_above(0)),
    },
    "tacc": {
        "lanes": Key(int, "add/subtract lanes of the ternary accumulate array (int8 into the accumulator, per cycle)",
                     check=_above(0)),
        "accumulator_bits": Key(int, "width of an accumulator; the lowering refuses a K whose sums do not fit",
                                32, _between(8, 64)),
        "latency_cycles": Key(int, "pipeline depth: cycles from the last input of a tile to its result (fill/drain)",
                              4, _at_least(0)),
        "skip_zeros": Key(bool, "zero trits cost no add (they are counted apart as skipped)", False),
    },
    "vector": {
        "lanes": Key(int, "elements per cycle of the vector / special-function unit", check=_above(0)),
        "sigmoid": Key(str, "how sigmoid is computed: lut (one table lookup), pwl (piecewise linear: compare + "
                       "multiply-add), exp-div (exp, add, divide)", "lut", choices=SIGMOID_METHODS),
        "silu": Key(str, "how SiLU is computed: lut, or sigmoid-mul (the sigmoid method, then a multiply)",
                    "sigmoid-mul", choices=SILU_METHODS),
        "rsqrt": Key(str, "how the per-row 1/sqrt of RMSNorm is computed: lut, newton (a seed lookup + two "
                     "Newton steps), sqrt-div", "newton", choices=RSQRT_METHODS),
    },
    "vector.latency_cycles": {
        "add": Key(int, "pipeline latency of an add/subtract (add, sub, 1 - x)", 2, _at_least(0)),
        "mul": Key(int, "pipeline latency of a multiply or multiply-add", 3, _at_least(0)),
        "div": Key(int, "pipeline latency of a divide or reciprocal", 12, _at_least(0)),
        "exp": Key(int, "pipeline latency of an exponential", 10, _at_least(0)),
        "lut": Key(int, "pipeline latency of a table lookup (sigmoid, SiLU, rsqrt seed)", 2, _at_least(0)),
        "reduce": Key(int, "extra latency of a row reduction (sum of squares, absmax) after its last element", 8,
                      _at_least(0)),
        "quantize": Key(int, "pipeline latency of scaling, rounding and clamping to int8", 3, _at_least(0)),
    },
    "sram": {
        "capacity_bytes": Key(int, "on-chip memory for weight tiles, activations and parameters", check=_above(0)),
        "banks": Key(int, "independently accessible banks: with 2 or more, a DMA fills one weight buffer while the "
                     "array reads the other (double buffering); with 1, they take turns", 8, _at_least(1)),
        "bytes_per_cycle": Key(int, "bandwidth of one unit's port into SRAM (each unit has its own)", check=_above(0)),
    },
    "dram": {
        "kind": Key(str, "what the memory is, in words (DDR4-2400, HBM2, ...)", ""),
        "gbps": Key(float, "sustained bandwidth, GB/s (1e9 bytes per second), shared by every DMA engine",
                    check=_above(0)),
        "latency_ns": Key(float, "from a request to its first data, ns (paid once per transfer, overlapped "
                          "between engines)", check=_at_least(0)),
    },
    "dma": {
        "engines": Key(int, "DMA engines: transfers in flight at once (each waits out its DRAM latency)", 2,
                       _at_least(1)),
        "setup_cycles": Key(int, "cycles an engine spends issuing one transfer", 0, _at_least(0)),
    },
    "weights": {
        "format": Key(str, "how ternary weights are stored in DRAM: 2bit (4 trits per byte) or base3 (5 per byte)",
                      "2bit", choices=WEIGHT_FORMATS),
    },
    "energy": {
        "add_pj": Key(float, "one add/subtract of the ternary array", check=_at_least(0)),
        "int8_op_pj": Key(float, "quantizing one element to int8 (scale, round, clamp)", check=_at_least(0)),
        "vector_op_pj": Key(float, "one element pass of the vector unit (an f32 add, multiply, lookup)",
                            check=_at_least(0)),
        "sram_byte_pj": Key(float, "one byte read or written in SRAM", check=_at_least(0)),
        "dram_byte_pj": Key(float, "one byte moved to or from DRAM", check=_at_least(0)),
        "static_w": Key(float, "static (leakage + always-on) power, watts", check=_at_least(0)),
    },
}
"""Section (``""`` for top-level keys, dotted for sub-tables) -> key -> :class:`Key`."""


# --------------------------------------------------------------------------------------------------
# The dataclass
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Tacc:
    lanes: int
    accumulator_bits: int
    latency_cycles: int
    skip_zeros: bool


@dataclass(frozen=True)
class Vector:
    lanes: int
    sigmoid: str
    silu: str
    rsqrt: str
    latency_cycles: dict[str, int]


@dataclass(frozen=True)
class Sram:
    capacity_bytes: int
    banks: int
    bytes_per_cycle: int


@dataclass(frozen=True)
class Dram:
    kind: str
    gbps: float
    latency_ns: float


@dataclass(frozen=True)
class Dma:
    engines: int
    setup_cycles: int


@dataclass(frozen=True)
class Energy:
    add_pj: float
    int8_op_pj: float
    vector_op_pj: float
    sram_byte_pj: float
    dram_byte_pj: float
    static_w: float


@dataclass(frozen=True, eq=False)
class Accelerator:
    """A validated accelerator description (build it with :func:`parse_arch` or :func:`load_arch`).

    ``values``: the resolved description as nested dicts (every key, defaults filled in), which is
    what :meth:`to_dict` returns and :meth:`with_values` edits; ``source``: where it came from
    (``preset edge-fpga``, a file path), for messages.
    """

    name: str
    description: str
    clock_mhz: float
    tacc: Tacc
    vector: Vector
    sram: Sram
    dram: Dram
    dma: Dma
    weight_format: str
    energy: Energy
    values: dict[str, Any]
    source: str

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Accelerator) and self.values == other.values

    def __hash__(self) -> int:
        return hash(repr(sorted(_flatten(self.values).items())))

    # ------------------------------------------------------------------ derived figures

    @property
    def dram_bytes_per_cycle(self) -> Fraction:
        """DRAM bytes per clock cycle, exactly: ``gbps * 1e9 / (clock_mhz * 1e6)``."""
        return _exact(self.dram.gbps) * 1000 / _exact(self.clock_mhz)

    @property
    def dram_latency_cycles(self) -> int:
        """The DRAM latency in whole cycles (rounded up)."""
        return math.ceil(_exact(self.dram.latency_ns) * _exact(self.clock_mhz) / 1000)

    def seconds(self, cycles: float) -> float:
        """``cycles`` at the clock, in seconds."""
        return float(cycles) / (self.clock_mhz * 1e6)

    def summary(self) -> str:
        """One line: clock, lanes, SRAM, DRAM (for ``mmfc sim``)."""
        mib = self.sram.capacity_bytes / 2**20
        dram = f"{self.dram.kind} " if self.dram.kind else ""
        return (
            f"{self.clock_mhz:g} MHz, {self.tacc.lanes} ternary lanes, {self.vector.lanes} vector lanes, "
            f"{mib:g} MiB SRAM, {dram}{self.dram.gbps:g} GB/s DRAM, {self.weight_format} weights"
        )

    # ------------------------------------------------------------------ as data

    def to_dict(self) -> dict[str, Any]:
        """The resolved description (every key, defaults filled in) as JSON-ready nested dicts."""
        return copy.deepcopy(self.values)

    def with_values(self, changes: Mapping[str, Any], where: str = "--set") -> Accelerator:
        """A copy with dotted keys changed (``{"dram.gbps": 50}``), validated again: an unknown key or
        a bad value is an :class:`ArchError` naming the key (``where`` says who asked)."""
        values = copy.deepcopy(self.values)
        for path, value in changes.items():
            section, key = _split_path(path)
            if section not in SCHEMA or key not in SCHEMA[section]:
                raise ArchError(f"{where}: {path}: {_unknown(section, key)}")
            table = values
            for part in section.split(".") if section else ():
                table = table.setdefault(part, {})
            table[key] = value
        return parse_arch(values, where=where, source=self.source)


def _exact(x: float) -> Fraction:
    """A float given in decimal (``19.2``) as the exact fraction it was written as (96/5)."""
    return Fraction(repr(float(x)))


def _flatten(values: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in values.items():
        if isinstance(v, Mapping):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _split_path(path: str) -> tuple[str, str]:
    section, _, key = path.rpartition(".")
    return section, key


def _unknown(section: str, key: str) -> str:
    if section and section not in SCHEMA:
        sections = ", ".join(f"[{s}]" for s in SCHEMA if s)
        return f"unknown section [{section}] (sections: {sections})"
    where = f"[{section}]" if section else "the top level"
    return f"unknown key (keys of {where}: {', '.join(SCHEMA[section])})"


# --------------------------------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------------------------------


def _typed(value: Any, key: Key) -> tuple[Any, str | None]:
    """``value`` as ``key.kind`` (an int is accepted for a float), or the problem in words."""
    if key.kind is bool:
        return value, None if isinstance(value, bool) else f"must be true or false, got {value!r}"
    if key.kind is int:
        if isinstance(value, bool) or not isinstance(value, int):
            return value, f"must be an integer, got {value!r}"
        return value, None
    if key.kind is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            return value, f"must be a number, got {value!r}"
        return float(value), None
    if not isinstance(value, str):
        return value, f"must be a string, got {value!r}"
    return value, None


def parse_arch(document: Mapping[str, Any], where: str = "arch.toml", source: str | None = None) -> Accelerator:
    """Validate a parsed description (``tomllib`` output, or the same nested dicts) and build the
    :class:`Accelerator`. Every problem is an :class:`ArchError` ``<where>: <key path>: <why>``."""
    if not isinstance(document, Mapping):
        raise ArchError(f"{where}: expected a table of sections, got {type(document).__name__}")
    resolved: dict[str, Any] = {}
    # unknown sections and keys first: a typo is the likeliest mistake
    _check_known(document, "", where)
    for section, keys in SCHEMA.items():
        table: Any = document
        for part in section.split(".") if section else ():
            table = table.get(part, {}) if isinstance(table, Mapping) else {}
        if not isinstance(table, Mapping):
            raise ArchError(f"{where}: {section}: must be a table ([{section}]), got {table!r}")
        out = resolved
        for part in section.split(".") if section else ():
            out = out.setdefault(part, {})
        for name, key in keys.items():
            path = f"{section}.{name}" if section else name
            if name not in table:
                if key.required:
                    raise ArchError(f"{where}: {path}: missing ({key.doc})")
                out[name] = key.default
                continue
            value, problem = _typed(table[name], key)
            if problem is None and key.choices is not None and value not in key.choices:
                problem = f"must be one of {', '.join(key.choices)}, got {value!r}"
            if problem is None and key.check is not None:
                problem = key.check(value)
            if problem is not None:
                raise ArchError(f"{where}: {path}: {problem}")
            out[name] = value
    return _build(resolved, source or where)


def _check_known(table: Mapping[str, Any], section: str, where: str) -> None:
    for name, value in table.items():
        path = f"{section}.{name}" if section else name
        if isinstance(value, Mapping):
            if path not in SCHEMA:
                parent, _, leaf = path.rpartition(".")
                if parent in SCHEMA and leaf in SCHEMA[parent]:
                    raise ArchError(f"{where}: {path}: must be a value, got a table")
                sections = ", ".join(f"[{s}]" for s in SCHEMA if s)
                raise ArchError(f"{where}: {path}: unknown section (sections: {sections})")
            _check_known(value, path, where)
        elif section not in SCHEMA or name not in SCHEMA[section]:
            if f"{path}" in SCHEMA:
                raise ArchError(f"{where}: {path}: must be a table ([{path}]), got {value!r}")
            raise ArchError(f"{where}: {path}: {_unknown(section, name)}")


def _build(v: dict[str, Any], source: str) -> Accelerator:
    vec = v["vector"]
    return Accelerator(
        name=v["name"],
        description=v["description"],
        clock_mhz=v["clock_mhz"],
        tacc=Tacc(**v["tacc"]),
        vector=Vector(vec["lanes"], vec["sigmoid"], vec["silu"], vec["rsqrt"], dict(vec["latency_cycles"])),
        sram=Sram(**v["sram"]),
        dram=Dram(**v["dram"]),
        dma=Dma(**v["dma"]),
        weight_format=v["weights"]["format"],
        energy=Energy(**v["energy"]),
        values=v,
        source=source,
    )


def parse_arch_text(text: str, where: str = "arch.toml") -> Accelerator:
    """Parse TOML text and validate it (a TOML syntax error is an :class:`ArchError` too)."""
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ArchError(f"{where}: not valid TOML: {exc}") from None
    return parse_arch(document, where=where)


def read_arch_file(path: str | os.PathLike[str]) -> Accelerator:
    """Read and validate a TOML description file; messages name it as given."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ArchError(f"{p}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ArchError(f"{p}: cannot be read: {exc}") from None
    return parse_arch_text(text, where=str(p))


# --------------------------------------------------------------------------------------------------
# Presets, through the mmfc.accelerators entry points
# --------------------------------------------------------------------------------------------------


def installed_accelerators() -> dict[str, EntryPoint]:
    """Preset name -> entry point (nothing imported); on a duplicate name the first one wins."""
    found: dict[str, EntryPoint] = {}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name in found:
            warnings.warn(f"accelerator preset '{ep.name}' is registered twice in {ENTRY_POINT_GROUP}; keeping the first",
                          stacklevel=2)
            continue
        found[ep.name] = ep
    return found


def _from_object(obj: Any, where: str) -> Accelerator:
    """What a preset entry point names: an :class:`Accelerator`, a mapping (parsed TOML), a path
    (``str``, ``PathLike`` or an ``importlib.resources`` traversable) to a TOML file, or a
    function of no arguments returning one of these."""
    if isinstance(obj, Accelerator):
        return obj
    if isinstance(obj, Mapping):
        return parse_arch(obj, where=where)
    if hasattr(obj, "read_text") and not isinstance(obj, type):
        return parse_arch_text(obj.read_text(encoding="utf-8"), where=where)
    if isinstance(obj, (str, os.PathLike)):
        arch = read_arch_file(obj)
        return parse_arch(arch.values, where=where)
    if callable(obj):
        return _from_object(obj(), where)
    raise ArchError(f"{where}: the entry point names a {type(obj).__name__}, not an accelerator description")


def load_preset(name: str) -> Accelerator:
    """The installed preset ``name``; unknown names list the installed ones."""
    found = installed_accelerators()
    if name not in found:
        presets = ", ".join(sorted(found)) or "none"
        raise ArchError(f"unknown accelerator {name!r} (presets: {presets}; or give a .toml file)")
    ep = found[name]
    where = f"preset {name}"
    try:
        obj = ep.load()
    except Exception as exc:  # a broken plugin is reported in one line
        raise ArchError(f"{where}: entry point '{ep.value}' cannot be loaded: {type(exc).__name__}: {exc}") from exc
    arch = _from_object(obj, where)
    return arch if arch.name else parse_arch({**arch.values, "name": name}, where=where)


def load_arch(spec: str | os.PathLike[str] | Accelerator | Mapping[str, Any] | None = None) -> Accelerator:
    """An accelerator from a preset name, a TOML file path, a parsed mapping, or an
    :class:`Accelerator` as it is; None is the default preset (:data:`DEFAULT_ARCH`). A string that
    names an existing file, or ends in ``.toml``, is a file; anything else a preset name."""
    if spec is None:
        spec = DEFAULT_ARCH
    if isinstance(spec, Accelerator):
        return spec
    if isinstance(spec, Mapping):
        return parse_arch(spec, where="arch")
    text = os.fspath(spec)
    if text.endswith(".toml") or os.path.isfile(text) or os.sep in text:
        arch = read_arch_file(text)
        return arch if arch.name else parse_arch({**arch.values, "name": Path(text).stem}, where=text)
    return load_preset(text)


def arch_option(value: Any) -> str:
    """A target/pass option value naming an accelerator, checked now (a ``ValueError`` with the
    one-line reason otherwise) and kept as given (artifacts record the name or path)."""
    if isinstance(value, Accelerator):
        raise ValueError("give a preset name or a .toml path (an Accelerator object cannot be recorded)")
    try:
        load_arch(value)
    except ArchError as exc:
        raise ValueError(str(exc)) from None
    return os.fspath(value)


__all__ = [
    "DEFAULT_ARCH",
    "ENTRY_POINT_GROUP",
    "RSQRT_METHODS",
    "SCHEMA",
    "SIGMOID_METHODS",
    "SILU_METHODS",
    "WEIGHT_FORMATS",
    "Accelerator",
    "ArchError",
    "Dma",
    "Dram",
    "Energy",
    "Key",
    "Sram",
    "Tacc",
    "Vector",
    "arch_option",
    "installed_accelerators",
    "load_arch",
    "load_preset",
    "parse_arch",
    "parse_arch_text",
    "read_arch_file",
]
