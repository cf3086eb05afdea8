"""The ``lipdub`` console script.

Each command lives in its own small module of this package, listed in ``COMMANDS``. A command
module has

- ``add_parser(subparsers) -> argparse.ArgumentParser``: adds its sub-parser (and any sub-sub-
  parsers) to the top-level ``subparsers`` and returns it;
- ``run(args) -> int``: does the work and returns the exit code.

``main`` calls the chosen module's ``run`` with the parsed arguments.

Command modules import torch and the heavy parts of the pipeline inside ``run``, so that
``lipdub --help`` answers at once.

Errors a user can act on (``lipdub.pipeline.errors.LipdubError``,
``lipdub.models.weights.WeightsError``: both ``lipdub.models.errors.UserError``) are printed as one
``lipdub: error: <message>`` line on stderr with exit code 2; with ``LIPDUB_DEBUG``
set they are re-raised to show the traceback.
"""

from __future__ import annotations

import argparse
import gc
import os
import signal
import sys
from collections.abc import Sequence

from lipdub.cli import dub, evaluate, init, prepare, qc, serve, submit, sync, train, weights
from lipdub.models.errors import UserError
from lipdub.pipeline import stopping

# Add new commands here, one module each, in the order `lipdub --help` lists them. The CLI is
# the top layer: it imports pipeline and training; neither imports it (tests/test_import_graph).
COMMANDS = (weights, sync, init, dub, serve, submit, qc, prepare, train, evaluate)

EXIT_USAGE = 2
EXIT_ERROR = 2
EXIT_INTERRUPTED = 130


def build_parser() -> argparse.ArgumentParser:
    """Build the top-level parser with every command module's sub-parser.

    Returns:
        The ``lipdub`` argument parser.
    """
    parser = argparse.ArgumentParser(
        prog="lipdub",
        description="Self-hosted visual dubbing: Wav2Lip-compatible lip sync for whole films.",
        epilog="Set LIPDUB_DEBUG=1 to see tracebacks instead of one-line errors.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    subparsers = parser.add_subparsers(title="commands", metavar="COMMAND")
    for module in COMMANDS:
        module.add_parser(subparsers).set_defaults(_run=module.run)
    return parser


def _limit_malloc_arenas(arenas: int = 2) -> None:
    """Two glibc malloc arenas instead of one per thread (unless MALLOC_ARENA_MAX is set).

    A film run's task threads each get an arena of their own, and memory freed in one is not
    reused by the others: peak RSS then creeps up with film length (1.22x from a 1- to a
    20-minute film; 2 arenas: see benchmarks/RESULTS.md). Must run before threads start.
    """
    if os.environ.get("MALLOC_ARENA_MAX") or not sys.platform.startswith("linux"):
        return
    import ctypes

    try:
        ctypes.CDLL("libc.so.6").mallopt(-8, arenas)  # -8: M_ARENA_MAX
    except (OSError, AttributeError):  # not glibc (musl, ...): nothing to tune
        pass


def main(argv: Sequence[str] | None = None, *, exit_now: bool = False) -> int:
    """Run the ``lipdub`` command line.

    Arguments:
        argv: the arguments without the program name; ``None`` reads ``sys.argv[1:]``.
        exit_now: end the process as soon as a command that sets ``_exit_when_done`` succeeds
            (the console script does; callers in the same process must not).

    Returns:
        The exit code: 0 on success, 2 on a usage error or an error the user can act on,
        128 + the signal number when stopped by a signal (130: Ctrl-C, 143: SIGTERM).
    """
    # OpenMP threads that sleep when idle instead of spinning leave the cores to the decoder and
    # encoder threads working beside torch: `lipdub sync` runs ~8% faster on 2 cores. Set before
    # any command imports torch (libgomp reads it once); a user's own setting wins.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    _limit_malloc_arenas()
    parser = build_parser()
    args = parser.parse_args(argv)
    run = getattr(args, "_run", None)
    if run is None:  # "lipdub" alone: show the commands
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    stopped_by = None
    try:
        code = int(run(args) or 0)
    except BrokenPipeError:
        # "lipdub weights list | head": the reader left; say nothing more on the closed pipe.
        sys.stdout = open(os.devnull, "w")  # kept open: the interpreter flushes it at exit
        return EXIT_ERROR
    except KeyboardInterrupt as exc:
        if not isinstance(exc, stopping.Stopped):
            print("lipdub: interrupted", file=sys.stderr)
            return EXIT_INTERRUPTED
        stopped_by = exc.signum  # SIGTERM, SIGHUP or SIGINT, cleaned up after
    except Exception as exc:
        if os.environ.get("LIPDUB_DEBUG") or not _is_user_error(exc):
            raise
        message = " ".join(str(exc).split())  # one line, whatever the exception put in
        print(f"lipdub: error: {message}", file=sys.stderr)
        return EXIT_ERROR
    except BaseException:
        # While a flow runs, Prefect turns SIGTERM into its own TerminationSignal; the flow has
        # told its threads to stop (lipdub.pipeline.stopping) and cleaned up as for any stop.
        if not stopping.requested():
            raise
        stopped_by = stopping.signal_number()
    if stopped_by is not None:  # outside the handler: the stopped command's frames are free
        return _stopped(stopped_by)
    if exit_now and getattr(args, "_exit_when_done", False):
        # The command has closed and renamed everything it wrote. Tearing down torch, numba and
        # scipy module by module takes 0.5-0.9 s, 5-8 % of a short clip's whole run.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code


def _stopped(signum: int) -> int:
    # What the stopped command still holds (a DataLoader's worker processes, open files) is
    # released now, while the process is whole: left to the interpreter's exit, multiprocessing's
    # own clean-up raced a worker, which printed a traceback after our line.
    gc.collect()
    print(f"lipdub: stopped by {signal.Signals(signum).name}", file=sys.stderr)
    return 128 + signum


def entry() -> None:
    """The console script: :func:`main`, leaving at once when a command allows it; SIGTERM,
    SIGHUP and SIGINT stop it cleanly (:mod:`lipdub.pipeline.stopping`)."""
    stopping.install_handlers()
    sys.exit(main(exit_now=True))


def _is_user_error(exc: BaseException) -> bool:
    return isinstance(exc, UserError)  # LipdubError, lipdub.models.weights.WeightsError


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("lipdub")
    except PackageNotFoundError:
        return "(not installed)"


if __name__ == "__main__":
    entry()
