#!/usr/bin/env bash
# `docker run --rm IMAGE true` through each cordon tier and through runc, on a private
# containerd + dockerd (as crates/cordon-oci/tests/engines.rs starts them), with hyperfine.
# Usage (root): scripts/bench-oci-engines.sh [PATH/TO/cordon-oci] [RUNS]
# Leaves nothing behind but cordon's microvm cache (one image and snapshot for the test image).
set -euo pipefail
OCI=$(realpath "${1:-target/x86_64-unknown-linux-gnu/release/cordon-oci}")
RUNS=${2:-10}
W=$(mktemp -d /tmp/cordon-oci-bench.XXXXXX)
NS=cordon-oci-bench
IMAGE=cordon-bench-busybox
# shellcheck source=scripts/lib/private-docker.sh
. "$(dirname "$0")/lib/private-docker.sh"
cmds=()
for rt in runc cordon cordon-sentry cordon-microvm; do
    cmds+=("$D run --rm --network none --runtime $rt cordon-bench-busybox true")
done
hyperfine -N -w 2 -r "$RUNS" --export-json "${BENCH_JSON:-/dev/null}" "${cmds[@]}"
