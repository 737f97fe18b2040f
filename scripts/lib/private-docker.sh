# Sourced by scripts that drive Docker through cordon: starts a private containerd and dockerd
# (as crates/cordon-oci/tests/engines.rs does) whose runtimes are runc and cordon-oci's three
# tiers, imports a busybox image named $IMAGE, and removes everything on exit.
# Needs: OCI (path of cordon-oci), W (an empty work directory), NS (a namespace name), IMAGE.
# Sets: D (the docker command line for the private daemon).
pids=()
private_docker_cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do while kill -0 "$p" 2>/dev/null; do sleep 0.1; done; done
    grep -o " $W[^ ]*" /proc/self/mountinfo | sort -r | xargs -r -n1 umount -l 2>/dev/null || true
    rm -rf "$W" "/run/containerd/runc/$NS-docker"
    for c in /sys/fs/cgroup/*/"$NS-docker"; do rmdir "$c" 2>/dev/null || true; done
}
trap private_docker_cleanup EXIT

mkdir -p "$W/rootfs/bin" "$W/rootfs/tmp"
cp /bin/busybox "$W/rootfs/bin/"
for tool in true sh; do ln -s busybox "$W/rootfs/bin/$tool"; done
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
$D import "$W/layer.tar" "$IMAGE" >/dev/null
