"""The pass manager: runs a pipeline of ``ModulePass``es over a module, the way ``mmfc opt`` (and later
``mmfc compile``) do.

::

    pm = PassManager("cse,canonicalize", print_ir_after={"cse"}, dump_dir=Path("dumps"), timing=True,
                     source_map=source)
    pm.run(ctx, module)            # the module is changed in place
    sys.stderr.write(pm.timing_table())

What happens around each pass (in this order):

1. ``apply``. A diagnostic the pass raises (``OpError``, or any xDSL ``DiagnosticException`` such as
   ``PassFailedException`` / ``VerifyException``) becomes a :class:`~mmfc.dialects.source.SourceError`
   ``FILE:LINE:COL: pass 'X': ...`` at the op (a ``UserError``: exit code 2). A ``UserError`` (e.g. a
   missing weight store) stays one, prefixed ``pass 'X': ``. **Any other exception** is a bug in the
   pass, not the user's mistake: it becomes :class:`PassInternalError` (the CLI prints
   ``mmfc: internal error in pass 'X': TYPE: message: please report`` and exits with code 3; the
   traceback only when the environment has ``MMFC_DEBUG=1``).
2. Verification (``verify_each``, on by default): the whole module, reported at the first failing op
   as ``after pass 'X': ...`` (exit 2), so a pass that breaks the IR is named. With
   ``verify_each=False`` the module is verified once, after the last pass, so invalid IR is still
   never handed on (the message then says ``after the pipeline``).
3. Printing: ``print_ir_after_all`` or the pass's name in ``print_ir_after`` prints
   ``// -----// IR Dump After NAME //----- //`` and the module to ``out`` (stderr).
4. Dumping: with ``dump_dir``, the module is written to ``DIR/NN-NAME.mlir`` (``NN`` = the pass's
   1-based position, two digits or more; ``DIR/00-input.mlir`` is the IR before the first pass). Its
   ``mmfc.weights`` path is valid from ``DIR``: a store that lives in memory is saved once into
   ``DIR`` (``NN-NAME.weights.safetensors``, layered over the input's store) with
   ``write_module_store(..., rebind=False)``, so the in-memory store stays bound and neither later
   passes nor the final output layer over a dump; later dumps reuse that file while no pass binds a
   new store. Dumps are written atomically; existing files of the same name are replaced, other files
   in ``DIR`` are left alone.

``run`` expects verified IR (``mmfc opt`` verifies after parsing). The wall time of every pass and of
the verification, printing and dumping around them is always recorded (:attr:`PassManager.timings`;
a few ``perf_counter`` calls per pass); callers add their own steps (parse, print) with
:meth:`PassManager.timed`, and :meth:`PassManager.print_timing` prints the table when ``timing`` is set.
"""

from __future__ import annotations

import os
import re
import sys
import time
import traceback
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from io import StringIO
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from mmfc.dialects import files
from mmfc.dialects.diagnostics import UserError
from mmfc.dialects.progress import progress

if TYPE_CHECKING:
    from xdsl.context import Context
    from xdsl.dialects.builtin import ModuleOp
    from xdsl.passes import ModulePass

    from mmfc.dialects.source import SourceMap

#: exit code of ``mmfc`` when a pass crashed (a bug, not the user's mistake: 2 is for those)
EXIT_INTERNAL_ERROR = 3
#: set to 1 to see the traceback of an internal error
DEBUG_ENV = "MMFC_DEBUG"

# timing rows that are not a pass; verification/printing/dumping around passes are summed into one row
VERIFY_EACH_STEP = "verify (after passes)"
PRINT_IR_STEP = "print-ir-after"
DUMP_STEP = "dump"


class PassInternalError(Exception):
    """A pass raised something other than a diagnostic: a bug in that pass (CLI exit code 3).

    ``pass_name`` names the pass; ``__cause__`` is the original exception (its traceback is the useful
    part for whoever fixes the pass).
    """

    def __init__(self, pass_name: str, exc: BaseException) -> None:
        from mmfc.dialects.source import one_line

        text = one_line(str(exc))
        what = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
        super().__init__(f"internal error in pass '{pass_name}': {what}: please report")
        self.pass_name = pass_name


def report_internal_error(exc: PassInternalError, err: TextIO | None = None) -> int:
    """Print ``mmfc: internal error in pass ...`` (after the traceback when ``MMFC_DEBUG=1``) to
    ``err`` (stderr) and return the exit code, :data:`EXIT_INTERNAL_ERROR`."""
    err = err if err is not None else sys.stderr
    if os.environ.get(DEBUG_ENV, "") not in ("", "0"):
        cause = exc.__cause__ or exc
        err.write("".join(traceback.format_exception(type(cause), cause, cause.__traceback__)))
    err.write(f"mmfc: {exc}\n")
    err.flush()
    return EXIT_INTERNAL_ERROR


class PassManager:
    """Runs ``pipeline`` (a pipeline spec such as ``"cse,foo{opt=1}"``, or ``ModulePass`` objects) in
    order; see the module docstring for what happens around each pass.

    ``print_ir_after``: pass names to print the IR after (every occurrence); a name that is not in the
    pipeline is a ``UserError`` (a typo would otherwise print nothing). ``source_map``: positions of the
    parsed ops, for ``FILE:LINE:COL`` diagnostics (None, for a module built in Python: the messages
    carry no position). ``print_generic``: print IR (to ``out`` and into dumps) in the generic form.
    ``out``: where printed IR goes (stderr).
    """

    def __init__(
        self,
        pipeline: str | Iterable[ModulePass],
        *,
        verify_each: bool = True,
        print_ir_after_all: bool = False,
        print_ir_after: Iterable[str] = (),
        dump_dir: str | Path | None = None,
        timing: bool = False,
        source_map: SourceMap | None = None,
        print_generic: bool = False,
        out: TextIO | None = None,
    ) -> None:
        if isinstance(pipeline, str):
            from mmfc.pipeline import parse_pipeline

            self.passes: list[ModulePass] = parse_pipeline(pipeline) if pipeline.strip() else []
        else:
            self.passes = list(pipeline)
        self.verify_each = verify_each
        self.print_ir_after_all = print_ir_after_all
        self.print_ir_after = frozenset(print_ir_after)
        names = [p.name for p in self.passes]
        missing = sorted(self.print_ir_after - set(names))
        if missing:
            listed = ", ".join(names) if names else "none"
            raise UserError(
                f"--print-ir-after: {', '.join(repr(m) for m in missing)} not in the pipeline "
                f"(its passes: {listed})"
            )
        self.dump_dir = Path(dump_dir) if dump_dir is not None else None
        self.timing = timing
        self.source_map = source_map
        self.print_generic = print_generic
        self.out = out
        self._timings: dict[str, float] = {}
        # labels of the passes in the timing table: the name, "#k" added when a name repeats
        counts: dict[str, int] = {}
        self._labels: list[str] = []
        for name in names:
            counts[name] = counts.get(name, 0) + 1
            self._labels.append(name if names.count(name) == 1 else f"{name} #{counts[name]}")

    # ----------------------------------------------------------------------------------- timing

    @property
    def timings(self) -> list[tuple[str, float]]:
        """``(step, seconds)`` in the order steps first ran; repeated runs (chunks) are summed."""
        return list(self._timings.items())

    def add_time(self, step: str, seconds: float) -> None:
        """Add ``seconds`` to the row ``step`` (created at the end of the table on first use)."""
        self._timings[step] = self._timings.get(step, 0.0) + seconds

    @contextmanager
    def timed(self, step: str) -> Iterator[None]:
        """Time the ``with`` body into the row ``step`` (recorded also when the body raises)."""
        start = time.perf_counter()
        try:
            yield
        finally:
            self.add_time(step, time.perf_counter() - start)

    def print_timing(self) -> None:
        """Write :meth:`timing_table` to ``out`` (stderr) when ``timing`` was asked for."""
        if self.timing:
            out = self.out if self.out is not None else sys.stderr
            out.write(self.timing_table())
            out.flush()

    def timing_table(self) -> str:
        """The timing report: one row per step (milliseconds, share of the total), then the total."""
        rows = self.timings
        total = sum(seconds for _, seconds in rows)
        width = max([len("total"), *(len(step) for step, _ in rows)]) + 2
        lines = [f"{'step':<{width}} {'ms':>10} {'%':>6}"]
        for step, seconds in rows:
            share = 100 * seconds / total if total > 0 else 0.0
            lines.append(f"{step:<{width}} {seconds * 1e3:>10.2f} {share:>6.1f}")
        lines.append(f"{'total':<{width}} {total * 1e3:>10.2f} {100.0 if total > 0 else 0.0:>6.1f}")
        return "\n".join(lines) + "\n"

    # -------------------------------------------------------------------------------------- run

    def run(self, ctx: Context, module: ModuleOp) -> None:
        """Apply the pipeline to ``module`` in place (see the module docstring).

        Raises ``SourceError`` / ``UserError`` for diagnostics (exit 2) and :class:`PassInternalError`
        for a pass that crashed (exit 3).
        """
        dumps = _DumpWriter(self.dump_dir, len(self.passes)) if self.dump_dir is not None else None
        if dumps is not None:
            with self.timed(DUMP_STEP):
                dumps.write(ctx, module, 0, "input", self.print_generic)
        with progress("run passes", len(self.passes), "pass") as advance:
            for index, (module_pass, label) in enumerate(zip(self.passes, self._labels), start=1):
                with self.timed(label):
                    self._apply(ctx, module, module_pass)
                if self.verify_each:
                    with self.timed(VERIFY_EACH_STEP):
                        self._verify(module, f"after pass '{module_pass.name}'")
                if self.print_ir_after_all or module_pass.name in self.print_ir_after:
                    with self.timed(PRINT_IR_STEP):
                        self._print_after(ctx, module, module_pass.name)
                if dumps is not None:
                    with self.timed(DUMP_STEP):
                        dumps.write(ctx, module, index, module_pass.name, self.print_generic)
                advance(1)
        if not self.verify_each and self.passes:
            with self.timed(VERIFY_EACH_STEP):
                self._verify(module, "after the pipeline")

    def _apply(self, ctx: Context, module: ModuleOp, module_pass: ModulePass) -> None:
        from xdsl.utils.exceptions import DiagnosticException

        from mmfc.dialects.source import SourceError

        context = f"pass '{module_pass.name}'"
        try:
            module_pass.apply(ctx, module)
        except DiagnosticException as exc:  # OpError, PassFailedException, VerifyException
            raise self._diagnostic(exc, context) from None
        except SourceError:
            raise  # already positioned
        except UserError as exc:  # a user's mistake found by the pass (a missing store, ...)
            raise UserError(f"{context}: {exc}") from exc
        except Exception as exc:  # noqa: BLE001 -- anything else is a bug in the pass
            raise PassInternalError(module_pass.name, exc) from exc

    def _diagnostic(self, exc: BaseException, context: str) -> UserError:
        from mmfc.dialects.source import SourceMap, op_error

        if self.source_map is not None:
            return op_error(self.source_map, exc, context)
        return UserError(op_error(SourceMap("<module>", ""), exc, context).message)

    def _verify(self, module: ModuleOp, context: str) -> None:
        from mmfc.dialects.source import SourceError, SourceMap, verify_module

        if self.source_map is not None:
            verify_module(module, self.source_map, context)
            return
        try:
            verify_module(module, SourceMap("<module>", ""), context)
        except SourceError as exc:  # no text to point into: the message alone
            raise UserError(exc.message) from None

    def _print_after(self, ctx: Context, module: ModuleOp, name: str) -> None:
        out = self.out if self.out is not None else sys.stderr
        out.write(f"// -----// IR Dump After {name} //----- //\n")
        out.write(print_module(ctx, module, generic=self.print_generic))
        out.flush()


class _DumpWriter:
    """Writes ``DIR/NN-NAME.mlir`` snapshots whose weight-store paths are valid from ``DIR``."""

    def __init__(self, directory: Path, n_passes: int) -> None:
        if directory.exists() and not directory.is_dir():
            raise UserError(f"--dump-dir {directory}: exists and is not a directory")
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UserError(f"--dump-dir {directory}: cannot create it: {exc.strerror or exc}") from None
        self.directory = directory
        self.digits = max(2, len(str(n_passes)))
        # the store attribute a dump left on the module: unchanged at the next dump means no pass bound
        # a new store since, so the file that dump wrote (or pointed at) is still the right one
        self._last_attr: str | None = None

    def path(self, index: int, name: str) -> Path:
        safe = re.sub(r"[^A-Za-z0-9_.+-]", "_", name)
        return self.directory / f"{index:0{self.digits}d}-{safe}.mlir"

    def write(self, ctx: Context, module: ModuleOp, index: int, name: str, generic: bool) -> Path:
        from mmfc.dialects import weights

        target = self.path(index, name)
        attr = weights.get_store_attr(module)
        if attr is not None and attr != weights.MEMORY and attr == self._last_attr:
            # same store as at the last dump, whose path is already relative to this folder
            weights.set_mlir_path(module, target)
        else:
            weights.write_module_store(module, target, rebind=False)
        self._last_attr = weights.get_store_attr(module)
        write_text_atomic(target, print_module(ctx, module, generic=generic))
        return target


# ------------------------------------------------------------------------------------- IR text


def print_module(ctx: Context, module: ModuleOp, *, generic: bool = False) -> str:
    """The module as MLIR text (xdsl-opt's form: the op, dialect metadata, then a newline)."""
    from xdsl.printer import Printer

    out = StringIO()
    printer = Printer(stream=out, print_generic_format=generic)
    printer.print_op(module)
    printer.print_metadata(ctx.loaded_dialects)
    out.write("\n")
    return out.getvalue()


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` all at once (``mmfc.dialects.files``: a temporary file in the same
    folder, then ``os.replace``); a failure is a ``UserError`` naming the path and leaves ``path`` as it
    was (absent or old) and no temporary file behind."""
    try:
        files.write_text_atomic(path, text)
    except OSError as exc:
        raise UserError(f"{path}: cannot write: {exc.strerror or exc}") from None


__all__ = [
    "EXIT_INTERNAL_ERROR",
    "PassInternalError",
    "PassManager",
    "print_module",
    "report_internal_error",
    "write_text_atomic",
]
