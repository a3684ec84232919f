"""``mmfc sim`` and ``mmfc sim sweep``: the report, the trace, the CSV (local processes and Ray give
the same), failed points as rows, and one-line errors naming the key for bad arch files and --set.

Also the two figures the issue asks for: a DRAM-bound design's decode time per token is within 10% of
packed weight bytes / bandwidth, and the TerEffic-modelled preset's 2.7B decode rate is reported next
to the published 727 tok/s (whatever the error).
"""

from __future__ import annotations

import csv
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from mmfc.cli import main


def run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    try:
        rc = main(argv)
    except SystemExit as exc:
        rc = exc.code if isinstance(exc.code, int) else 1
    out, err = capsys.readouterr()
    return rc, out, err


def test_sim_reports_and_traces(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    trace = tmp_path / "t.json"
    rc, out, err = run_cli(["sim", "--preset", "tiny", "--arch", "edge-fpga", "--tokens", "3", "--prompt-len", "4",
                            "--trace", str(trace), "--json"], capsys)
    assert rc == 0, err
    report = json.loads(out)
    for key in ("arch", "cycles", "seconds_per_token", "tokens_per_s", "dram_bytes_per_token", "energy_j_per_token",
                "utilization", "stalls"):
        assert key in report
    assert report["arch"]["name"] == "edge-fpga" and report["decode"]["calls"] == 3 and len(report["new_ids"][0]) == 3
    assert math.isclose(report["tokens_per_s"] * report["seconds_per_token"], 1.0)
    events = json.loads(trace.read_text())["traceEvents"]
    lanes = {e["args"]["name"] for e in events if e["ph"] == "M" and e["name"] == "thread_name"}
    assert {"tacc", "vector", "dma 0"} <= lanes
    spans = [e for e in events if e["ph"] == "X"]
    assert spans and max(e["args"]["end_cycle"] for e in spans) == report["cycles"]
    rc, out, _ = run_cli(["sim", "--preset", "tiny", "--tokens", "3", "--prompt-len", "4", "--timing-only"], capsys)
    assert rc == 0 and "decode:" in out and "tok/s" in out and "stalls" in out


@pytest.mark.parametrize(
    "args,message",
    [
        (["--arch", "ARCH"], "dram.gbps: must be > 0, got -5"),
        (["--arch", "nope"], "unknown accelerator 'nope'"),
        (["--tokens", "-1"], "must be >= 0"),
    ],
)
def test_sim_mistakes_are_one_line(args: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from mmfc.dialects.accelerators import EDGE_FPGA

    bad = tmp_path / "arch.toml"
    bad.write_text(Path(EDGE_FPGA).read_text().replace("gbps = 19.2", "gbps = -5"))
    args = [str(bad) if a == "ARCH" else a for a in args]
    rc, out, err = run_cli(["sim", "--preset", "tiny", *args], capsys)
    assert rc == 2 and message in err and err.count("\n") == 1 and "Traceback" not in err
    if "ARCH" not in args:
        assert out == ""


def sweep(tmp_path: Path, capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[int, str, str]:
    return run_cli(["sim", "sweep", "--preset", "tiny", "--arch", "edge-fpga", "--set", "dram.gbps=12.8,25.6",
                    "--set", "tacc.lanes=256,1024", "--set", "sram.capacity_bytes=2000,2097152",
                    "--tokens", "2", "--prompt-len", "4", *extra], capsys)


def test_sweep_local_and_ray_give_the_same_csv(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, _, err = sweep(tmp_path, capsys, "-o", str(tmp_path / "local"), "--workers", "2")
    assert rc == 0, err
    text = (tmp_path / "local" / "sweep.csv").read_text()
    rows = list(csv.DictReader(text.splitlines()))
    assert len(rows) == 8 and [r["dram.gbps"] for r in rows[:2]] == ["12.8", "12.8"]
    failed = [r for r in rows if r["status"] == "error"]
    assert len(failed) == 4 and all("sram.capacity_bytes: 2000 is too small" in r["error"] for r in failed)
    ok = [r for r in rows if r["status"] == "ok"]
    assert all(float(r["tokens_per_s"]) > 0 for r in ok)
    assert (tmp_path / "local" / "pareto.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rc, _, err = sweep(tmp_path, capsys, "-o", str(tmp_path / "ray"), "--executor", "ray", "--workers", "2", "--no-plot")
    assert rc == 0, err
    assert (tmp_path / "ray" / "sweep.csv").read_text() == text


@pytest.mark.parametrize(
    "sets,message",
    [
        (["dram.gbps=25,-5"], "--set dram.gbps=-5: dram.gbps: must be > 0, got -5"),
        (["dram.gbs=25"], "dram.gbs: unknown key"),
        (["tacc.lanes=64,big"], "tacc.lanes: must be an integer, got 'big'"),
        (["tacc.lanes"], "expected KEY=V1,V2"),
    ],
)
def test_bad_set_values_name_the_key(sets: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["sim", "sweep", "--preset", "tiny", "-o", str(tmp_path / "out")]
    for s in sets:
        argv += ["--set", s]
    rc, _, err = run_cli(argv, capsys)
    assert rc == 2 and message in err and err.count("\n") == 1
    assert not (tmp_path / "out").exists()


def test_ray_without_a_cluster_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, _, err = run_cli(["sim", "sweep", "--preset", "tiny", "--set", "dram.gbps=10", "--executor", "ray",
                          "--address", "127.0.0.1:1", "--no-plot", "-o", str(tmp_path / "o")], capsys)
    assert rc == 2 and "cannot connect to Ray" in err and err.count("\n") == 1


def test_dram_bound_decode_is_weight_bytes_over_bandwidth(capsys: pytest.CaptureFixture[str]) -> None:
    """A DRAM-bound design: decode time per token within 10% of the packed weight bytes over the
    bandwidth (the 370m shape: 24 layers, d=1024, timing only)."""
    rc, out, err = run_cli(["sim", "--preset", "370m", "--arch", "edge-fpga", "--timing-only", "--tokens", "1",
                            "--prompt-len", "0", "--json"], capsys)
    assert rc == 0, err
    report = json.loads(out)
    d, layers, inter, vocab = 1024, 24, 2816, 32000
    rows_k = [(d, d)] * 4 + [(2 * inter, d), (d, inter)]
    weight_bytes = layers * sum(n * math.ceil(k / 4) for n, k in rows_k) + vocab * math.ceil(d / 4)
    assert report["dram_bytes_by_payload_per_token"]["weight"] == weight_bytes
    bound = weight_bytes / (report["arch"]["dram"]["gbps"] * 1e9)
    assert abs(report["seconds_per_token"] / bound - 1) <= 0.10, (report["seconds_per_token"], bound)
    assert report["utilization"]["dram"] > 0.9


def test_tereffic_prediction_is_reported_next_to_the_published_rate() -> None:
    """A 2.7B-shaped model on the tereffic-hbm preset carries the published figure and the error
    (``mmfc sim --preset 2.7b --arch tereffic-hbm --timing-only`` prints it; benchmarks/RESULTS.md has
    the measured run, too slow to build here)."""
    from mmfc.commands.sim import _published
    from mmfc.dialects.arch import load_arch

    got = _published(load_arch("tereffic-hbm"), {"hidden_size": 2560, "num_hidden_layers": 32}, {"tokens_per_s": 700.0})
    assert got is not None and got["tokens_per_s"] == 727.0 and math.isclose(got["error"], 700 / 727 - 1)
    assert _published(load_arch("tereffic-hbm"), {"hidden_size": 1024, "num_hidden_layers": 24}, {"tokens_per_s": 1.0}) is None
    assert _published(load_arch("asic"), {"hidden_size": 2560, "num_hidden_layers": 32}, {"tokens_per_s": 1.0}) is None


def test_the_cli_stays_light() -> None:
    code = "import sys, mmfc.cli; mmfc.cli.build_parser(); assert not {'ray', 'matplotlib', 'torch'} & set(sys.modules)"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_sim_runs_an_artifact_on_its_own_accelerator(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The artifact carries its resolved description: the .toml it was compiled from may be gone."""
    from mmfc.dialects.accelerators import ASIC

    mine = tmp_path / "mine.toml"
    mine.write_text(Path(ASIC).read_text().replace('name = "asic"', 'name = "mine"').replace("lanes = 16384", "lanes = 512"))
    rc, _, err = run_cli(["compile", "--preset", "tiny", "--target", "sim", "--arch", str(mine), "-o", str(tmp_path / "m.sim")], capsys)
    assert rc == 0, err
    mine.unlink()
    rc, out, err = run_cli(["sim", str(tmp_path / "m.sim"), "--tokens", "2", "--json"], capsys)
    assert rc == 0, err
    report = json.loads(out)
    assert report["arch"]["name"] == "mine" and report["arch"]["tacc"]["lanes"] == 512
    rc, out, err = run_cli(["sim", str(tmp_path / "m.sim"), "--arch", "edge-fpga", "--tokens", "2", "--json"], capsys)
    assert rc == 0 and json.loads(out)["arch"]["name"] == "edge-fpga"


@pytest.mark.parametrize(
    "old,new,message",
    [
        ("accumulator_bits = 32", "accumulator_bits = 12", "tacc.accumulator_bits: 12 cannot hold the sums of kernel"),
        ("capacity_bytes = 2097152", "capacity_bytes = 3000", "sram.capacity_bytes: 3000 is too small for kernel"),
    ],
)
def test_designs_that_cannot_run_the_model_say_which_key(
    old: str, new: str, message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from mmfc.dialects.accelerators import EDGE_FPGA

    arch = tmp_path / "small.toml"
    arch.write_text(Path(EDGE_FPGA).read_text().replace(old, new))
    rc, out, err = run_cli(["sim", "--preset", "tiny", "--arch", str(arch), "--timing-only"], capsys)
    assert rc == 2 and message in err and str(arch) in err and err.count("\n") == 1 and out == ""
