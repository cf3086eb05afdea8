"""Quality control of a dubbed film: the checks (sync, seams, flicker, loudness, silence), the
report (contact sheets, plots, qc.html) and the verdict a producer sees in Prefect."""
