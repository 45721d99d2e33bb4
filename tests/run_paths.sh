#!/bin/sh
# Runs the test suite once per kernel path (each binary built by the Makefile with that path's flags)
# and ends with the total "N passed, N failed". Usage: [QEMU=qemu-aarch64] run_paths.sh DATA_DIR BINARY...
data=$1; shift
passed=0; failed=0; status=0
for bin in "$@"; do
    out=$(${QEMU:+"$QEMU"} "$bin" "$data") || status=1
    printf '%s\n' "$out" | grep -v '^ok ' | sed "s|^|[$(basename "$bin")] |"
    line=$(printf '%s\n' "$out" | tail -n 1)
    p=${line%% passed*}; f=${line#*passed, }; f=${f%% failed*}
    case "$p$f" in *[!0-9]*|'') echo "[$bin] no tally"; status=1; continue ;; esac
    passed=$((passed + p)); failed=$((failed + f))
done
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ] && exit $status || exit 1
