#!/usr/bin/env bash
# Verify a paper's published notebooks on this machine, and keep a report to attach to a review.
#
#   examples/reviewer/verify_paper.sh [PATH...]          (default PATH: notebooks)
#
# Runs every notebook under PATH that has a lock (<stem>.repro.json) on this machine's GPU when
# one is visible (nvidia-smi lists it), else on the CPU, and compares each result with the lock.
# Environment: DEVICE (cpu | cuda | auto: overrides the choice), OUT (folder of everything written,
# default reprokit-review), JOBS (notebooks at once, default 2).
# Writes OUT/report.html (self-contained: open it in a browser), OUT/junit.xml, OUT/verdicts.json
# and the executed notebooks under OUT/runs/. Exits with reprokit verify's code: 0 every result
# reproduced, 1 not reproduced or input data changed, 2 bad input, 3 a notebook failed to run.
set -uo pipefail

paths=("$@")
[ ${#paths[@]} -gt 0 ] || paths=(notebooks)
out="${OUT:-reprokit-review}"
jobs="${JOBS:-2}"

if [ -n "${DEVICE:-}" ]; then
    device="$DEVICE"
elif command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L 2>/dev/null | grep -q '^GPU'; then
    device=cuda
else
    device=cpu
fi

mkdir -p "$out"
command=(reprokit verify "${paths[@]}" --device "$device" --jobs "$jobs"
         --output-dir "$out/runs" --report "$out/report.html" --junit "$out/junit.xml"
         --json "$out/verdicts.json")
echo "device: $device"
echo "+ ${command[*]}"
"${command[@]}"
status=$?

case $status in
    0) echo "verdict: every result reproduced" ;;
    1) echo "verdict: NOT reproduced (or the input data changed): read $out/report.html" ;;
    2) echo "verdict: bad input (see the error above): nothing was verified" ;;
    3) echo "verdict: a notebook failed to execute: its executed copy is under $out/runs/" ;;
    *) echo "verdict: stopped (exit $status)" ;;
esac
[ -f "$out/report.html" ] && echo "report: $out/report.html"
exit $status
