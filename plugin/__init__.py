"""Editor plugins (Blender VSE add-on, DaVinci Resolve script) that drive the lipdub Prefect
deployment over its REST API. Nothing here imports torch or the pipeline."""
