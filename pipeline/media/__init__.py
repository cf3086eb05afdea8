"""Media in and out with PyAV: decode, encode, pixel access, delivery profiles, timecode,
provenance, OpenTimelineIO, loudness, and the packet-level copies that leave untouched
pictures bit-exact. Nothing here knows of faces, films or Prefect; it imports only
``lipdub.pipeline.errors``, ``partial_files`` and ``stopping``."""
