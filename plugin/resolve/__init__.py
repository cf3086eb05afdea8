"""DaVinci Resolve script (lipdub_dub.py) and the Resolve API calls it uses (timeline.py)."""
