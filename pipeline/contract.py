"""What the film flow promises the editors' front ends: deployment, artifact keys, names.

The front ends keep their own copy (lipdub.plugin.core.contract, stdlib only, vendored into the
Blender add-on; the pipeline never imports the plugin): tests/test_contract.py pins the two.
"""

FLOW = "dub_film"  # the film flow's name
DEPLOYMENT = "lipdub"  # `lipdub serve`'s default deployment name
FLOW_DEPLOYMENT = f"{FLOW}/{DEPLOYMENT}"
PROGRESS_KEY = "lipdub-progress"  # the run's progress artifact (percent, description)
RESULT_KEY = "lipdub-result"  # the run's result artifact (markdown: frames changed, QC verdict)
QC_KEY = "lipdub-qc"  # the table of what QC flagged
SUMMARY_SUFFIX = ".json"  # the run summary is written beside the output: OUT + SUMMARY_SUFFIX
# A character's name (a stem's key in the job): letters of any script, digits, "-" and "_".
CHARACTER_NAME = r"[\w-]+"
CHARACTER_NAME_RULE = "use letters, digits, - and _"
