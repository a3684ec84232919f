"""The accelerator presets mmfc ships: one TOML file each, with its sources in comments.

Each is registered under the entry-point group ``mmfc.accelerators`` (``pyproject.toml``) exactly as a
plugin registers its own: the entry point names one of the paths below (a plugin may also name a
mapping, an :class:`~mmfc.dialects.arch.Accelerator`, or a function returning one).
"""

from __future__ import annotations

from importlib.resources import files

EDGE_FPGA = files(__name__) / "edge-fpga.toml"
ASIC = files(__name__) / "asic.toml"
TEREFFIC_HBM = files(__name__) / "tereffic-hbm.toml"

__all__ = ["ASIC", "EDGE_FPGA", "TEREFFIC_HBM"]
