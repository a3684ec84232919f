"""``python -m mmfc.demo`` (what ``make demo`` runs): it must keep working and keep checking its claims."""

from __future__ import annotations

import pytest

from mmfc import demo


def test_demo_runs_and_every_check_holds(capsys: pytest.CaptureFixture[str]) -> None:
    assert demo.main() == 0
    out = capsys.readouterr().out
    assert "FAILED" not in out
    for header in ("== 1.", "== 2.", "== 3.", "== 4.", "== 5.", "== 6.", "== 7.", "== 8."):
        assert header in out
    assert out.count("[ok]") >= 16


def test_demo_fails_when_a_claim_does_not_hold(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # no difference can be below a negative bound: the prefill-vs-decode check must report a failure
    monkeypatch.setattr(demo, "MAX_ABS_LOGIT_DIFF", -1.0)
    for section in ("compile_section", "iree_section", "triton_section", "sim_section"):  # slow, not under test here
        monkeypatch.setattr(demo, section, lambda *args: None)
    assert demo.main() == 1
    captured = capsys.readouterr()
    assert "[FAILED] max |Δlogits|" in captured.out
    assert "demo FAILED" in captured.err
