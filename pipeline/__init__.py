"""lipdub's stages: plain typed functions, with Prefect only at the edge (``flows``, ``farm``).

Two ways in, and the modules each goes through to the generator call (tests/test_import_graph
checks the first chain):

- ``lipdub sync`` (one clip): ``lipdub.cli.sync`` -> ``clip_sync.sync_clip`` ->
  ``generator.LipSyncModel`` -> ``lipdub.models.wav2lip``.
- ``lipdub dub`` / ``lipdub submit`` (a whole film): ``lipdub.cli.dub`` -> ``flows.dub_film``
  -> ``film_stages`` -> ``film_units.lipsync_unit`` -> ``generator.LipSyncModel``; on a farm
  ``farm.chunk_flows`` runs the same ``film_stages`` on other machines.

The modules, by stage:

====================  ==========================================================================
stage                 modules
====================  ==========================================================================
job and settings      ``job`` (the job spec), ``defaults`` (one table for both entry paths),
                      ``contract`` (what the editors' plugins rely on), ``roots`` (where a
                      machine may read and write), ``weights_registry`` (official
                      checkpoints), ``errors``
media in and out      ``media/``: ``decode``, ``encode``, ``frames``, ``profiles``,
                      ``passthrough``, ``splice``, ``stream_copy``, ``timecode``, ``provenance``,
                      ``otio_export``, ``loudness``
audio                 ``audio`` (Wav2Lip's mel), ``stems`` (dialogue stems, speech, the mix),
                      ``stem_mel`` and ``dub_process`` (mel in a child process)
shots and faces       ``shots`` (PySceneDetect), ``faces/``: ``detector``, ``keyframes``,
                      ``face_track``, ``face_plan`` (a clip's boxes: sync and prepare),
                      ``motion_frames``, ``mouth_activity``; ``film_scan`` (a film's cuts and
                      tracks, cached)
routing               ``routing`` (which face speaks each line), ``active_speaker`` and
                      ``expert_routing`` (its two judges), ``routing_report``
lip sync              ``generator`` (batched Wav2Lip on face crops), ``composite`` (the mouth
                      pasted back), ``clip_sync`` (``lipdub sync``), ``film_units`` (a film's
                      units, cached), ``background`` (decode ahead of the model)
sync measurement      ``lse_metric`` (LSE-D/LSE-C, syncnet_python's), ``lse_segment`` (one
                      segment measured, for QC and routing)
film flow             ``flows`` (``dub_film``), ``film_stages`` (its stages as functions),
                      ``assemble`` (the output), ``film_summary`` (``OUT.json``), ``turns``
                      (GPU turns), ``run_progress``, ``run_tables`` (what the Prefect UI
                      shows), ``work_cache``
farm                  ``farm/``: ``fan_out``, ``chunk_flows``, ``temporary_server``
quality control       ``qc/``: ``checks``, ``report``, ``verdict``
processes             ``stopping`` (signals), ``die_with_parent``, ``partial_files`` (temporary
                      names, atomic writes), ``prefect_env``
====================  ==========================================================================
"""

from lipdub.pipeline import prefect_env  # noqa: F401  (Prefect telemetry off before any Prefect)
