"""One table of the lip-sync and face-tracking defaults.

``lipdub sync``'s flags, :class:`lipdub.pipeline.clip_sync.SyncOptions` and the job spec's
``settings`` (:class:`lipdub.pipeline.job.Settings`) all read their defaults here, so the two
entry paths cannot drift apart (tests/test_defaults.py holds them to it).
"""

PADS = (0, 10, 0, 0)  # pixels added to a face box: top, bottom, left, right (the reference's)
SMOOTH_WINDOW = 5  # frames a face box is averaged over (the reference's get_smoothened_boxes)
DETECT_EVERY = 4  # the detector runs on every N-th frame, refined where faces move
# `lipdub prepare`: keyframes twice as dense. A training crop a few pixels off teaches the
# generator a shifted mouth, and a dataset is prepared once, so the detector's time matters less.
PREPARE_DETECT_EVERY = 2
DETECT_SIZE = 480  # long side of the picture copy the detector sees
DEVICE = "auto"  # cuda when present, else cpu
STILL_FPS = 25.0  # frame rate given to a still picture
MATCH_COLOUR = True  # the generated mouth's colour matched to the frame's
# Generator batch when none is given: the reference's 128 on a GPU; 8 on a CPU, where larger
# batches are no faster but each 8 more frames hold ~100 MB more activations.
GPU_BATCH = 128
CPU_BATCH = 8
