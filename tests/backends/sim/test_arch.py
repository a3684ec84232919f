"""Accelerator descriptions: presets through the ``mmfc.accelerators`` entry points, and every mistake
in a file one line naming the key path."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from mmfc.dialects.arch import (
    SCHEMA,
    Accelerator,
    ArchError,
    installed_accelerators,
    load_arch,
    parse_arch,
    parse_arch_text,
)
from mmfc.dialects.accelerators import EDGE_FPGA

PRESETS = ("edge-fpga", "asic", "tereffic-hbm")


@pytest.mark.parametrize("name", PRESETS)
def test_presets_load_and_name_their_sources(name: str) -> None:
    assert name in installed_accelerators()
    arch = load_arch(name)
    assert arch.name == name
    text = (Path(EDGE_FPGA).parent / f"{name}.toml").read_text()
    assert "source" in text and ("assumption" in text or "not published" in text)
    assert arch.dram_bytes_per_cycle > 0 and arch.dram_latency_cycles >= 0


def test_tereffic_preset_is_the_published_design() -> None:
    a = load_arch("tereffic-hbm")
    assert a.weight_format == "base3" and a.dram.gbps == 460 and a.dma.engines == 32
    text = (Path(EDGE_FPGA).parent / "tereffic-hbm.toml").read_text()
    assert "2502.16473" in text and "UG1393" in text and "not published" in text


def test_defaults_fill_in_and_the_resolved_description_round_trips() -> None:
    minimal = """
clock_mhz = 100
[tacc]
lanes = 128
[vector]
lanes = 8
[sram]
capacity_bytes = 65536
bytes_per_cycle = 64
[dram]
gbps = 12.8
latency_ns = 50
[energy]
add_pj = 1
int8_op_pj = 1
vector_op_pj = 1
sram_byte_pj = 1
dram_byte_pj = 1
static_w = 0
"""
    arch = parse_arch_text(minimal)
    assert arch.weight_format == "2bit" and arch.dma.engines == 2 and arch.vector.latency_cycles["exp"] == 10
    assert parse_arch(arch.to_dict()) == arch
    assert arch.dram_bytes_per_cycle == 128  # 12.8 GB/s at 100 MHz, exactly
    assert arch.dram_latency_cycles == 5


@pytest.mark.parametrize(
    "edit,message",
    [
        ({"dram.gbps": -5}, "arch.toml: dram.gbps: must be > 0, got -5"),
        ({"tacc.lanes": 0}, "arch.toml: tacc.lanes: must be > 0, got 0"),
        ({"tacc.lanes": 2.5}, "arch.toml: tacc.lanes: must be an integer, got 2.5"),
        ({"tacc.skip_zeros": 1}, "arch.toml: tacc.skip_zeros: must be true or false, got 1"),
        ({"weights.format": "3bit"}, "arch.toml: weights.format: must be one of 2bit, base3, got '3bit'"),
        ({"vector.sigmoid": "tanh"}, "arch.toml: vector.sigmoid: must be one of lut, pwl, exp-div, got 'tanh'"),
        ({"vector.latency_cycles.exp": -1}, "arch.toml: vector.latency_cycles.exp: must be >= 0, got -1"),
        ({"energy.static_w": "x"}, "arch.toml: energy.static_w: must be a number, got 'x'"),
        ({"dram.gbs": 1}, "arch.toml: dram.gbs: unknown key (keys of [dram]: kind, gbps, latency_ns)"),
        ({"tac.lanes": 1}, "arch.toml: tac.lanes: unknown section [tac]"),
    ],
)
def test_every_mistake_names_its_key(edit: dict, message: str) -> None:
    with pytest.raises(ArchError) as exc:
        load_arch("edge-fpga").with_values(edit, where="arch.toml")
    assert str(exc.value).startswith(message)
    assert "\n" not in str(exc.value)


@pytest.mark.parametrize(
    "text,message",
    [
        ("clock_mhz = 1\n[foo]\nx = 1\n", "arch.toml: foo: unknown section"),
        ("clock_mhz = 1\n[tacc]\nlane = 1\n", "arch.toml: tacc.lane: unknown key"),
        ("clock_mhz = 1\n[tacc]\nlanes = 1\n", "arch.toml: vector.lanes: missing"),
        ("[tacc\n", "arch.toml: not valid TOML"),
        ("clock_mhz = 1\ntacc = 3\n", "arch.toml: tacc: must be a table"),
    ],
)
def test_file_mistakes(text: str, message: str) -> None:
    with pytest.raises(ArchError, match="^" + message.replace("[", r"\[")):
        parse_arch_text(text)


def test_files_and_errors_name_the_file(tmp_path: Path) -> None:
    good = tmp_path / "mine.toml"
    good.write_text((Path(EDGE_FPGA).parent / "edge-fpga.toml").read_text().replace('name = "edge-fpga"', 'name = "mine"'))
    assert load_arch(str(good)).name == "mine"
    bad = tmp_path / "arch.toml"
    bad.write_text(good.read_text().replace("gbps = 19.2", "gbps = -5"))
    with pytest.raises(ArchError, match=f"^{bad}: dram.gbps: must be > 0, got -5$"):
        load_arch(str(bad))
    with pytest.raises(ArchError, match="no such file"):
        load_arch(str(tmp_path / "missing.toml"))
    with pytest.raises(ArchError, match="unknown accelerator 'nope' .presets: asic, edge-fpga, tereffic-hbm"):
        load_arch("nope")


def test_a_plugin_preset_may_be_a_mapping_or_a_function(monkeypatch: pytest.MonkeyPatch) -> None:
    """What an ``mmfc.accelerators`` entry point may name, resolved as a plugin's would be."""
    from mmfc.dialects import arch as arch_mod

    asic = load_arch("asic")
    values = asic.to_dict()

    class FakeEntryPoint:
        def __init__(self, name: str, obj: object) -> None:
            self.name, self.value, self.obj = name, f"plugin:{name}", obj

        def load(self) -> object:
            return self.obj

    eps = {"from-dict": FakeEntryPoint("from-dict", {**values, "name": ""}),
           "from-function": FakeEntryPoint("from-function", lambda: asic)}
    monkeypatch.setattr(arch_mod, "installed_accelerators", lambda: eps)
    assert load_arch("from-dict").name == "from-dict"
    assert load_arch("from-function") == asic


def test_schema_documents_every_key() -> None:
    doc = (Path(__file__).resolve().parents[3] / "docs" / "simulator.md").read_text()
    for section, keys in SCHEMA.items():
        for key in keys:
            path = f"{section}.{key}" if section else key
            documented = f"`{path}`" in doc or (section == "vector.latency_cycles" and f"`{key}`" in doc)
            assert documented, f"docs/simulator.md does not document {path}"


def test_derived_figures_are_exact() -> None:
    a: Accelerator = load_arch("tereffic-hbm")
    assert a.dram_bytes_per_cycle * 3 == 4600  # 460 GB/s at 300 MHz
    assert a.dram_latency_cycles == math.ceil(300 * 300 / 1000)
