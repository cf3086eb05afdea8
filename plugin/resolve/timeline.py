"""The few DaVinci Resolve scripting API calls the lipdub script needs, kept in one place.

Only documented calls (Resolve's Developer/Scripting/README): ``GetProjectManager``,
``GetCurrentProject``, ``GetCurrentTimeline``, ``GetMediaPool``; ``Timeline.GetSelectedClips``
(newer releases) or ``GetCurrentVideoItem``, ``GetTrackCount``, ``GetItemListInTrack``,
``AddTrack``, ``DeleteClips``; ``TimelineItem.GetStart``, ``GetDuration``, ``GetLeftOffset``,
``GetTrackTypeAndIndex``, ``GetMediaPoolItem``, ``GetName``; ``MediaPoolItem.GetClipProperty``;
``MediaPool.GetRootFolder``, ``AddSubFolder``, ``SetCurrentFolder``, ``ImportMedia``,
``AppendToTimeline`` with clipInfo dicts (mediaPoolItem, startFrame, endFrame, mediaType,
trackIndex, recordFrame); ``Folder.GetSubFolderList``, ``GetName``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

from ..core.client import api_key_from_env

VIDEO = 1  # AppendToTimeline mediaType: video only (the dub's audio is the editor's own stems)
CONFIG_ENV = "LIPDUB_RESOLVE_CONFIG"


class ResolveError(Exception):
    """Something the editor must fix in Resolve (no timeline, no clip selected...)."""


def get_resolve(namespace: dict | None = None):
    """The ``resolve`` object: given to scripts run from Workspace > Scripts (as a global or a
    builtin, next to Fusion's ``app`` and ``bmd``), or through ``DaVinciResolveScript`` when
    the script runs outside Resolve with external scripting on."""
    import builtins

    namespace = namespace or {}

    def lookup(name):
        value = namespace.get(name)
        return value if value is not None else getattr(builtins, name, None)

    if lookup("resolve") is not None:
        return lookup("resolve")
    bmd = lookup("bmd")
    if bmd is not None and callable(getattr(bmd, "scriptapp", None)):
        return bmd.scriptapp("Resolve")
    app = lookup("app")  # Fusion's global in Resolve's script environment
    if app is not None and callable(getattr(app, "GetResolve", None)):
        return app.GetResolve()
    try:
        import DaVinciResolveScript as dvr  # noqa: N813 - Resolve's module name
    except ImportError:
        raise ResolveError("run this from DaVinci Resolve (Workspace > Scripts > lipdub_dub), "
                           "or set up Resolve's external scripting (see plugin/README.md)"
                           ) from None
    resolve = dvr.scriptapp("Resolve")
    if resolve is None:
        raise ResolveError("DaVinci Resolve is not running (or external scripting is off)")
    return resolve


def current_timeline(resolve):
    project = resolve.GetProjectManager().GetCurrentProject()
    if project is None:
        raise ResolveError("no project is open")
    timeline = project.GetCurrentTimeline()
    if timeline is None:
        raise ResolveError("no timeline is open: open the timeline with the clips to dub")
    return project, timeline


def _call(obj, name, *args):
    """obj.name(*args), or None where this Resolve release lacks the method."""
    fn = getattr(obj, name, None)
    if not callable(fn):
        return None
    try:
        return fn(*args)
    except (AttributeError, TypeError):
        return None


def _as_list(value) -> list:
    if not value:
        return []
    if isinstance(value, dict):  # some calls answer {1: item, 2: item}
        return [value[k] for k in sorted(value)]
    return list(value)


def selected_items(timeline) -> list:
    """The selected video clips (``GetSelectedClips``, in newer Resolve releases), or the clip
    under the playhead on the top video track (``GetCurrentVideoItem``)."""
    items = [i for i in _as_list(_call(timeline, "GetSelectedClips"))
             if track_of(timeline, i)[0] == "video"]
    if not items:
        current = _call(timeline, "GetCurrentVideoItem")
        items = [current] if current is not None else []
    return items


def _same(a, b) -> bool:
    ua, ub = _call(a, "GetUniqueId"), _call(b, "GetUniqueId")
    return a is b or (ua is not None and ua == ub)


def track_of(timeline, item) -> tuple[str, int]:
    """(track type, 1-based index): ``GetTrackTypeAndIndex`` or a search of the tracks."""
    answer = _call(item, "GetTrackTypeAndIndex")
    if isinstance(answer, (list, tuple)) and len(answer) >= 2:
        return str(answer[0]).lower(), int(answer[1])
    if isinstance(answer, dict) and "trackIndex" in answer:
        return str(answer.get("trackType", "video")).lower(), int(answer["trackIndex"])
    for kind in ("video", "audio"):
        for index in range(1, int(timeline.GetTrackCount(kind) or 0) + 1):
            if any(_same(i, item) for i in _as_list(timeline.GetItemListInTrack(kind, index))):
                return kind, index
    return "video", 1


@dataclass(frozen=True)
class ClipInfo:
    """Where a timeline clip comes from and where it sits."""

    name: str
    path: str  # the source file
    track: int  # 1-based video track
    record_start: int  # first timeline frame
    duration: int  # frames shown
    source_in: int  # first source frame shown (0-based)

    @property
    def record_end(self) -> int:  # one past the last timeline frame
        return self.record_start + self.duration

    @property
    def source_range(self) -> tuple[int, int]:  # first and last source frames shown
        return self.source_in, self.source_in + self.duration - 1


def clip_info(timeline, item) -> ClipInfo:
    media = item.GetMediaPoolItem()
    name = _call(item, "GetName") or "clip"
    if media is None:
        raise ResolveError(f"{name}: not a media clip (generator, title or compound clip)")
    path = media.GetClipProperty("File Path")
    if isinstance(path, dict):  # some releases answer {"File Path": ...}
        path = path.get("File Path")
    if not path:
        raise ResolveError(f"{name}: its media has no file path")
    start = int(item.GetStart())
    duration = _call(item, "GetDuration")
    duration = int(duration) if duration is not None else int(item.GetEnd()) - start
    return ClipInfo(name=name, path=str(path), track=track_of(timeline, item)[1],
                    record_start=start, duration=duration,
                    source_in=int(_call(item, "GetLeftOffset") or 0))


def _bin(media_pool, name: str):
    root = media_pool.GetRootFolder()
    for folder in _as_list(root.GetSubFolderList()):
        if folder.GetName() == name:
            return folder
    return media_pool.AddSubFolder(root, name)


def import_result(project, path: str, bin_name: str = "lipdub"):
    """Import the dubbed file into the media pool's ``bin_name`` bin; its MediaPoolItem."""
    pool = project.GetMediaPool()
    folder = _bin(pool, bin_name)
    if folder is not None:
        pool.SetCurrentFolder(folder)
    items = _as_list(pool.ImportMedia([path]))
    if not items:
        raise ResolveError(f"Resolve could not import {path}")
    return items[0]


def free_track_above(timeline, info: ClipInfo) -> int:
    """The lowest video track above the clip with nothing over its frames (added if needed)."""
    count = int(timeline.GetTrackCount("video") or 0)
    for index in range(info.track + 1, count + 1):
        busy = any(int(i.GetStart()) < info.record_end
                   and int(i.GetStart()) + _duration(i) > info.record_start
                   for i in _as_list(timeline.GetItemListInTrack("video", index)))
        if not busy:
            return index
    if not timeline.AddTrack("video"):
        raise ResolveError("could not add a video track for the dubbed clip")
    return count + 1


def _duration(item) -> int:
    d = _call(item, "GetDuration")
    return int(d) if d is not None else int(item.GetEnd()) - int(item.GetStart())


def place_above(project, timeline, info: ClipInfo, media_item):
    """Put the dubbed clip's same source frames on a free track above, at the same timeline
    frame. Resolve releases differ on whether ``endFrame`` is inclusive: the placed length is
    read back and the clip placed again one frame shorter if it came out long."""
    pool = project.GetMediaPool()
    track = free_track_above(timeline, info)
    end = info.source_in + info.duration
    for _ in range(2):
        placed = _as_list(pool.AppendToTimeline([{
            "mediaPoolItem": media_item, "startFrame": info.source_in, "endFrame": end,
            "mediaType": VIDEO, "trackIndex": track, "recordFrame": info.record_start}]))
        if not placed:
            raise ResolveError(f"Resolve did not place the dubbed clip of {info.name}")
        item = placed[0]
        length = _duration(item)
        if length == info.duration:
            return item
        timeline.DeleteClips([item], False)
        end -= length - info.duration
    raise ResolveError(f"the dubbed clip of {info.name} could not be placed at "
                       f"{info.duration} frames")


def config_path() -> str:
    if os.environ.get(CONFIG_ENV):
        return os.environ[CONFIG_ENV]
    base = os.environ.get("APPDATA") or os.path.join(os.path.expanduser("~"), ".config")
    return os.path.join(base, "lipdub", "resolve.json")


def load_config(path: str | None = None) -> dict:
    """The script's settings (JSON; see plugin/README.md). The API key is best given in the
    LIPDUB_API_KEY environment variable rather than in the file."""
    path = path or config_path()
    if not os.path.isfile(path):
        raise ResolveError(f"settings file {path} not found: write it as plugin/README.md "
                           f"shows (or point {CONFIG_ENV} at one)")
    with open(path, encoding="utf-8") as fh:
        try:
            config = json.load(fh)
        except ValueError as exc:
            raise ResolveError(f"{path} is not valid JSON: {exc}") from None
    if not isinstance(config, dict):
        raise ResolveError(f"{path}: the settings must be a JSON object")
    key = api_key_from_env()
    if key:
        config["api_key"] = key
    if os.environ.get("LIPDUB_SERVER_URL"):
        config["server_url"] = os.environ["LIPDUB_SERVER_URL"]
    config.setdefault("_path", path)
    return config


def stems_for(config: dict, source: str) -> dict[str, str]:
    """The configured stems for one source: ``{name}`` is its file name without extension,
    ``{dir}`` its folder (``"/reels/stems/{name}.anna.wav"``)."""
    name = os.path.splitext(os.path.basename(source))[0]
    folder = os.path.dirname(source)
    return {character: os.path.normpath(path.replace("{name}", name).replace("{dir}", folder))
            for character, path in (config.get("stems") or {}).items()}
