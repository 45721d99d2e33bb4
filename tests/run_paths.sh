#!/bin/sh
# Runs the test suite once per kernel path (each binary built by the Makefile with that path's flags)
# and ends with the total "N passed, N failed". Usage:
#   [RUN_WITH='qemu-aarch64'] [RUN_JOBS=n] run_paths.sh DATA_DIR BINARY[' TEST...']...
# RUN_WITH is a command (words split at spaces) that runs each binary: qemu-user, valgrind.
# An argument may name tests after the binary, separated by spaces, as the binary takes them (names to
# run, -names to skip): "build/test_x -long_sequence". RUN_JOBS binaries run at a time (default 1); their
# reports (the tests that did not pass, the binary's tally, then what it wrote to stderr) still come in
# the order given, each when its binary is done. With more than one, OpenMP threads wait passively (unless
# OMP_WAIT_POLICY says otherwise): a team spinning on a core another binary needs slows both many times.
data=$1; shift
jobs=${RUN_JOBS:-1}
tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT
trap 'exit 130' INT TERM
[ "$jobs" -gt 1 ] && export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-passive}"

# run_one I BINARY [TEST...]: the output in $tmp/I.out and I.err, then the exit status in $tmp/I.rc
run_one() {
    i=$1; shift; bin=$1; shift
    $RUN_WITH "$bin" "$data" "$@" > "$tmp/$i.out" 2> "$tmp/$i.err"
    echo $? > "$tmp/$i.tmp" && mv "$tmp/$i.tmp" "$tmp/$i.rc"
}
# a worker: runs each binary no other worker has claimed (mkdir is atomic)
worker() {
    n=0
    for spec in "$@"; do
        n=$((n + 1))
        mkdir "$tmp/claim.$n" 2>/dev/null || continue
        set -f; run_one "$n" $spec; set +f
    done
}
w=0; pids=
while [ $w -lt "$jobs" ]; do worker "$@" & pids="$pids $!"; w=$((w + 1)); done
# is a worker still running?
working() { for pid in $pids; do kill -0 "$pid" 2>/dev/null && return 0; done; return 1; }

passed=0; failed=0; status=0; n=0
for spec in "$@"; do
    n=$((n + 1)); bin=${spec%% *}
    while [ ! -e "$tmp/$n.rc" ] && working; do sleep 1; done
    [ -e "$tmp/$n.rc" ] || { echo "[$bin] did not run"; status=1; continue; }
    [ "$(cat "$tmp/$n.rc")" -eq 0 ] || status=1
    grep -v '^ok ' "$tmp/$n.out" | sed "s|^|[$(basename "$bin")] |"
    cat "$tmp/$n.err" >&2
    line=$(tail -n 1 "$tmp/$n.out")
    p=${line%% passed*}; f=${line#*passed, }; f=${f%% failed*}
    case "$p$f" in *[!0-9]*|'') echo "[$bin] no tally"; status=1; continue ;; esac
    passed=$((passed + p)); failed=$((failed + f))
done
wait
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ] && exit $status || exit 1
