"""Finding faces: the RetinaFace detector's loading, detection on keyframes with refinement,
tracks linked across frames, and how much a mouth moves."""
