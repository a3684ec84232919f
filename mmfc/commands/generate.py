"""``mmfc generate [ARTIFACT] (--model DIR | --preset NAME) (--prompt TEXT | --prompt-ids IDS) ...``.

Runs the PyTorch model (compiled artifacts come with ``mmfc compile``): prefill the prompt, then decode
token by token with the recurrent state, through ``HGRNBitForCausalLM.generate``. Greedy unless
``--temperature``, ``--top-k`` or ``--top-p`` ask for sampling (seeded by ``--seed``); stops at the
config's ``eos_token_id`` unless ``--ignore-eos``.

Output: the new token ids (comma-separated, so they can be pasted back into ``--prompt-ids``) and, with a
tokenizer, the decoded text on stdout; a timing line on stderr. ``--json`` prints one JSON object instead
(timing included).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mmfc.commands.target_options import add_target_arguments, target_options_from_args
from mmfc.source import (
    ModelSource,
    add_init_seed_argument,
    add_model_arguments,
    load_config,
    load_model,
    seed_value,
    source_from_args,
)
from mmfc.dialects.diagnostics import UserError

if TYPE_CHECKING:
    from mmfc.frontends.torch.modeling import HGRNBitForCausalLM

DEFAULT_MAX_NEW_TOKENS = 32


# ------------------------------------------------------------------------------------ flag value types
# Each raises ArgumentTypeError, which argparse reports as one line with exit code 2.


def token_ids(text: str) -> list[int]:
    """``"1,2,3"`` -> ``[1, 2, 3]`` (commas and/or spaces between ids)."""
    parts = [p for p in text.replace(",", " ").split()]
    if not parts:
        raise argparse.ArgumentTypeError("expected comma-separated token ids, e.g. 1,2,3")
    try:
        return [int(p) for p in parts]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a list of integer token ids, e.g. 1,2,3") from None


def _int_at_least(minimum: int) -> Any:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {value}")
        return value

    return parse


def _float_in(low: float, high: float | None, low_open: bool = True) -> Any:
    """A float in ``(low, high]`` (``[low, high]`` when not ``low_open``; no upper bound when None)."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        too_low = value <= low if low_open else value < low
        if too_low or (high is not None and not value <= high) or not math.isfinite(value):
            lo = "(" if low_open else "["
            hi = f"{high}]" if high is not None else "inf)"
            finite = "" if high is not None else " and be finite"
            raise argparse.ArgumentTypeError(f"must lie in {lo}{low}, {hi}{finite}, got {text}")
        return value

    return parse


# ------------------------------------------------------------------------------------------ timing


@dataclass
class Timing:
    """Wall-clock seconds spent loading, in the prefill, and in the decode steps (CPU: synchronous)."""

    load_s: float = 0.0
    prefill_s: float = 0.0
    prefill_tokens: int = 0
    decode_s: float = 0.0
    decode_steps: int = 0

    def as_dict(self) -> dict[str, float | int]:
        return {
            "load_ms": round(self.load_s * 1e3, 3),
            "prefill_ms": round(self.prefill_s * 1e3, 3),
            "prefill_tokens": self.prefill_tokens,
            "decode_ms_per_token": round(self.decode_s * 1e3 / self.decode_steps, 3)
            if self.decode_steps
            else None,
            "decode_steps": self.decode_steps,
        }


@contextmanager
def timed(model: HGRNBitForCausalLM, timing: Timing) -> Iterator[None]:
    """Time ``model.prefill`` and ``model.decode_step`` while ``model.generate`` runs.

    ``generate`` calls both through ``self``, so instance attributes wrapping the methods see every call;
    they are removed on exit.
    """
    # a compiled model's generate calls its private step (which skips a copy of the logits)
    step_name = "_decode_step" if hasattr(model, "_decode_step") else "decode_step"
    prefill, decode_step = model.prefill, getattr(model, step_name)
    sync = _synchronizer(model)

    def timed_prefill(input_ids: Any, attention_mask: Any = None, state: Any = None) -> Any:
        start = time.perf_counter()
        out = prefill(input_ids, attention_mask, state)
        sync()
        timing.prefill_s += time.perf_counter() - start
        timing.prefill_tokens += int(input_ids.shape[-1])
        return out

    def timed_decode_step(input_ids: Any, state: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        out = decode_step(input_ids, state, **kwargs)
        sync()
        timing.decode_s += time.perf_counter() - start
        timing.decode_steps += 1
        return out

    object.__setattr__(model, "prefill", timed_prefill)
    object.__setattr__(model, step_name, timed_decode_step)
    try:
        yield
    finally:
        del model.__dict__["prefill"], model.__dict__[step_name]


def _synchronizer(model: Any) -> Any:
    """A function that waits for the model's device (GPU work is asynchronous: without it the
    timings would measure launches)."""
    device = str(getattr(model, "torch_device", getattr(model, "device", "cpu")))
    if device.startswith("cuda"):
        import torch

        return torch.cuda.synchronize
    return lambda: None


# ------------------------------------------------------------------------------------------ command


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "generate",
        help="generate tokens from a prompt (greedy unless sampling flags are given)",
        description="Prefill a prompt and decode new tokens with the PyTorch model, or with a compiled ARTIFACT. Greedy unless "
        "--temperature, --top-k or --top-p is given; stops at the config's eos_token_id unless --ignore-eos.",
    )
    add_model_arguments(p, positional="ARTIFACT")
    prompt = p.add_mutually_exclusive_group(required=True)
    prompt.add_argument("--prompt", metavar="TEXT", help="prompt text (needs the checkpoint's tokenizer)")
    prompt.add_argument("--prompt-ids", metavar="IDS", type=token_ids, help="prompt token ids, e.g. 1,2,3")
    p.add_argument(
        "--max-new-tokens",
        metavar="N",
        type=_int_at_least(0),
        default=DEFAULT_MAX_NEW_TOKENS,
        help=f"at most N new tokens (default {DEFAULT_MAX_NEW_TOKENS})",
    )
    sampling = p.add_argument_group("sampling (any of the first three turns it on)")
    sampling.add_argument(
        "--temperature", metavar="T", type=_float_in(0.0, None), help="divide logits by T > 0"
    )
    sampling.add_argument("--top-k", metavar="K", type=_int_at_least(1), help="keep the K most likely tokens")
    sampling.add_argument(
        "--top-p",
        metavar="P",
        type=_float_in(0.0, 1.0),
        help="keep the smallest set with probability >= P, 0<P<=1",
    )
    sampling.add_argument(
        "--seed", metavar="S", type=seed_value, default=0, help="sampling seed, in [0, 2**64) (default 0)"
    )
    p.add_argument("--ignore-eos", action="store_true", help="do not stop at the config's eos_token_id")
    add_init_seed_argument(p)
    p.add_argument("--json", action="store_true", help="print one JSON object (ids, text, timing)")
    p.add_argument(
        "--debug-dump", metavar="DIR", help="ARTIFACT only: write each call's kernel outputs to DIR/NNN_<entry>/"
    )
    p.add_argument(
        "--profile",
        action="store_true",
        help="ARTIFACT only: after generating, time each kernel of a decode step (per generated function: "
        "launches, ms, weight GB/s) on stderr (targets that have a profile: triton on a GPU)",
    )
    add_target_arguments(p, at=("load",), target_flag=False)
    return p


def _prompt_tokenizer(source: ModelSource) -> Any:
    """The tokenizer ``--prompt TEXT`` needs, found before any weight is loaded; else a UserError."""
    if source.kind == "preset":
        raise UserError(
            f"preset {source.preset} has no tokenizer: give the prompt as token ids, --prompt-ids 1,2,3"
        )
    from mmfc.frontends.torch.checkpoint import load_tokenizer

    assert source.path is not None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the error below says the same, in one line
        tokenizer = load_tokenizer(source.path)
    if tokenizer is None:
        if any((source.path / f).is_file() for f in ("tokenizer.json", "tokenizer.model")):
            raise UserError(
                f"{source.path}: cannot read its tokenizer without the optional `tokenizers` package "
                "(pip install tokenizers); or give token ids with --prompt-ids 1,2,3"
            )
        raise UserError(
            f"{source.path}: no tokenizer (tokenizer.json or tokenizer.model); "
            "give token ids with --prompt-ids 1,2,3"
        )
    return tokenizer


@contextmanager
def one_line_warnings() -> Iterator[None]:
    """Show warnings (e.g. "tokenizer not loaded") as ``mmfc: warning: ...``, one line like errors."""

    def show(
        message: Warning | str,
        category: type[Warning],
        filename: str,
        lineno: int,
        file: Any = None,
        line: Any = None,
    ) -> None:
        sys.stderr.write(f"mmfc: warning: {message}\n")

    with warnings.catch_warnings():
        warnings.showwarning = show
        yield


def run(args: argparse.Namespace) -> int:
    with one_line_warnings():
        return _generate(args)


def _load_options(args: argparse.Namespace, source: ModelSource) -> dict[str, Any]:
    """The compiled artifact's load-time target options and debug dump (refused for other sources)."""
    given = {k: v for k, v in vars(args).items() if k.startswith("target_opt_") and v is not None}
    if source.kind != "artifact":
        if given or args.debug_dump is not None:
            raise UserError("target options and --debug-dump apply to a compiled ARTIFACT only")
        return {}
    from mmfc.artifact import read_manifest

    target = read_manifest(source.path)["target"]["name"]
    options: dict[str, Any] = target_options_from_args(args, target, at=("load",))
    if args.debug_dump is not None:
        options["debug_dump_dir"] = args.debug_dump
    return options


def _runs_on(model: Any) -> str:
    return str(model.device) if str(model.device).startswith("target") else f"PyTorch, {model.device}"


def _generate(args: argparse.Namespace) -> int:
    import torch

    source = source_from_args(args, allow=("checkpoint", "preset", "artifact"))
    load_options = _load_options(args, source)
    config = load_config(source)  # cheap: lets bad ids and a missing tokenizer fail before the weights load

    tokenizer = None
    if args.prompt is not None:
        tokenizer = _prompt_tokenizer(source)
        prompt_ids = tokenizer.encode(args.prompt)
        if not prompt_ids:
            raise UserError("the prompt encodes to no tokens; give a non-empty --prompt")
    else:
        prompt_ids = args.prompt_ids
    bad = [i for i in prompt_ids if not 0 <= i < config.vocab_size]
    if bad:
        raise UserError(f"token id {bad[0]} out of range: ids must lie in [0, {config.vocab_size})")

    timing = Timing()
    start = time.perf_counter()
    model = load_model(source, **load_options)
    timing.load_s = time.perf_counter() - start
    if tokenizer is None:
        tokenizer = model.tokenizer  # a checkpoint's tokenizer decodes --prompt-ids output too

    profiler = _profiler(model) if args.profile else None  # refused before any token is generated
    do_sample = args.temperature is not None or args.top_k is not None or args.top_p is not None
    with timed(model, timing):
        out = model.generate(
            torch.tensor([prompt_ids], dtype=torch.long),
            max_new_tokens=args.max_new_tokens,
            do_sample=do_sample,
            temperature=args.temperature if args.temperature is not None else 1.0,
            top_k=args.top_k,
            top_p=args.top_p,
            seed=args.seed,
            **({"eos_token_id": None} if args.ignore_eos else {}),
        )
    ids = [int(i) for i in out[0].tolist()]
    new_ids = ids[len(prompt_ids) :]
    eos = None if args.ignore_eos else config.eos_token_id
    eos_ids = [] if eos is None else ([eos] if isinstance(eos, int) else list(eos))  # config may list several
    stopped_at_eos = bool(new_ids) and new_ids[-1] in eos_ids

    result: dict[str, Any] = {
        "prompt_ids": list(prompt_ids),
        "new_ids": new_ids,
        "ids": ids,
        "text": tokenizer.decode(ids) if tokenizer is not None else None,
        "new_text": tokenizer.decode(new_ids) if tokenizer is not None else None,
        "sampling": {
            "temperature": args.temperature,
            "top_k": args.top_k,
            "top_p": args.top_p,
            "seed": args.seed,
        }
        if do_sample
        else None,
        "stopped_at_eos": stopped_at_eos,
        "timing": timing.as_dict(),
    }
    if profiler is not None:
        result["profile"] = profiler()
    if args.json:
        print(json.dumps(result))
        return 0
    if result["text"] is not None:
        print(result["text"])
    print("new ids: " + ",".join(str(i) for i in new_ids))
    t = result["timing"]
    decode = (
        f"decode {t['decode_ms_per_token']:.2f} ms/token ({t['decode_steps']} steps)"
        if t["decode_steps"]
        else "no decode steps"
    )
    stop = f", stopped at eos {new_ids[-1]}" if stopped_at_eos else ""
    sys.stderr.write(
        f"{len(new_ids)} new tokens{stop} | load {t['load_ms']:.0f} ms | prefill {t['prefill_ms']:.2f} ms "
        f"({t['prefill_tokens']} prompt tokens) | {decode}  [{_runs_on(model)}]\n"
    )
    if args.profile:
        sys.stderr.write(_profile_table(result["profile"]))
    return 0


def _profiler(model: Any) -> Any:
    """What times each kernel of one decode step of a compiled model (batch 1, zero state), or a
    UserError where there is nothing to time (PyTorch, a target without a profile, the interpreter)."""
    runner = getattr(model, "runner", None)
    profile = getattr(runner, "profile_decode", None)
    if profile is None:
        raise UserError(f"--profile: {_runs_on(model)} has no per-kernel profile (the triton target on a GPU has one)")
    if getattr(runner, "interpret", False):
        raise UserError("--profile times compiled kernels on a GPU; here the kernels run in Triton's interpreter")
    return profile


def _profile_table(rows: list[dict[str, Any]]) -> str:
    total = sum(r["ms"] for r in rows)
    lines = [f"decode step, each kernel timed alone (CUDA graph replays): {total:.4f} ms in all"]
    lines.append(f"  {'kernel':<66} {'launches':>8} {'ms':>9} {'weight MB':>10} {'GB/s':>8}")
    for r in rows:
        gbps = f"{r['gbps']:.1f}" if r["gbps"] is not None else "-"
        lines.append(f"  {r['kernel']:<66} {r['launches']:>8} {r['ms']:>9.4f} {r['weight_bytes'] / 1e6:>10.2f} {gbps:>8}")
    return "\n".join(lines) + "\n"
