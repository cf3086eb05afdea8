"""lipdub: self-hosted visual dubbing (Wav2Lip-compatible lip sync for whole films).

The installed package has one import name, ``lipdub``; in the repository its parts are
top-level folders, mapped in pyproject.toml:

- ``lipdub.models`` (``models/``): the networks, architecture only; imports nothing of ours.
- ``lipdub.pipeline`` (``pipeline/``): every stage of ``lipdub sync`` and of the film flow; its
  docstring maps the modules by stage.
- ``lipdub.training`` (``training/``): training and evaluating the expert and the generator.
- ``lipdub.cli`` (``cli/``): the ``lipdub`` command, one module a command; the top layer.
- ``lipdub.plugin`` (``plugin/``): the editors' front ends (stdlib only; never torch).
- ``lipdub.configs`` (``configs/``): YAML presets, the checkpoint registry, the bundled detector.
"""
