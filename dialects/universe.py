"""mmfc's dialects for plain ``xdsl-opt``, through the ``xdsl.universe`` entry point.

``pyproject.toml`` registers ``MMFC_UNIVERSE`` under ``[project.entry-points."xdsl.universe"]``; the
dialects load only when a tool asks for them, so discovering the plugin imports nothing heavy.
mmfc registers no pass under a name xDSL already has (canonicalize, cse, dce, ...).
"""

from __future__ import annotations

from xdsl.ir import Dialect
from xdsl.universe import Universe


def get_ternary() -> Dialect:
    """The ``ternary`` dialect (imported on first use)."""
    from mmfc.dialects.ternary import Ternary

    return Ternary


def get_accel() -> Dialect:
    """The ``accel`` dialect, the simulator's instruction set (imported on first use)."""
    from mmfc.dialects.accel import Accel

    return Accel


MMFC_UNIVERSE = Universe(all_dialects={"ternary": get_ternary, "accel": get_accel})
