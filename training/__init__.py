"""Training the expert and the generator as the Wav2Lip paper does, and their evaluation.

A comment's "spec §N" is section N of docs/wav2lip_spec.md.
"""
