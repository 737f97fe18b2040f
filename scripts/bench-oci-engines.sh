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
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do while kill -0 "$p" 2>/dev/null; do sleep 0.1; done; done
    grep -o " $W[^ ]*" /proc/self/mountinfo | sort -r | xargs -r -n1 umount -l 2>/dev/null || true
    rm -rf "$W" "/run/containerd/runc/$NS-docker"
    for c in /sys/fs/cgroup/*/"$NS-docker"; do rmdir "$c" 2>/dev/null || true; done
}
trap cleanup EXIT

mkdir -p "$W/rootfs/bin"
cp /bin/busybox "$W/rootfs/bin/"
ln -s busybox "$W/rootfs/bin/true"
tar -C "$W/rootfs" -cf "$W/layer.tar" .
cat > "$W/containerd.toml" <<EOF
version = 2
root = "$W/ctd-root"
state = "$W/ctd-state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "$W/containerd.sock"
[ttrpc]
  address = "$W/containerd.sock.ttrpc"
EOF
containerd --config "$W/containerd.toml" </dev/null >"$W/containerd.log" 2>&1 &
pids+=($!)
cat > "$W/daemon.json" <<EOF
{"runtimes": {
  "cordon": {"path": "$OCI"},
  "cordon-sentry": {"path": "$OCI", "runtimeArgs": ["--tier=sentry"]},
  "cordon-microvm": {"path": "$OCI", "runtimeArgs": ["--tier=microvm"]}}}
EOF
until [ -S "$W/containerd.sock" ]; do sleep 0.1; done
dockerd --config-file "$W/daemon.json" --data-root "$W/docker-data" --exec-root "$W/docker-exec" \
    --pidfile "$W/dockerd.pid" -H "unix://$W/docker.sock" --containerd "$W/containerd.sock" \
    --containerd-namespace "$NS-docker" --cgroup-parent "$NS-docker" \
    --iptables=false --ip6tables=false --bridge=none </dev/null >"$W/dockerd.log" 2>&1 &
pids+=($!)
D="/usr/bin/docker -H unix://$W/docker.sock"
until $D version >/dev/null 2>&1; do sleep 0.2; done
$D import "$W/layer.tar" cordon-bench-busybox >/dev/null
cmds=()
for rt in runc cordon cordon-sentry cordon-microvm; do
    cmds+=("$D run --rm --network none --runtime $rt cordon-bench-busybox true")
done
hyperfine -N -w 2 -r "$RUNS" --export-json "${BENCH_JSON:-/dev/null}" "${cmds[@]}"
