"""``lipdub weights``: list, download and verify the official checkpoints.

Usage::

    lipdub weights list
    lipdub weights download NAME [--url URL] [--dest DIR] [--no-progress]
    lipdub weights verify PATH [--name NAME]

The registry is configs/weights.yaml; downloads go to ``$LIPDUB_HOME/weights`` (default
``~/.cache/lipdub/weights``) unless ``--dest`` says otherwise.
"""

from __future__ import annotations

import argparse
import sys
import textwrap

from lipdub.pipeline.errors import RegistryError


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register the ``weights`` command group.

    Arguments:
        subparsers: the top-level parser's sub-parsers.

    Returns:
        The ``weights`` parser.
    """
    parser = subparsers.add_parser(
        "weights",
        help="list, download and verify model checkpoints",
        description="List, download and verify the official checkpoints (configs/weights.yaml).",
    )
    # Without an action, run() prints this parser's help.
    parser.set_defaults(weights_parser=parser, weights_action=None)
    commands = parser.add_subparsers(title="weights commands", metavar="ACTION")

    ls = commands.add_parser("list", help="show the registry: files, sizes, licences, links")
    ls.add_argument("-v", "--verbose", action="store_true", help="also show links and notes")
    ls.set_defaults(weights_action=run_list)

    dl = commands.add_parser("download", help="download a registry entry, verified")
    dl.add_argument("name", metavar="NAME", help="registry entry, e.g. retinaface_mobilenet0.25")
    dl.add_argument("--url", help="download from this URL (a mirror) instead of the registry's")
    dl.add_argument("--dest", metavar="DIR", help="target folder (default: the weights cache)")
    dl.add_argument("--no-progress", action="store_true", help="no progress bar")
    dl.set_defaults(weights_action=run_download)

    vf = commands.add_parser("verify", help="check a weights file and match it to the registry")
    vf.add_argument("path", metavar="PATH", help="the weights file")
    vf.add_argument("--name", help="registry entry the file should be (default: look it up)")
    vf.set_defaults(weights_action=run_verify)
    return parser


def run(args: argparse.Namespace) -> int:
    """Run the chosen ``weights`` action (list, download or verify).

    Arguments:
        args: parsed arguments.

    Returns:
        The exit code; 2 with the group's help when no action was given.
    """
    if args.weights_action is None:
        args.weights_parser.print_help(sys.stderr)
        return 2
    return args.weights_action(args)


def run_list(args: argparse.Namespace) -> int:
    """Print the registry, one line per entry (with ``--verbose``: links and notes too).

    Arguments:
        args: parsed arguments (``verbose``).

    Returns:
        0.
    """
    from lipdub.pipeline.weights_registry import cache_dir, list_entries

    entries = list_entries()
    width = max(len(e.name) for e in entries)
    files = max(len(e.file) for e in entries)
    print(f"weights cache: {cache_dir()}")
    print(f"{'NAME':<{width}}  {'FILE':<{files}}  {'SIZE':<9}  {'GET':<8}  SHA256")
    for entry in entries:
        how = "bundled" if entry.bundled else "download" if entry.urls else "by hand"
        checksum = "known" if entry.sha256 else "unknown"
        print(
            f"{entry.name:<{width}}  {entry.file:<{files}}  {entry.size_text:<9}  {how:<8}  "
            f"{checksum}"
        )
        if args.verbose:
            _print_details(entry)
    if not args.verbose:
        print("(-v shows links, licences and notes)")
    return 0


def _print_details(entry) -> None:
    print(f"    model: {entry.model}  family: {entry.family}  format: {entry.format or 'unknown'}")
    if entry.anchors:
        print(f"    anchors (min_sizes): {[list(a) for a in entry.anchors]}")
    for url in entry.urls:
        print(f"    url:  {url}")
    for page in entry.pages:
        print(f"    page: {page}")
    print(f"    license: {entry.license.strip()}")
    for line in textwrap.wrap(entry.notes, width=92):
        print(f"    {line}")


def run_download(args: argparse.Namespace) -> int:
    """Download one registry entry and print where it is.

    Arguments:
        args: parsed arguments (``name``, ``url``, ``dest``, ``no_progress``).

    Returns:
        0 (failures raise and are reported by ``main``).
    """
    from lipdub.pipeline.weights_registry import download, get_entry

    entry = get_entry(args.name)
    path = download(entry, url=args.url, dest_dir=args.dest, progress=not args.no_progress)
    print(path)
    if entry.sha256 is None:
        from lipdub.models.weights import sha256_file

        print(
            f"note: the registry has no sha256 for {entry.name}; this file's is {sha256_file(path)}"
        )
    return 0


def run_verify(args: argparse.Namespace) -> int:
    """Describe a weights file and compare it with the registry.

    Arguments:
        args: parsed arguments (``path``, ``name``).

    Returns:
        0 when the file matches its registry entry (or no entry is known for it).

    Raises:
        RegistryError: the file disagrees with its registry entry (sha256, size, family, format).
    """
    from lipdub.pipeline.weights_registry import verify

    result = verify(args.path, name=args.name)
    print(f"file:    {result.path}")
    print(f"size:    {result.size} bytes")
    print(f"sha256:  {result.sha256}")
    print(f"format:  {result.format}")
    print(f"family:  {result.family or 'unknown'} ({result.tensors} tensors)")
    if result.entry is None:
        print("registry: no entry matches this file (by sha256 or file name)")
        return 0
    print(f"registry: {result.entry.name} (matched by {result.matched_by})")
    if result.problems:
        raise RegistryError(
            f"{result.path} does not match registry entry {result.entry.name}: "
            + "; ".join(result.problems)
        )
    if result.entry.sha256 is None:
        print(
            f"registry: no sha256 recorded for {result.entry.name}; the checksum above is "
            "this file's"
        )
    else:
        print("registry: sha256 matches")
    return 0
