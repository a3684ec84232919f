"""``mmfc passes``: the passes of the ``mmfc.passes`` entry points (and xDSL's with ``--all``), with
package, description and options; a broken plugin is one line of the listing, never a crash."""

from __future__ import annotations

import json
import re
import textwrap
import warnings
from importlib.metadata import EntryPoint
from pathlib import Path

import pytest

from mmfc import pipeline
from mmfc.cli import main

PLUGIN = textwrap.dedent(
    '''\
    from dataclasses import dataclass
    from xdsl.passes import ModulePass

    @dataclass(frozen=True)
    class Interleave(ModulePass):
        """Interleave i/f/g weight rows for one streaming pass.

        More text that the listing does not show.
        """

        name = "reorder-projections"
        block: int = 4
        formats: tuple[str, ...] = ("2bit", "base3")
        verbose: bool = False

        def apply(self, ctx, op) -> None:
            pass

    @dataclass(frozen=True)
    class NeedsValue(ModulePass):
        name = "needs-value"
        value: int

        def apply(self, ctx, op) -> None:
            pass

    @dataclass(frozen=True)
    class Misnamed(ModulePass):
        """Registered under another name."""
        name = "some-other-name"

        def apply(self, ctx, op) -> None:
            pass
    '''
)


@pytest.fixture
def plugins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """Make ``entry_points(group="mmfc.passes")`` return exactly the given (name, value) pairs."""
    (tmp_path / "fake_listing_plugin.py").write_text(PLUGIN)
    monkeypatch.syspath_prepend(str(tmp_path))

    def install(*pairs: tuple[str, str]) -> None:
        eps = [EntryPoint(name=name, value=value, group=pipeline.ENTRY_POINT_GROUP) for name, value in pairs]
        monkeypatch.setattr(
            pipeline, "entry_points", lambda *, group: eps if group == pipeline.ENTRY_POINT_GROUP else []
        )

    return install


def listing(capsys: pytest.CaptureFixture[str], *flags: str) -> str:
    rc = main(["passes", *flags])
    out, err = capsys.readouterr()
    assert (rc, err) == (0, ""), err
    return out


def test_lists_plugin_passes_with_package_description_and_options(
    plugins, capsys: pytest.CaptureFixture[str]
) -> None:  # type: ignore[no-untyped-def]
    plugins(
        ("reorder-projections", "fake_listing_plugin:Interleave"),
        ("needs-value", "fake_listing_plugin:NeedsValue"),
    )
    lines = listing(capsys).splitlines()
    # sorted by name; xDSL's passes are not listed by default
    heads = [line.split()[0] for line in lines if not line.startswith(" ")]
    assert heads == ["needs-value", "reorder-projections"]
    head = next(i for i, line in enumerate(lines) if line.startswith("reorder-projections"))
    assert re.fullmatch(
        r"reorder-projections +fake_listing_plugin +Interleave i/f/g weight rows for one streaming pass\.",
        lines[head],
    ), lines[head]
    options = [line.strip() for line in lines[head + 1 : head + 4]]
    assert options == [
        "block: int = 4",
        "formats: tuple[str, ...] = 2bit,base3",
        "verbose: bool = false",
    ]
    needs = lines.index(next(line for line in lines if line.startswith("needs-value")))
    assert lines[needs].endswith("(no description)")
    assert lines[needs + 1].strip() == "value: int required"


def test_all_adds_xdsls_passes(
    plugins, capsys: pytest.CaptureFixture[str]
) -> None:  # type: ignore[no-untyped-def]
    plugins(("reorder-projections", "fake_listing_plugin:Interleave"))
    rows = [line.split() for line in listing(capsys, "--all").splitlines() if not line.startswith(" ")]
    names = {row[0]: row[1] for row in rows}
    assert names["cse"] == names["canonicalize"] == names["dce"] == "xdsl"
    assert names["reorder-projections"] == "fake_listing_plugin"
    assert "cse" not in listing(capsys)


@pytest.mark.parametrize(
    "value, error",
    [
        (
            "no_such_module_for_listing:Pass",
            r"cannot be loaded: ModuleNotFoundError: No module named 'no_such_module_for_listing'",
        ),
        (
            "fake_listing_plugin:Misnamed",
            r"entry point .* names pass 'some-other-name'; the entry point must be named the same",
        ),
    ],
)
def test_a_broken_plugin_is_one_line_of_the_listing(
    plugins, capsys: pytest.CaptureFixture[str], value: str, error: str
) -> None:  # type: ignore[no-untyped-def]
    plugins(("broken-pass", value), ("reorder-projections", "fake_listing_plugin:Interleave"))
    lines = listing(capsys).splitlines()
    broken = [line for line in lines if line.startswith("broken-pass")]
    assert len(broken) == 1 and re.search(error, broken[0]), broken
    assert lines[lines.index(broken[0]) + 1].startswith("reorder-projections")  # no option lines, no crash


def test_a_plugin_shadowing_an_xdsl_pass_is_shown_as_ignored(
    plugins, capsys: pytest.CaptureFixture[str]
) -> None:  # type: ignore[no-untyped-def]
    plugins(("cse", "fake_listing_plugin:Interleave"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the listing explains it; no warning on top
        out = listing(capsys)
    expected = r"cse +fake_listing_plugin +ignored: xDSL already has a pass of this name\n"
    assert re.fullmatch(expected, out), out


def test_a_second_registration_of_a_name_is_shown_as_ignored(
    plugins, capsys: pytest.CaptureFixture[str]
) -> None:  # type: ignore[no-untyped-def]
    plugins(
        ("reorder-projections", "fake_listing_plugin:Interleave"),
        ("reorder-projections", "fake_listing_plugin:Misnamed"),
    )
    rows = [line for line in listing(capsys).splitlines() if not line.startswith(" ")]
    assert len(rows) == 2
    assert rows[0].endswith("Interleave i/f/g weight rows for one streaming pass.")  # the one in use first
    assert rows[1].endswith("ignored: fake_listing_plugin registers this name first")


def test_json(plugins, capsys: pytest.CaptureFixture[str]) -> None:  # type: ignore[no-untyped-def]
    plugins(("reorder-projections", "fake_listing_plugin:Interleave"), ("broken", "nope_module_x:P"))
    data = json.loads(listing(capsys, "--json"))
    by_name = {p["name"]: p for p in data["passes"]}
    assert set(by_name) == {"reorder-projections", "broken"}
    reorder = by_name["reorder-projections"]
    assert reorder["package"] == "fake_listing_plugin" and reorder["error"] is None
    assert reorder["description"] == "Interleave i/f/g weight rows for one streaming pass."
    assert reorder["entry_point"] == "fake_listing_plugin:Interleave"
    assert reorder["options"][0] == {"name": "block", "type": "int", "default": "4", "required": False}
    assert by_name["broken"]["error"].startswith("cannot be loaded: ModuleNotFoundError")
    assert by_name["broken"]["options"] == []


def test_mmfcs_own_passes_are_listed_as_mmfc(capsys: pytest.CaptureFixture[str]) -> None:
    """The built-in passes register through entry points (pyproject.toml) under the package mmfc."""
    data = json.loads(listing(capsys, "--json"))
    packages = {p["name"]: p["package"] for p in data["passes"]}
    for name in ("fold-weight-quant", "pack-weights", "check-matmul-free"):
        assert packages.get(name) == "mmfc", name
    assert "cse" not in packages
