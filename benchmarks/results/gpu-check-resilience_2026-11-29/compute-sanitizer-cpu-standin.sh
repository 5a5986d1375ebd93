#!/usr/bin/env bash
# CPU dry-run stand-in for compute-sanitizer: drops the sanitizer's own
# flags, runs the command on the CPU kernels, prints a summary line like the
# real tool's.
args=()
while (($#)); do
  case $1 in
    --tool|--error-exitcode) shift 2 ;;
    *) args+=("$1"); shift ;;
  esac
done
"${args[@]}" --device cpu
rc=$?
echo "========= ERROR SUMMARY: 0 errors"
exit $rc
