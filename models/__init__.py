"""The networks, weight-compatible with the public Wav2Lip, SyncNet and RetinaFace checkpoints.

Architecture only: no I/O beyond loading weights, nothing of lipdub's other packages. A
comment's "spec §N" is section N of docs/wav2lip_spec.md (layers, tensors and quirks of the
original code, in our words).
"""
