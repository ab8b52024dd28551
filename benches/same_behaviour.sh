#!/usr/bin/env bash
# Compares the solver of two builds line by line: BASE (a commit, default HEAD) and
# the working tree. Both run examples/fingerprints.rs (this tree's copy, with its
# tests/common, which must build against BASE's public API) over the
# reference cases, the random problems of every constraint kind, several starts and
# the regression seeds of tests/solver.rs; every line (status, iterations,
# evaluations, the bits of the utility, KKT residual, allocation and multipliers) must
# be the same. Prints a table of outcomes per set, both builds side by side.
#
#     bash benches/same_behaviour.sh [BASE] [SEEDS]      # SEEDS: 0..SEEDS (default 20000)
set -euo pipefail
cd "$(dirname "$0")/.."
base="${1:-HEAD}"
seeds="${2:-20000}"
rev=$(git rev-parse --short "$base")
work=$(mktemp -d /tmp/same-behaviour.XXXX)
tree="$work/base"
git worktree add --detach -q "$tree" "$rev"
trap 'git worktree remove --force "$tree"; rm -rf "$work"' EXIT
cp examples/fingerprints.rs "$tree/examples/fingerprints.rs"
cp tests/common/mod.rs "$tree/tests/common/mod.rs"
# The base builds in a target folder of its own, kept between runs.
base_target="$(pwd)/target/same-behaviour-base"
(cd "$tree" && CARGO_TARGET_DIR="$base_target" cargo build -q --release --example fingerprints)
cargo build -q --release --example fingerprints
old="$base_target/release/examples/fingerprints"
new="target/release/examples/fingerprints"
regressions="9852 35696 41449 43993 14755 38841 48141 75708 90750 105740 148272 159152"
sets=(cases none squares squares-bfgs roots-ge roots-eq roots-le starts regressions)
run_set() { # BINARY SET
    case "$2" in
        cases) "$1" cases ;;
        starts) "$1" starts 0 $((seeds / 20)) ;;
        regressions) for s in $regressions; do "$1" none "$s" $((s + 1)); done ;;
        *) "$1" "$2" 0 "$seeds" ;;
    esac
}
started=$(date +%s)
for set in "${sets[@]}"; do
    run_set "$(realpath "$old")" "$set" > "$work/old.$set" &
    run_set "$(realpath "$new")" "$set" > "$work/new.$set"
    wait
done
printf '%-13s %7s %9s  %-44s %-44s\n' set solves identical "base $rev: statuses, iterations, evaluations" "working tree"
summary() {
    awk '{s[$(NF-12)]++; it+=$(NF-10); ev+=$(NF-8)} END {for (k in s) printf "%s %d, ", k, s[k]; printf "it %d ev %d", it, ev}' "$1"
}
differ=0
for set in "${sets[@]}"; do
    n=$(wc -l < "$work/new.$set")
    same=$(paste -d'\n' "$work/old.$set" "$work/new.$set" | paste - - | awk -F'\t' '$1 == $2' | wc -l)
    [ "$same" -eq "$n" ] && [ "$(wc -l < "$work/old.$set")" -eq "$n" ] || differ=1
    printf '%-13s %7d %9d  %-44s %-44s\n' "$set" "$n" "$same" "$(summary "$work/old.$set")" "$(summary "$work/new.$set")"
done
echo "($(($(date +%s) - started)) s)"
if [ "$differ" -ne 0 ]; then
    for set in "${sets[@]}"; do
        diff "$work/old.$set" "$work/new.$set" | head -20 || true
    done
    echo "DIFFERENT"
    exit 1
fi
echo "IDENTICAL"
