#!/bin/sh
# make check-mpi: examples/mpi_ring_attention.c with 2 and 4 ranks, causal and not, each ending with its
# "ok:" line (ring attention within 1e-6 of single-process attn_sdpa), then the bad inputs, each of which
# must exit non-zero with its message and without hanging (every run is under a time limit):
#   - N not divisible by 2P: every rank says so;
#   - ranks started with different sizes (an MPMD launch): the allreduce of the sizes catches it;
#   - a rank failing at step 1 (--fail-rank): MPI_Abort ends all ranks.
# Usage: tests/mpi/check_mpi.sh BINARY (MPIRUN overrides the launcher, LIMIT the seconds per run).
set -u
bin=$1
MPIRUN=${MPIRUN:-mpirun --allow-run-as-root --oversubscribe}
LIMIT=${LIMIT:-120}
out=${TMPDIR:-/tmp}/attn-check-mpi.$$
failed=0

fail() { echo "check-mpi: FAILED: $*"; sed 's/^/    /' "$out"; failed=1; }

# a good run: exit 0 and the ok: line
for np in 2 4; do
    for causal in --causal --no-causal; do
        timeout "$LIMIT" $MPIRUN -np $np "$bin" --n=2048 --heads=4 --d=64 $causal > "$out" 2>&1
        rc=$?
        if [ $rc -eq 0 ] && grep -q '^ok:' "$out"; then
            echo "check-mpi: $np ranks $causal: $(grep '^ok:' "$out" | sed 's/ (not all.*//')"
        else
            fail "$np ranks $causal (exit $rc)"
        fi
    done
done

# a bad run: exit non-zero (not the time limit's 124) and the expected message, $3 times or more
bad() {
    name=$1 pattern=$2 count=$3
    shift 3
    timeout "$LIMIT" "$@" > "$out" 2>&1
    rc=$?
    n=$(grep -c "$pattern" "$out")
    if [ $rc -eq 0 ] || [ $rc -eq 124 ] || [ "$n" -lt "$count" ]; then
        fail "$name (exit $rc, $n of $count messages \"$pattern\")"
    else
        echo "check-mpi: $name: rejected (exit $rc): $(grep -m 1 "$pattern" "$out")"
    fi
}
bad "N not divisible by 2P" "not divisible" 4 $MPIRUN -np 4 "$bin" --n=1004
bad "sizes differ across ranks" "sizes differ" 2 $MPIRUN -np 1 "$bin" --n=2048 : -np 1 "$bin" --n=1024
bad "a rank fails" "simulated failure" 1 $MPIRUN -np 4 "$bin" --n=2048 --fail-rank=2

rm -f "$out"
if [ $failed -ne 0 ]; then echo "check-mpi: FAILED"; exit 1; fi
echo "check-mpi: ok"
