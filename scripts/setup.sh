#!/usr/bin/env bash
# Installs what cordon's build, tests and benchmarks need on a fresh Debian 12 machine.
# Idempotent: packages already present are left alone. Run as root.
set -euo pipefail

# Runtime + test needs: python3 (the README's example workload), busybox-static (small static
# rootfs for tests), and the peers that `cordon bench` measures against (runsc is gVisor;
# cordon bench runs it with --platform=ptrace, as its kvm platform hangs on kvm_pvm hosts).
PKGS=(python3 busybox-static runc crun bubblewrap hyperfine iproute2 procps runsc
      containerd docker.io linux-libc-dev util-linux tar)
# The microVM tier: qemu (the VMM), e2fsprogs (mke2fs -d and debugfs build its root images);
# `cordon microvm setup` then fetches the guest kernel and builds the images.
PKGS+=(qemu-system-x86 e2fsprogs)

missing=()
for p in "${PKGS[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "setup: installing ${missing[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if ! command -v cargo >/dev/null 2>&1; then
    echo "setup: cargo not found; install the Rust toolchain (rustup) first" >&2
    exit 1
fi
echo "setup: ok" >&2
