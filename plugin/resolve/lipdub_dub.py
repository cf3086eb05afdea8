"""lipdub for DaVinci Resolve: Workspace > Scripts > Edit > lipdub_dub.

Sends the current timeline's selected clip(s) (or the clip under the playhead) to the studio's
``dub_film`` Prefect deployment with the stems named in the settings file, prints progress to
Workspace > Console, and when a run is done imports the dubbed file into the media pool's
``lipdub`` bin and places the same source frames on a free video track above the clip, at
the same timeline frame. ``lipdub_cancel`` cancels the runs this script is following.

Everything but the Resolve calls is plugin/core (stdlib only); the Resolve calls are in
timeline.py. The script finds the ``plugin`` package through LIPDUB_PLUGIN_PATH (the folder
holding ``plugin/``) or, when it is a symlink into a lipdub checkout, through its real path.
"""

from __future__ import annotations

import json
import os
import sys
import time


def _bootstrap() -> None:
    candidates = [os.environ.get("LIPDUB_PLUGIN_PATH")]
    try:
        candidates.append(os.path.dirname(os.path.dirname(os.path.dirname(
            os.path.realpath(__file__)))))
    except NameError:  # some hosts exec scripts without __file__
        pass
    for folder in candidates:
        if folder and os.path.isfile(os.path.join(folder, "plugin", "core", "client.py")):
            if folder not in sys.path:
                sys.path.insert(0, folder)
            return


if __package__:  # imported: lipdub.plugin.resolve (installed) or plugin.resolve (a checkout)
    from .. import core
    from . import timeline as rt
else:  # run by Resolve as a script: find the checkout first
    _bootstrap()
    from plugin import core  # noqa: E402 - after the path set-up
    from plugin.resolve import timeline as rt  # noqa: E402


def runs_file() -> str:
    """Flow runs being followed (for lipdub_cancel), beside the settings file."""
    return os.path.join(os.path.dirname(rt.config_path()), "resolve_runs.json")


def _record_run(run_id: str, entry: dict | None) -> None:
    path = runs_file()
    try:
        with open(path, encoding="utf-8") as fh:
            runs = json.load(fh)
    except (OSError, ValueError):
        runs = {}
    if entry is None:
        runs.pop(run_id, None)
    else:
        runs[run_id] = entry
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(runs, fh, indent=1)


def _client(config: dict) -> core.PrefectClient:
    return core.PrefectClient(config.get("server_url") or core.DEFAULT_URL,
                              config.get("api_key"), timeout=float(config.get("timeout", 10)))


def build_request(config: dict, info: rt.ClipInfo) -> core.DubRequest:
    stems = rt.stems_for(config, info.path)
    faces = config.get("faces") or {}
    return core.DubRequest(
        film=info.path, stems=stems,
        output=core.default_output_path(info.path, list(stems),
                                        folder=config.get("output_dir") or None),
        generator=config.get("generator") or "wav2lip_gan",
        detector=config.get("detector") or None, work_dir=config.get("work_dir") or None,
        consent=config.get("consent") or None, frame_range=info.source_range,
        overrides=[{"character": c, "face": {"index": int(i)}} for c, i in faces.items()
                   if c in stems and int(i) >= 0])


def main(resolve=None, config: dict | None = None, out=print, tick: float = 0.5) -> list[dict]:
    """Dub the selected clips; returns one outcome dict per clip (clip, phase, message...)."""
    try:
        resolve = resolve or rt.get_resolve(globals())
        config = config if config is not None else rt.load_config()
        project, timeline = rt.current_timeline(resolve)
        items = rt.selected_items(timeline)
        if not items:
            raise rt.ResolveError("select the clip(s) to dub on the timeline (or park the "
                                  "playhead over one)")
        client = _client(config)
    except (rt.ResolveError, core.PluginError) as exc:
        out(f"lipdub: {exc}")
        return [{"clip": None, "phase": "error", "message": str(exc)}]
    path_map = core.PathMap.parse(config.get("path_map") or "")
    deployment = config.get("deployment") or core.DEFAULT_DEPLOYMENT
    outcomes, jobs = [], []
    for item in items:
        try:
            info = rt.clip_info(timeline, item)
        except rt.ResolveError as exc:
            out(f"lipdub: {exc}")
            outcomes.append({"clip": None, "phase": "error", "message": str(exc)})
            continue
        request = build_request(config, info)
        problems = request.problems()
        if problems:
            message = "; ".join(problems)
            out(f"lipdub: {info.name}: {message}")
            outcomes.append({"clip": info.name, "phase": "error", "message": message})
            continue
        task = core.DubTask(client, deployment, request, path_map=path_map,
                            poll_interval=float(config.get("poll_seconds", 2)),
                            origin="resolve").start()
        jobs.append((info, task))
        first, last = info.source_range
        out(f"lipdub: {info.name}: sending {info.path} (frames {first}-{last}) to {deployment}")
    _follow(jobs, out, tick)
    for info, task in jobs:
        outcomes.append(_bring_back(project, timeline, info, task.snapshot(), config, out))
    return outcomes


def _follow(jobs: list, out, tick: float) -> None:
    shown: dict[str, str] = {}
    recorded: set[str] = set()
    try:
        while True:
            for info, task in jobs:
                status = task.snapshot()
                if status.flow_run_id and status.flow_run_id not in recorded:
                    recorded.add(status.flow_run_id)
                    _record_run(status.flow_run_id, {"clip": info.name,
                                                     "server_url": task.client.api_url})
                line = status.line()
                if shown.get(task.id) != line:
                    shown[task.id] = line
                    out(f"lipdub: {info.name}: {line}")
            if all(task.done for _, task in jobs):
                break
            time.sleep(tick)
    except KeyboardInterrupt:
        out("lipdub: interrupted: cancelling the runs")
        for _, task in jobs:
            task.cancel()
        for _, task in jobs:
            task.wait(60)
    finally:
        for run_id in recorded:
            _record_run(run_id, None)


def _bring_back(project, timeline, info: rt.ClipInfo, status, config: dict, out) -> dict:
    outcome = {"clip": info.name, "phase": status.phase, "message": status.message,
               "output": status.output, "flow_run": status.flow_run_name, "track": None}
    if not status.ok:
        out(f"lipdub: {info.name}: {status.line()}")
        return outcome
    try:
        media = rt.import_result(project, status.output, config.get("bin") or "lipdub")
        placed = rt.place_above(project, timeline, info, media)
        outcome["track"] = rt.track_of(timeline, placed)[1]
        out(f"lipdub: {info.name}: {status.message}; placed on V{outcome['track']} at frame "
            f"{info.record_start}")
    except rt.ResolveError as exc:
        outcome.update(phase="error", message=f"{exc}; the dub is at {status.output}")
        out(f"lipdub: {info.name}: {outcome['message']}")
    return outcome


def cancel_main(config: dict | None = None, out=print) -> int:
    """Cancel every run lipdub_dub is following (the lipdub_cancel script)."""
    try:
        config = config if config is not None else rt.load_config()
        with open(runs_file(), encoding="utf-8") as fh:
            runs = json.load(fh)
    except (OSError, ValueError):
        runs = {}
    except rt.ResolveError as exc:
        out(f"lipdub: {exc}")
        return 0
    if not runs:
        out("lipdub: no dub is running")
        return 0
    cancelled = 0
    for run_id, entry in runs.items():
        client = core.PrefectClient(entry.get("server_url") or config.get("server_url"),
                                    config.get("api_key"))
        try:
            client.cancel_flow_run(run_id)
            cancelled += 1
            out(f"lipdub: cancelling {entry.get('clip')} (flow run {run_id})")
        except core.PluginError as exc:
            out(f"lipdub: {entry.get('clip')}: {exc}")
    return cancelled


if __name__ == "__main__":
    main()
