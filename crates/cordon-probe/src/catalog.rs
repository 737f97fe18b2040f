//! The probe set as data: every probe's name, class, one-line description and function. The
//! probe binary runs from this table; the harness and the docs enumerate it.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::context::Context;
use crate::probes::{
    data, devices, kernel_entry, kernel_fs, namespaces, network, posture, process, resources,
};
use crate::verdict::Outcome;

/// What a probe attacks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Class {
    /// The process's own privileges.
    Posture,
    /// Host-global kernel interfaces exposed as files (/proc, /sys).
    KernelFs,
    /// Privileged syscalls and kernel subsystems.
    KernelEntry,
    /// Namespaces, mounts, cgroupfs, device nodes.
    Namespace,
    /// Raw host devices.
    Device,
    /// Host processes, the runtime's binary, leaked descriptors.
    Process,
    /// Sockets and the network beyond the sandbox.
    Network,
    /// Host files.
    Data,
    /// Processes, memory and disk.
    Resource,
}

impl Class {
    pub fn name(self) -> &'static str {
        match self {
            Class::Posture => "posture",
            Class::KernelFs => "kernel-fs",
            Class::KernelEntry => "kernel-entry",
            Class::Namespace => "namespace",
            Class::Device => "device",
            Class::Process => "process",
            Class::Network => "network",
            Class::Data => "data",
            Class::Resource => "resource",
        }
    }
}

impl fmt::Display for Class {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.name())
    }
}

/// What an attack reaches for, which decides what its escape means in a sandbox that has a
/// kernel of its own (a virtual machine).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Reach {
    /// The kernel the probe runs on and what it controls: its knobs, entry points, devices,
    /// processes and resources. In a virtual machine that is the guest's kernel.
    Kernel,
    /// The host itself, as named by the harness's bait (a file, listeners, a descriptor) or
    /// its network, whichever kernel the probe runs on.
    Host,
}

impl Reach {
    pub fn name(self) -> &'static str {
        match self {
            Reach::Kernel => "kernel",
            Reach::Host => "host",
        }
    }
}

/// One attack.
#[derive(Debug, Clone, Copy)]
pub struct Probe {
    pub name: &'static str,
    pub class: Class,
    pub reach: Reach,
    pub description: &'static str,
    /// The attack. Crate-private: probes fork, so only the runner (in a single-threaded
    /// process) may call them.
    pub(crate) run: fn(&Context) -> Outcome,
}

impl Probe {
    /// How long the runner lets the probe take before killing it (an ERROR).
    pub fn timeout(&self) -> Duration {
        match self.class {
            Class::Resource => Duration::from_secs(180),
            _ => Duration::from_secs(20),
        }
    }
}

const fn probe(
    name: &'static str,
    class: Class,
    reach: Reach,
    description: &'static str,
    run: fn(&Context) -> Outcome,
) -> Probe {
    Probe {
        name,
        class,
        reach,
        description,
        run,
    }
}

use Class::*;
use Reach::{Host, Kernel};

/// Every probe, in the order `cordon-probe run` runs them (the resource bombs last).
#[rustfmt::skip]
pub static PROBES: &[Probe] = &[
    probe("posture", Posture, Kernel, "CapEff and CapBnd are 0, NoNewPrivs is 1, Seccomp is 2 (filter)", posture::posture),
    probe("sysrq-trigger", KernelFs, Kernel, "open /proc/sysrq-trigger for writing (never written)", kernel_fs::sysrq_trigger),
    probe("kcore", KernelFs, Kernel, "read the ELF header of /proc/kcore (host kernel memory)", kernel_fs::kcore),
    probe("core-pattern", KernelFs, Kernel, "open /proc/sys/kernel/core_pattern for writing (never written)", kernel_fs::core_pattern),
    probe("proc-sys-write", KernelFs, Kernel, "open global /proc/sys knobs (modprobe, poweroff_cmd, drop_caches, ...) for writing", kernel_fs::proc_sys_write),
    probe("sys-firmware", KernelFs, Kernel, "list /sys/firmware and read a file in it (ACPI tables, memory map)", kernel_fs::sys_firmware),
    probe("kallsyms", KernelFs, Kernel, "read kernel addresses from /proc/kallsyms (defeats KASLR)", kernel_fs::kallsyms),
    probe("kernel-log", KernelFs, Kernel, "read the host kernel log (syslog READ_ALL, /dev/kmsg)", kernel_fs::kernel_log),
    probe("module-load", KernelEntry, Kernel, "init_module / finit_module with images that are not modules", kernel_entry::module_load),
    probe("kexec-load", KernelEntry, Kernel, "kexec_load with a segment count rejected after the permission check", kernel_entry::kexec_load),
    probe("bpf", KernelEntry, Kernel, "bpf(BPF_MAP_CREATE) of a one-entry array map", kernel_entry::bpf),
    probe("perf-event-open", KernelEntry, Kernel, "perf_event_open of a software counter on itself", kernel_entry::perf_event_open),
    probe("userfaultfd", KernelEntry, Kernel, "userfaultfd() (the race-widening primitive of kernel exploits)", kernel_entry::userfaultfd),
    probe("keyctl", KernelEntry, Kernel, "add_key/keyctl on the kernel keyrings (not namespaced)", kernel_entry::keyctl),
    probe("io-uring", KernelEntry, Kernel, "io_uring_setup (operations that bypass seccomp)", kernel_entry::io_uring),
    probe("open-by-handle", KernelEntry, Kernel, "shocker: open_by_handle_at of the host filesystem's root from a forged handle", kernel_entry::open_by_handle),
    probe("clock-settime", KernelEntry, Kernel, "clock_settime(CLOCK_REALTIME) to the current time (the clock is not namespaced)", kernel_entry::clock_settime),
    probe("mount-tmpfs", Namespace, Kernel, "mount a tmpfs in the current mount namespace", namespaces::mount_tmpfs),
    probe("userns-mount", Namespace, Kernel, "unshare(CLONE_NEWUSER), then a mount namespace and a mount in it", namespaces::userns_mount),
    probe("unshare", Namespace, Kernel, "unshare each of the mnt, uts, ipc, net, pid, cgroup, time namespaces", namespaces::unshare_ns),
    probe("setns", Namespace, Kernel, "setns into /proc/1/ns/* (or an ancestor's, or its own)", namespaces::setns),
    probe("cgroup-release-agent", Namespace, Kernel, "open a cgroup v1 release_agent for writing; mount a cgroup v1 hierarchy", namespaces::cgroup_release_agent),
    probe("mknod-block", Namespace, Kernel, "mknod a block device node for a whole disk and open it", namespaces::mknod_block),
    probe("dev-disk", Device, Kernel, "open a whole disk (/dev/vda, /dev/sda, ...) for reading", devices::dev_disk),
    probe("dev-kvm", Device, Kernel, "open /dev/kvm and ask its API version", devices::dev_kvm),
    probe("dev-mem", Device, Kernel, "open /dev/mem and /dev/port for reading", devices::dev_mem),
    probe("host-pid-ns", Process, Kernel, "see processes outside its own line (kernel threads, host daemons)", process::host_pid_ns),
    probe("ptrace", Process, Kernel, "PTRACE_SEIZE / PTRACE_ATTACH of a forked child", process::ptrace),
    probe("proc1-exe", Process, Kernel, "readlink /proc/1/exe and open it for writing (never written)", process::proc1_exe),
    probe("foreign-exe", Process, Kernel, "CVE-2019-5736: O_PATH handle on another process's binary, re-opened for writing", process::foreign_exe),
    probe("leaked-fds", Process, Host, "CVE-2024-21626: descriptors inherited from the host, cwd outside the root", process::leaked_fds),
    probe("af-packet", Network, Kernel, "socket(AF_PACKET, SOCK_RAW)", network::af_packet),
    probe("raw-socket", Network, Kernel, "socket(AF_INET, SOCK_RAW)", network::raw_socket),
    probe("af-alg", Network, Kernel, "socket(AF_ALG) (kernel crypto API)", network::af_alg),
    probe("af-vsock", Network, Kernel, "socket(AF_VSOCK) (the hypervisor channel)", network::af_vsock),
    probe("host-loopback", Network, Host, "TCP connect to the harness's listener on the host's 127.0.0.1", network::host_loopback),
    probe("host-abstract-unix", Network, Host, "connect to the harness's abstract UNIX socket on the host", network::host_abstract_unix),
    probe("metadata-service", Network, Host, "TCP connect to 169.254.169.254:80 (1 s timeout, nothing sent)", network::metadata),
    probe("secret-direct", Data, Host, "read the secret file the harness planted on the host", data::secret_direct),
    probe("secret-proc-root", Data, Host, "read the planted secret via /proc/1/root (or an ancestor's root)", data::secret_proc_root),
    probe("sched-fifo", Resource, Kernel, "switch to the SCHED_FIFO real-time policy (starves the host's CPU)", resources::sched_fifo),
    probe("fork-bomb", Resource, Kernel, "create up to 5000 sleeping processes, then kill them", resources::fork_bomb),
    probe("memory-bomb", Resource, Kernel, "allocate and touch up to 4 GiB in a child", resources::memory_bomb),
    probe("disk-fill", Resource, Kernel, "write up to 2 GiB to /tmp, then remove it", resources::disk_fill),
];

/// The probe called `name`.
pub fn find(name: &str) -> Option<&'static Probe> {
    PROBES.iter().find(|p| p.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_kebab_case() {
        for (i, p) in PROBES.iter().enumerate() {
            assert!(
                p.name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'),
                "{}",
                p.name
            );
            assert!(
                PROBES[i + 1..].iter().all(|q| q.name != p.name),
                "duplicate probe {}",
                p.name
            );
            assert!(!p.description.is_empty());
        }
        assert_eq!(find("kcore").map(|p| p.class), Some(Class::KernelFs));
    }

    #[test]
    fn bombs_run_last() {
        let first_bomb = PROBES
            .iter()
            .position(|p| p.class == Class::Resource)
            .unwrap();
        assert!(PROBES[first_bomb..]
            .iter()
            .all(|p| p.class == Class::Resource));
    }
}
