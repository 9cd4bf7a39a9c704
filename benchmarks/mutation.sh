#!/usr/bin/env bash
# Mutation testing of the geometry (data_load), the metrics (pipeline/evaluation.py) and the release
# (course/release.py): mutmut changes one operator, number or name at a time and runs the tests that cover it; a
# mutant that no test notices "survives" and marks a behaviour no test pins down. Settings (files, tests) are in setup.cfg's [mutmut] section.
#
#     pip install -r requirements-dev.txt
#     bash benchmarks/mutation.sh                                  # the geometry, metric and release functions
#     bash benchmarks/mutation.sh "pipeline.evaluation.x_nme*"     # only the mutants whose names match
#
# It prints the surviving mutants; `mutmut show NAME` shows one as a diff. Not part of CI: it takes minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
export FKP_QUICK=1 MPLBACKEND=Agg
DEFAULT=(
  "data_load.x_keypoint_box*" "data_load.x_haar_box_from_keypoints*" "data_load.x_crop_square_from_box*"
  "data_load.x_crop_matrix*" "data_load.x_transform_points*" "data_load.x_flip_keypoints*"
  "data_load.x_normalize_keypoints*" "data_load.x_denormalize_keypoints*"
  "pipeline.evaluation.x_point_errors*" "pipeline.evaluation.x_interocular_distance*"
  "pipeline.evaluation.x_nme_interocular*" "pipeline.evaluation.x_nme_box*" "pipeline.evaluation.x_failure_rate*"
  "pipeline.evaluation.x_cumulative_error_curve*" "pipeline.evaluation.x_auc*" "pipeline.evaluation.x_summarize*"
  "course.release.x_release_notebook*" "course.release.x_is_ignored*" "course.release.x_replace_regions*"
)
if [ "$#" -gt 0 ]; then PATTERNS=("$@"); else PATTERNS=("${DEFAULT[@]}"); fi
mkdir -p mutants
nice -n 15 mutmut run "${PATTERNS[@]}" > mutants/run.log 2>&1 || { tail -c 2000 mutants/run.log; exit 1; }
mutmut results | grep -v ": not checked$"
