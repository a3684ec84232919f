"""mmfc/pipeline.py: xDSL's passes plus the ``mmfc.passes`` entry points, and pipeline parsing."""

from __future__ import annotations

import textwrap
import warnings
from importlib.metadata import EntryPoint
from pathlib import Path

import pytest
from xdsl.passes import ModulePass

from mmfc import pipeline
from mmfc.cli import main
from mmfc.dialects.diagnostics import UserError

PLUGIN = textwrap.dedent(
    """\
    from dataclasses import dataclass
    from xdsl.dialects.builtin import IntegerAttr, ModuleOp
    from xdsl.passes import ModulePass

    @dataclass(frozen=True)
    class StampPass(ModulePass):
        name = "stamp-module"
        value: int = 1

        def apply(self, ctx, op: ModuleOp) -> None:
            op.attributes["plugin.stamp"] = IntegerAttr(self.value, 64)

    @dataclass(frozen=True)
    class Misnamed(ModulePass):
        name = "some-other-name"

        def apply(self, ctx, op) -> None:
            pass

    NOT_A_PASS = 42
    """
)


@pytest.fixture
def fake_plugins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """Install a plugin module and make ``entry_points(group="mmfc.passes")`` return the given ones."""
    (tmp_path / "fake_mmfc_plugin.py").write_text(PLUGIN)
    monkeypatch.syspath_prepend(str(tmp_path))

    def install(*pairs: tuple[str, str]) -> None:
        eps = [EntryPoint(name=name, value=value, group=pipeline.ENTRY_POINT_GROUP) for name, value in pairs]

        def fake_entry_points(*, group: str) -> list[EntryPoint]:
            return eps if group == pipeline.ENTRY_POINT_GROUP else []

        monkeypatch.setattr(pipeline, "entry_points", fake_entry_points)

    return install


def test_xdsls_passes_are_available_without_importing_them() -> None:
    passes = pipeline.available_passes()
    for name in ("cse", "canonicalize", "dce"):
        assert passes[name]().name == name


def test_plugin_pass_is_discovered_and_runs(
    fake_plugins, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:  # type: ignore[no-untyped-def]
    fake_plugins(("stamp-module", "fake_mmfc_plugin:StampPass"))
    passes = pipeline.available_passes()
    assert passes["stamp-module"]().__name__ == "StampPass"
    assert (
        pipeline.pass_origins()["stamp-module"] == "fake_mmfc_plugin"
        and pipeline.pass_origins()["cse"] == "xdsl"
    )
    [stamp] = pipeline.parse_pipeline("stamp-module{value=5}")
    assert isinstance(stamp, ModulePass) and stamp.value == 5  # type: ignore[attr-defined]

    src = tmp_path / "m.mlir"
    src.write_text("func.func @f() {\n  func.return\n}\n")
    assert main(["opt", str(src), "-p", "cse,stamp-module{value=3}"]) == 0
    assert "plugin.stamp = 3 : i64" in capsys.readouterr().out


def test_plugin_may_not_shadow_an_xdsl_pass(fake_plugins) -> None:  # type: ignore[no-untyped-def]
    fake_plugins(("cse", "fake_mmfc_plugin:StampPass"))
    with pytest.warns(UserWarning, match="'cse'.*xDSL already has"):
        passes = pipeline.available_passes()
    assert passes["cse"]().__module__.startswith("xdsl.")


def test_duplicate_plugin_names_keep_the_first(fake_plugins) -> None:  # type: ignore[no-untyped-def]
    fake_plugins(
        ("stamp-module", "fake_mmfc_plugin:StampPass"), ("stamp-module", "fake_mmfc_plugin:Misnamed")
    )
    with pytest.warns(UserWarning, match="registered twice"):
        passes = pipeline.available_passes()
    assert passes["stamp-module"]().__name__ == "StampPass"


@pytest.mark.parametrize(
    "value, message",
    [
        ("fake_mmfc_plugin:NOT_A_PASS", "does not name a ModulePass subclass"),
        ("fake_mmfc_plugin:Misnamed", "names pass 'some-other-name'"),
        ("no_such_module_xyz:Pass", "cannot be loaded: ModuleNotFoundError"),
    ],
)
def test_broken_plugin_is_a_user_error_when_used(fake_plugins, value: str, message: str) -> None:  # type: ignore[no-untyped-def]
    fake_plugins(("broken-pass", value))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # listing passes must not load (or complain about) the plugin
        passes = pipeline.available_passes()
    assert "broken-pass" in passes
    with pytest.raises(UserError, match=message):
        pipeline.parse_pipeline("broken-pass")


def test_unknown_pass_names_close_matches() -> None:
    with pytest.raises(UserError) as info:
        pipeline.parse_pipeline("cse,dcee")
    assert str(info.value) == "unknown pass 'dcee' (did you mean dce?)"
    with pytest.raises(UserError, match="no registered pass has a similar name"):
        pipeline.parse_pipeline("zzzzqqqq")


def test_pipeline_syntax_and_option_errors_are_one_line() -> None:
    with pytest.raises(UserError) as info:
        pipeline.parse_pipeline("cse{x=")
    assert "\n" not in str(info.value) and str(info.value).startswith(
        "invalid pass pipeline 'cse{x=' at column"
    )
    with pytest.raises(UserError, match="pass 'cse': .*bogus"):
        pipeline.parse_pipeline("cse{bogus=1}")


def test_pipeline_keeps_the_order() -> None:
    passes = pipeline.parse_pipeline("dce,cse,canonicalize")
    assert [p.name for p in passes] == ["dce", "cse", "canonicalize"]
