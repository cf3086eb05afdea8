"""The Resolve script against fakes: Resolve's documented scripting objects (Resolve cannot be
installed here) and a stand-in Prefect REST server speaking the few endpoints plugin/core uses
(the real server is covered by test_plugin_client.py and test_plugin_blender.py)."""

from __future__ import annotations

import http.server
import itertools
import json
import re
import shutil
import threading
import time

import pytest

from lipdub.plugin.resolve import lipdub_dub
from lipdub.plugin.resolve import timeline as rt

_ids = itertools.count(1)


# ------------------------------------------------------------------ fake Resolve API objects
class MediaPoolItem:
    def __init__(self, path, frames=100):
        self.path, self.frames, self.uid = str(path), frames, f"mpi{next(_ids)}"

    def GetClipProperty(self, key=None):
        props = {"File Path": self.path, "Frames": str(self.frames)}
        return props if key is None else props.get(key, "")

    def GetName(self):
        return self.path.rsplit("/", 1)[-1]

    def GetUniqueId(self):
        return self.uid


class TimelineItem:
    def __init__(self, media, kind, track, start, duration, left_offset=0):
        self.media, self.kind, self.track = media, kind, track
        self.start, self.duration, self.left = start, duration, left_offset
        self.uid = f"ti{next(_ids)}"

    def GetName(self):
        return self.media.GetName() if self.media else "Solid Color"

    def GetStart(self):
        return self.start

    def GetEnd(self):
        return self.start + self.duration

    def GetDuration(self):
        return self.duration

    def GetLeftOffset(self):
        return self.left

    def GetMediaPoolItem(self):
        return self.media

    def GetTrackTypeAndIndex(self):
        return [self.kind, self.track]

    def GetUniqueId(self):
        return self.uid


class OldTimelineItem(TimelineItem):
    GetTrackTypeAndIndex = None  # not in older releases


class Timeline:
    def __init__(self, video_tracks=2, selected=None, item_class=TimelineItem):
        self.tracks = {"video": [[] for _ in range(video_tracks)], "audio": [[]]}
        self.selected = selected or []
        self.current = None
        self.item_class = item_class
        self.deleted = []

    def add(self, media, kind, track, start, duration, left=0):
        item = self.item_class(media, kind, track, start, duration, left)
        self.tracks[kind][track - 1].append(item)
        return item

    def GetTrackCount(self, kind):
        return len(self.tracks[kind])

    def GetItemListInTrack(self, kind, index):
        return list(self.tracks[kind][index - 1])

    def AddTrack(self, kind, *args):
        self.tracks[kind].append([])
        return True

    def DeleteClips(self, items, ripple=False):
        for item in items:
            self.tracks[item.kind][item.track - 1].remove(item)
            self.deleted.append(item)
        return True

    def GetSelectedClips(self):
        return list(self.selected)

    def GetCurrentVideoItem(self):
        return self.current


class OldTimeline(Timeline):
    GetSelectedClips = None  # Resolve releases before selection was scriptable


class Folder:
    def __init__(self, name):
        self.name, self.subfolders = name, []

    def GetName(self):
        return self.name

    def GetSubFolderList(self):
        return list(self.subfolders)


class MediaPool:
    def __init__(self, timeline, inclusive_end=False):
        self.timeline, self.inclusive_end = timeline, inclusive_end
        self.root, self.current = Folder("Master"), None
        self.imported, self.appended = [], []

    def GetRootFolder(self):
        return self.root

    def AddSubFolder(self, folder, name):
        sub = Folder(name)
        folder.subfolders.append(sub)
        return sub

    def SetCurrentFolder(self, folder):
        self.current = folder
        return True

    def ImportMedia(self, paths):
        items = [MediaPoolItem(p) for p in paths]
        self.imported += [(self.current.GetName(), it.path) for it in items]
        return items

    def AppendToTimeline(self, infos):
        placed = []
        for info in infos:
            self.appended.append(dict(info))
            length = info["endFrame"] - info["startFrame"] + (1 if self.inclusive_end else 0)
            kind = "video" if info.get("mediaType") == 1 else "audio"
            placed.append(self.timeline.add(info["mediaPoolItem"], kind, info["trackIndex"],
                                            info["recordFrame"], length, info["startFrame"]))
        return placed


class Project:
    def __init__(self, timeline, pool):
        self.timeline, self.pool = timeline, pool

    def GetMediaPool(self):
        return self.pool

    def GetCurrentTimeline(self):
        return self.timeline


class Resolve:
    def __init__(self, project):
        self.project = project

    def GetProjectManager(self):
        return self

    def GetCurrentProject(self):
        return self.project


# --------------------------------------------------------------- stand-in Prefect REST API
class PrefectStandIn(http.server.BaseHTTPRequestHandler):
    """Films named *bad* fail, *slow* never finish, others complete on the third poll (the
    output is then written, as a render machine would)."""

    runs: dict = {}
    created: list = []

    def _send(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _body(self):
        n = int(self.headers.get("Content-Length") or 0)
        return json.loads(self.rfile.read(n) or b"null")

    def do_GET(self):
        if self.path == "/api/deployments/name/dub_film/lipdub":
            return self._send(200, {"id": "dep-1", "name": "lipdub", "work_pool_name": "pool",
                                    "flow_id": "f", "some_new_field": {"x": 1}})
        if self.path.startswith("/api/work_pools/"):
            return self._send(200, {"name": "pool", "status": "READY"})
        m = re.fullmatch(r"/api/flow_runs/([\w-]+)", self.path)
        if m and m.group(1) in self.runs:
            return self._send(200, self._advance(self.runs[m.group(1)]))
        self._send(404, {"detail": "Not Found"})

    def do_POST(self):
        body = self._body()
        if self.path == "/api/deployments/dep-1/create_flow_run":
            run = {"id": f"run-{next(_ids)}", "name": body.get("name"), "polls": 0,
                   "parameters": body["parameters"], "tags": body["tags"],
                   "state": {"type": "SCHEDULED", "name": "Scheduled"}}
            self.runs[run["id"]] = run
            self.created.append(run)
            return self._send(201, self._public(run))
        if self.path == "/api/artifacts/filter":
            keys = body["artifacts"].get("key", {}).get("any_", [])
            if keys == ["lipdub-progress"]:
                return self._send(200, [{"id": "a1", "key": keys[0], "type": "progress",
                                         "data": 50.0}])
            return self._send(200, [{"id": "a2", "key": "lipdub-result", "type": "markdown",
                                     "data": "**dub.mp4**: 40 of 100 frames changed"}])
        m = re.fullmatch(r"/api/flow_runs/([\w-]+)/set_state", self.path)
        if m and m.group(1) in self.runs:
            run = self.runs[m.group(1)]
            run["state"] = {"type": "CANCELLED", "name": "Cancelled",
                            "message": "cancelled from the editor"}
            return self._send(200, {"status": "ACCEPT", "state": run["state"], "details": {}})
        self._send(404, {"detail": "Not Found"})

    def _public(self, run):
        return {k: v for k, v in run.items() if k != "polls"}

    def _advance(self, run):
        film = run["parameters"]["job"]["film"]
        run["polls"] += 1
        if run["state"]["type"] in ("CANCELLED", "COMPLETED", "FAILED"):
            return self._public(run)
        if "slow" in film or run["polls"] == 1:
            run["state"] = {"type": "RUNNING", "name": "Running"}
        elif "bad" in film:
            run["state"] = {"type": "FAILED", "name": "Failed",
                            "message": f"Flow run encountered an exception: JobSpecError: "
                                       f"film: {film} is not a readable media file"}
        else:
            out = run["parameters"]["job"]["output"]["path"]
            shutil.copy(film, out)
            with open(out + ".json", "w") as fh:
                json.dump({"output": out, "frames": 100, "frames_changed": 40}, fh)
            run["state"] = {"type": "COMPLETED", "name": "Completed"}
        return self._public(run)

    def log_message(self, *args):
        pass


@pytest.fixture()
def prefect(monkeypatch, tmp_path):
    PrefectStandIn.runs, PrefectStandIn.created = {}, []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), PrefectStandIn)
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    monkeypatch.setenv("LIPDUB_RESOLVE_CONFIG", str(tmp_path / "cfg" / "resolve.json"))
    yield f"http://127.0.0.1:{server.server_address[1]}/api"
    server.shutdown()
    server.server_close()


def make_media(tmp_path, name):
    film = tmp_path / "reels" / f"{name}.mov"
    film.parent.mkdir(exist_ok=True)
    film.write_bytes(b"pretend film " + name.encode())
    (film.parent / f"{name}.anna.wav").write_bytes(b"pretend stem")
    return film


def settings(url, tmp_path, **extra):
    config = {"server_url": url, "deployment": "dub_film/lipdub", "generator": "wav2lip_gan",
              "stems": {"anna": "{dir}/{name}.anna.wav"}, "faces": {"anna": 0},
              "output_dir": str(tmp_path / "dubbed"), "poll_seconds": 0.05,
              "consent": "internal test"}
    config.update(extra)
    return config


def run_script(resolve, config):
    lines = []
    outcomes = lipdub_dub.main(resolve=resolve, config=config, out=lines.append, tick=0.01)
    return outcomes, lines


# ------------------------------------------------------------------------------------ tests
def test_selected_clip_is_dubbed_and_placed_above(prefect, tmp_path):
    film = make_media(tmp_path, "reel1")
    timeline = Timeline(video_tracks=2)
    media = MediaPoolItem(film)
    clip = timeline.add(media, "video", 1, start=86410, duration=40, left=5)
    linked_audio = timeline.add(media, "audio", 1, start=86410, duration=40, left=5)
    timeline.selected = [clip, linked_audio]
    pool = MediaPool(timeline)
    outcomes, lines = run_script(Resolve(Project(timeline, pool)), settings(prefect, tmp_path))

    assert len(outcomes) == 1 and outcomes[0]["phase"] == "completed", lines
    assert outcomes[0]["track"] == 2
    (run,) = PrefectStandIn.created
    job = run["parameters"]["job"]
    assert job["film"] == str(film)
    assert job["stems"] == {"anna": str(film.parent / "reel1.anna.wav")}
    assert job["overrides"] == [{"character": "anna", "face": {"index": 0}}]
    assert job["output"]["path"].startswith(str(tmp_path / "dubbed" / "reel1_dub_anna_"))
    assert job["consent"] == "internal test"
    assert {"lipdub-plugin", "resolve", "frames:5-44"} <= set(run["tags"])

    assert pool.imported == [("lipdub", job["output"]["path"])]
    assert pool.appended == [{"mediaPoolItem": pool.appended[0]["mediaPoolItem"],
                              "startFrame": 5, "endFrame": 45, "mediaType": 1,
                              "trackIndex": 2, "recordFrame": 86410}]
    (placed,) = timeline.tracks["video"][1]
    assert (placed.start, placed.duration, placed.left) == (86410, 40, 5)
    text = "\n".join(lines)
    assert "Running 50%" in text and "placed on V2 at frame 86410" in text
    assert "40 of 100 frames changed" in text  # the summary written beside the output


def test_older_resolve_playhead_clip_busy_track_and_inclusive_end(prefect, tmp_path):
    film = make_media(tmp_path, "reel2")
    timeline = OldTimeline(video_tracks=2, item_class=OldTimelineItem)
    timeline.current = timeline.add(MediaPoolItem(film), "video", 1, start=100, duration=30)
    timeline.add(MediaPoolItem(tmp_path / "title.mov"), "video", 2, start=120, duration=50)
    pool = MediaPool(timeline, inclusive_end=True)
    outcomes, lines = run_script(Resolve(Project(timeline, pool)), settings(prefect, tmp_path))

    assert outcomes[0]["phase"] == "completed" and outcomes[0]["track"] == 3, lines
    assert len(timeline.tracks["video"]) == 3  # V2 was busy over the clip: a track was added
    assert [a["endFrame"] for a in pool.appended] == [30, 29]  # read back, placed again
    assert len(timeline.deleted) == 1
    (placed,) = timeline.tracks["video"][2]
    assert (placed.start, placed.duration) == (100, 30)


def test_failed_run_reports_and_places_nothing(prefect, tmp_path):
    film = make_media(tmp_path, "bad_reel")
    timeline = Timeline()
    timeline.selected = [timeline.add(MediaPoolItem(film), "video", 1, 0, 20)]
    pool = MediaPool(timeline)
    outcomes, lines = run_script(Resolve(Project(timeline, pool)), settings(prefect, tmp_path))
    assert outcomes[0]["phase"] == "failed"
    assert "not a readable media file" in outcomes[0]["message"]
    assert pool.imported == [] and pool.appended == []


def test_cancel_from_the_second_script(prefect, tmp_path):
    film = make_media(tmp_path, "slow_reel")
    timeline = Timeline()
    timeline.selected = [timeline.add(MediaPoolItem(film), "video", 1, 0, 20)]
    pool = MediaPool(timeline)
    config = settings(prefect, tmp_path)
    result = {}
    thread = threading.Thread(target=lambda: result.update(
        out=run_script(Resolve(Project(timeline, pool)), config)))
    thread.start()
    deadline = time.time() + 20
    while time.time() < deadline:
        try:
            if json.loads(open(lipdub_dub.runs_file()).read()):
                break
        except (OSError, ValueError):
            pass
        time.sleep(0.02)
    lines = []
    assert lipdub_dub.cancel_main(config, out=lines.append) == 1, lines
    thread.join(20)
    outcomes, _ = result["out"]
    assert outcomes[0]["phase"] == "cancelled" and pool.appended == []
    assert json.loads(open(lipdub_dub.runs_file()).read()) == {}  # no longer followed
    assert lipdub_dub.cancel_main(config, out=lines.append) == 0
    assert lines[-1] == "lipdub: no dub is running"


def test_user_errors_are_reported_without_a_run(prefect, tmp_path):
    film = make_media(tmp_path, "reel3")
    timeline = Timeline()
    project = Project(timeline, MediaPool(timeline))
    outcomes, lines = run_script(Resolve(project), settings(prefect, tmp_path))
    assert outcomes[0]["phase"] == "error" and "select the clip" in lines[0]

    timeline.selected = [timeline.add(MediaPoolItem(film), "video", 1, 0, 20),
                         timeline.add(None, "video", 2, 0, 20)]  # a generator: no media
    outcomes, lines = run_script(Resolve(project), settings(
        prefect, tmp_path, stems={"anna": "{dir}/missing.wav"}))
    assert [o["phase"] for o in outcomes] == ["error", "error"]
    assert "missing.wav does not exist" in outcomes[0]["message"]
    assert "not a media clip" in outcomes[1]["message"]
    assert PrefectStandIn.created == []

    outcomes, lines = run_script(Resolve(Project(None, None)), settings(prefect, tmp_path))
    assert "no timeline is open" in lines[0]


def test_settings_file_and_environment(tmp_path, monkeypatch):
    path = tmp_path / "resolve.json"
    monkeypatch.setenv("LIPDUB_RESOLVE_CONFIG", str(path))
    with pytest.raises(rt.ResolveError, match="not found"):
        rt.load_config()
    path.write_text(json.dumps({"server_url": "http://a:4200/api", "stems": {"bob": "/s/b.wav"}}))
    monkeypatch.setenv("LIPDUB_API_KEY", "k")
    monkeypatch.setenv("LIPDUB_SERVER_URL", "http://b:4200/api")
    config = rt.load_config()
    assert config["api_key"] == "k" and config["server_url"] == "http://b:4200/api"
    assert rt.stems_for(config, "/r/x.mov") == {"bob": "/s/b.wav"}
    with pytest.raises(rt.ResolveError, match="DaVinci Resolve"):
        rt.get_resolve({})  # no Resolve here
    resolve = Resolve(None)
    assert rt.get_resolve({"resolve": resolve}) is resolve
    app = type("App", (), {"GetResolve": lambda self: resolve})()
    assert rt.get_resolve({"app": app}) is resolve
