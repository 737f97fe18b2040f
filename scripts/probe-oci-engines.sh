#!/usr/bin/env bash
# The escape probes (`cordon probe`) through Docker: cordon's container and sentry tiers run
# directly, plus one column per Docker runtime (runc and cordon-oci's three tiers), each
# `docker run --rm --network none --runtime R -v DIR:DIR:ro IMAGE DIR/cordon-probe run ...` on
# a private containerd + dockerd (DIR: a copy of the probe below /tmp, where the microvm tier
# can mount it). Docker gives every runtime the same config (its default
# capabilities and seccomp profile), so the columns compare runtimes, not configurations.
# Usage (root): scripts/probe-oci-engines.sh [BIN-DIR] [OUT-PREFIX]
#   BIN-DIR holds cordon, cordon-oci and cordon-probe (default: the release build);
#   writes OUT-PREFIX.json and OUT-PREFIX.md (default /tmp/cordon-probe-oci).
# Exit status: cordon probe's (0: every cordon tier run directly blocked every probe).
# Leaves nothing behind but cordon's microvm cache (one image and snapshot for the test image).
set -euo pipefail
BIN=$(realpath "${1:-target/x86_64-unknown-linux-gnu/release}")
OUT=${2:-/tmp/cordon-probe-oci}
OCI=$BIN/cordon-oci
for b in cordon cordon-oci cordon-probe; do
    [ -x "$BIN/$b" ] || { echo "$0: $BIN/$b missing (cargo build --release)" >&2; exit 125; }
done
W=$(mktemp -d /tmp/cordon-oci-probe.XXXXXX)
NS=cordon-oci-probe
IMAGE=cordon-probe-busybox
# shellcheck source=scripts/lib/private-docker.sh
. "$(dirname "$0")/lib/private-docker.sh"
mkdir "$W/probe"
cp "$BIN/cordon-probe" "$W/probe/"
columns=()
for rt in runc cordon cordon-sentry cordon-microvm; do
    columns+=(--runtime-cmd "docker-$rt=$D run --rm --network none --runtime $rt -v $W/probe:$W/probe:ro $IMAGE")
done
"$BIN/cordon" probe --tier container --tier sentry --probe-bin "$W/probe/cordon-probe" \
    "${columns[@]}" --json "$OUT.json" --markdown "$OUT.md"
