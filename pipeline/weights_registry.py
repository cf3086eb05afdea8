"""The registry of official checkpoints (configs/weights.yaml): look-up, download, verification.

Downloads land in ``cache_dir()`` (``$LIPDUB_HOME/weights``, else ``~/.cache/lipdub/weights``),
never inside the installed package. A download is written under a temporary name in the target
folder (:func:`lipdub.pipeline.partial_files.writing`) and renamed only after its size, sha256 and
format check out, so an interrupted or bad download never sits under the final name.

torch is imported lazily (through ``lipdub.models.weights``) by the functions that read weights, so
that listing the registry stays fast.
"""

from __future__ import annotations

import hashlib
import os
import sys
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path

import yaml

from lipdub.pipeline.errors import RegistryError
from lipdub.pipeline.partial_files import remove_stale_partials, writing

__all__ = [
    "VerifyResult",
    "WeightsEntry",
    "cache_dir",
    "download",
    "get_entry",
    "list_entries",
    "verify",
]

_CHUNK = 1 << 20
_TIMEOUT_S = 60
_USER_AGENT = "lipdub-weights/0.1 (+urllib)"


@dataclass(frozen=True)
class WeightsEntry:
    """One official checkpoint, as described in configs/weights.yaml (see the key list there)."""

    name: str
    file: str
    model: str
    family: str
    layout: str
    license: str
    format: str | None = None
    aliases: tuple[str, ...] = ()
    urls: tuple[str, ...] = ()
    pages: tuple[str, ...] = ()
    size: int | None = None
    approx_size: str | None = None
    sha256: str | None = None
    anchors: tuple[tuple[int, ...], ...] | None = None
    steps: tuple[int, ...] | None = None
    variance: tuple[float, ...] | None = None
    bundled: str | None = None
    notes: str = ""

    @property
    def size_text(self) -> str:
        """The exact size (in MB) when known, else the approximate size, else "unknown"."""
        if self.size is not None:
            return f"{self.size / 1e6:.1f} MB"
        return self.approx_size or "unknown"


@dataclass(frozen=True)
class VerifyResult:
    """What ``verify`` found about a file, and how it compares with the registry."""

    path: Path
    size: int
    sha256: str
    format: str
    family: str | None
    tensors: int
    entry: WeightsEntry | None = None
    matched_by: str | None = None  # "name", "sha256" or "file name"
    problems: tuple[str, ...] = field(default=())

    @property
    def ok(self) -> bool:
        """True when nothing disagrees with the registry (an unknown file is not a problem)."""
        return not self.problems


# --- registry ---------------------------------------------------------------------------------


_REQUIRED = ("file", "model", "family", "layout", "license")
_TUPLE_FIELDS = ("aliases", "urls", "pages", "steps", "variance")
_KNOWN = set(WeightsEntry.__dataclass_fields__) - {"name"}


@lru_cache(maxsize=1)
def _entries() -> dict[str, WeightsEntry]:
    # importlib.resources finds the YAML in a source checkout and in an installed wheel alike.
    source = resources.files("lipdub.configs").joinpath("weights.yaml")
    data = yaml.safe_load(source.read_text(encoding="utf-8")) or {}
    raw = data.get("entries")
    if not isinstance(raw, dict) or not raw:
        raise RegistryError(f"{source}: no 'entries' mapping; the weights registry is broken")
    return {name: _parse_entry(source, name, spec) for name, spec in raw.items()}


def _parse_entry(source: object, name: str, spec: object) -> WeightsEntry:
    if not isinstance(spec, dict):
        raise RegistryError(f"{source}: entry {name!r} is not a mapping")
    unknown = sorted(set(spec) - _KNOWN)
    missing = [k for k in _REQUIRED if not spec.get(k)]
    if unknown or missing:
        raise RegistryError(
            f"{source}: entry {name!r} has unknown keys {unknown} / lacks {missing}; "
            f"allowed keys: {sorted(_KNOWN)}"
        )
    values = dict(spec)
    for key in _TUPLE_FIELDS:
        if values.get(key) is not None:
            values[key] = tuple(values[key])
    if values.get("anchors") is not None:
        values["anchors"] = tuple(tuple(level) for level in values["anchors"])
    if values.get("sha256"):
        values["sha256"] = str(values["sha256"]).lower()
    values["notes"] = (values.get("notes") or "").strip()
    return WeightsEntry(name=name, **values)


def list_entries() -> list[WeightsEntry]:
    """All registry entries, in file order.

    Returns:
        The entries of configs/weights.yaml.

    Raises:
        RegistryError: the YAML file is malformed.
    """
    return list(_entries().values())


def get_entry(name: str) -> WeightsEntry:
    """Look an entry up by its name.

    Arguments:
        name: an entry name such as ``"wav2lip_gan"``.

    Returns:
        The entry.

    Raises:
        RegistryError: unknown name (the message lists the known ones).
    """
    entries = _entries()
    if name not in entries:
        raise RegistryError(
            f"unknown weights name {name!r}; known names: {', '.join(entries)} "
            "(`lipdub weights list` describes them)"
        )
    return entries[name]


def cache_dir() -> Path:
    """Folder where downloaded weights are kept (not created here).

    Returns:
        ``$LIPDUB_HOME/weights`` when ``LIPDUB_HOME`` is set, else ``~/.cache/lipdub/weights``.
    """
    home = os.environ.get("LIPDUB_HOME")
    base = Path(home).expanduser() if home else Path.home() / ".cache" / "lipdub"
    return base / "weights"


# --- download ---------------------------------------------------------------------------------


def download(
    name: str | WeightsEntry,
    *,
    url: str | None = None,
    dest_dir: str | os.PathLike | None = None,
    progress: bool = True,
) -> Path:
    """Download a registry entry's file, verified, into ``dest_dir`` (default ``cache_dir()``).

    The file is streamed to a temporary name in ``dest_dir`` and renamed to ``entry.file`` only
    after its size and sha256 (where the registry knows them) and its format check out. A file
    already there that passes the same checks is returned without downloading again.

    Arguments:
        name: an entry name, or a ``WeightsEntry`` (e.g. one that is not in the registry).
        url: download from this URL instead of the entry's ``urls`` (a mirror).
        dest_dir: target folder, created if needed.
        progress: show a progress bar (only ever on a terminal).

    Returns:
        The path of the verified file.

    Raises:
        RegistryError: unknown name, no direct URL, network failure, or the server sent an HTML
            page or a file of the wrong size.
        lipdub.models.weights.WeightsChecksumError: the downloaded file has another sha256.
        lipdub.models.weights.WeightsFormatError: the downloaded file is not a weights file.
    """
    entry = name if isinstance(name, WeightsEntry) else get_entry(name)
    folder = Path(dest_dir).expanduser() if dest_dir is not None else cache_dir()
    final = folder / entry.file
    if final.exists() and _existing_is_good(entry, final):
        return final
    urls = (url,) if url else entry.urls
    if not urls:
        raise RegistryError(_no_url_message(entry, final))
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass  # fail here, with a clear message, rather than after a long download
    except OSError as exc:
        raise RegistryError(
            f"cannot write to {folder} ({exc.strerror or exc}); pass another folder with --dest "
            "or set LIPDUB_HOME"
        ) from exc
    remove_stale_partials(folder)  # a killed download's partial file can be hundreds of MB
    failures = []
    for candidate in urls:
        try:
            _fetch_verified(entry, candidate, final, progress)
            return final
        except _NetworkError as exc:
            # Try the next mirror; checksum and format errors are not retried (same bytes again).
            failures.append(f"{candidate}: {exc}")
    raise RegistryError(
        f"could not download {entry.name} ({entry.file}): "
        + "; ".join(failures)
        + "; check the network or pass a mirror with --url"
    )


class _NetworkError(Exception):
    """A URL could not be fetched (HTTP error, timeout, refused connection)."""


def _existing_is_good(entry: WeightsEntry, path: Path) -> bool:
    from lipdub.models.weights import WeightsError, sha256_file, sniff_format

    if entry.size is not None and path.stat().st_size != entry.size:
        return False
    if entry.sha256 is not None:
        return sha256_file(path) == entry.sha256
    try:
        # Without a known checksum the best we can say is that it is a readable weights file.
        sniff_format(path)
    except WeightsError:
        return False
    return True


def _no_url_message(entry: WeightsEntry, final: Path) -> str:
    pages = " or ".join(entry.pages) if entry.pages else "the project page"
    return (
        f"{entry.name} ({entry.file}) has no direct download: the official files are offered "
        f"on {pages}, which answer scripts with an HTML page; download it in a browser, check "
        f"it with `lipdub weights verify FILE --name {entry.name}`, and save it as {final} "
        "(or pass a direct mirror with --url)"
    )


def _fetch_verified(entry: WeightsEntry, url: str, final: Path, progress: bool) -> None:
    # The final name only ever holds verified data, and durably: a download is slow to repeat.
    with writing(final, durable=True) as tmp:
        with open(tmp, "wb") as out:
            digest, size = _stream(url, out, entry, progress)
        _check_download(entry, url, tmp, digest, size)


def _stream(url: str, out, entry: WeightsEntry, progress: bool) -> tuple[str, int]:
    from tqdm import tqdm

    from lipdub.models.weights import looks_like_html

    request = urllib.request.Request(url, headers={"User-Agent": _USER_AGENT})
    try:
        response = urllib.request.urlopen(request, timeout=_TIMEOUT_S)
    except urllib.error.HTTPError as exc:
        raise _NetworkError(f"HTTP {exc.code} {exc.reason}") from exc
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        raise _NetworkError(str(getattr(exc, "reason", exc))) from exc
    with response:
        if "text/html" in (response.headers.get("Content-Type") or "").lower():
            raise RegistryError(_html_message(entry, url))
        length = response.headers.get("Content-Length")
        total = int(length) if length and length.isdigit() else entry.size
        digest = hashlib.sha256()
        size = 0
        show = progress and sys.stderr.isatty()
        with tqdm(total=total, unit="B", unit_scale=True, desc=entry.file, disable=not show) as bar:
            while True:
                try:
                    block = response.read(_CHUNK)
                except (TimeoutError, OSError) as exc:
                    raise _NetworkError(f"connection lost after {size} bytes: {exc}") from exc
                if not block:
                    break
                if size == 0 and looks_like_html(block[:512]):
                    raise RegistryError(_html_message(entry, url))
                digest.update(block)
                out.write(block)
                size += len(block)
                bar.update(len(block))
    if length and length.isdigit() and size != int(length):
        raise _NetworkError(f"connection closed after {size} of {length} bytes")
    return digest.hexdigest(), size


def _html_message(entry: WeightsEntry, url: str) -> str:
    pages = f" ({', '.join(entry.pages)})" if entry.pages else ""
    return (
        f"{url} answered with an HTML page, not the weights file {entry.file}: the link has "
        f"expired or needs a browser (sign-in or confirmation page); download {entry.name} "
        f"by hand from the official page{pages} and check it with "
        f"`lipdub weights verify FILE --name {entry.name}`"
    )


def _check_download(entry: WeightsEntry, url: str, tmp: Path, digest: str, size: int) -> None:
    from lipdub.models.weights import WeightsChecksumError, sniff_format

    if entry.size is not None and size != entry.size:
        raise RegistryError(
            f"{url} sent {size} bytes for {entry.file}, the registry expects {entry.size}: "
            "the download is incomplete or a different file; nothing was saved, try again"
        )
    if entry.sha256 is not None and digest != entry.sha256:
        raise WeightsChecksumError(
            f"{entry.file} downloaded from {url} has sha256 {digest}, expected {entry.sha256}: "
            "the server sent a different or corrupt file; nothing was saved under that name; "
            "try again or another mirror (--url)"
        )
    sniff_format(tmp)  # raises WeightsFormatError for anything that is not a weights file


# --- verification -----------------------------------------------------------------------------


def verify(path: str | os.PathLike, name: str | None = None) -> VerifyResult:
    """Describe a weights file and compare it with the registry.

    The file is read (weights-only) to tell its format, model family and tensor count. It is then
    matched to a registry entry: by ``name`` when given, else by sha256, else by file name.

    Arguments:
        path: the file to check.
        name: the registry entry it should be; ``None`` to look it up.

    Returns:
        A ``VerifyResult``; ``result.problems`` lists every disagreement with the matched entry
        (size, sha256, family, format).

    Raises:
        RegistryError: ``name`` is not a registry entry.
        lipdub.models.weights.WeightsError: the file is missing or is not a readable weights file.
    """
    from lipdub.models.weights import detect_family, read_state_dict, sha256_file, sniff_format

    path = Path(path)
    entry = get_entry(name) if name is not None else None
    fmt = sniff_format(path)
    state = read_state_dict(path)
    size = path.stat().st_size
    digest = sha256_file(path)
    family = detect_family(state)
    matched_by = "name" if entry else None
    if entry is None:
        entry, matched_by = _match(path.name, digest, list_entries())
    problems = _problems(entry, size, digest, fmt, family) if entry else ()
    return VerifyResult(
        path=path,
        size=size,
        sha256=digest,
        format=fmt,
        family=family,
        tensors=len(state),
        entry=entry,
        matched_by=matched_by,
        problems=tuple(problems),
    )


def _match(
    file_name: str, digest: str, entries: Iterable[WeightsEntry]
) -> tuple[WeightsEntry | None, str | None]:
    entries = list(entries)
    # A checksum identifies a file for sure; names are ambiguous (two releases are both called
    # mobilenet0.25_Final.pth upstream).
    for entry in entries:
        if entry.sha256 == digest:
            return entry, "sha256"
    for entry in entries:
        if file_name == entry.file or file_name in entry.aliases:
            return entry, "file name"
    return None, None


def _problems(
    entry: WeightsEntry, size: int, digest: str, fmt: str, family: str | None
) -> list[str]:
    from lipdub.models.weights import FAMILIES

    problems = []
    if entry.sha256 is not None and digest != entry.sha256:
        problems.append(f"sha256 is {digest}, {entry.name} expects {entry.sha256}")
    if entry.size is not None and size != entry.size:
        problems.append(f"size is {size} bytes, {entry.name} expects {entry.size}")
    if family != entry.family:
        held = FAMILIES[family][0] if family else "no known model family"
        problems.append(f"it holds {held}, {entry.name} is {FAMILIES[entry.family][0]}")
    if entry.format is not None and fmt != entry.format:
        problems.append(f"format is {fmt}, {entry.name} is {entry.format}")
    return problems


def bundled_file(entry: WeightsEntry) -> Path:
    """The copy of ``entry`` that ships inside the package (``bundled`` in the registry)."""
    path = Path(str(resources.files("lipdub.configs").joinpath(entry.bundled)))
    if not path.is_file():
        raise RegistryError(f"{entry.name}: the bundled copy {path} is missing; reinstall lipdub "
                            f"or run `lipdub weights download {entry.name}`")
    return path


def resolve_weights_file(name_or_path: str | os.PathLike) -> Path:
    """A checkpoint given as a file path or as a registry name (looked up in the cache).

    Raises:
        RegistryError: neither an existing file nor a downloaded registry entry; the message
            says how to get it.
    """
    path = Path(name_or_path).expanduser()
    if path.is_file():
        return path
    names = {entry.name for entry in list_entries()}
    if str(name_or_path) not in names:
        raise RegistryError(
            f"{name_or_path}: no such file, and not a registry name "
            f"(known: {', '.join(sorted(names))})"
        )
    entry = get_entry(str(name_or_path))
    cached = cache_dir() / entry.file
    if not cached.is_file() and entry.bundled:
        return bundled_file(entry)
    if not cached.is_file():
        raise RegistryError(
            f"{entry.name} is not downloaded ({cached} missing); run "
            f"`lipdub weights download {entry.name}` or pass the file's path"
        )
    return cached
