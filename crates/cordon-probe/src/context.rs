//! What every probe may consult: the harness's bait (secret path, host port), the descriptors
//! the probe process inherited, and how confined the probe process is.

use std::fs;
use std::os::fd::RawFd;
use std::path::PathBuf;

use crate::sys;

/// Capabilities an unconfined root holds on any sane host; used to tell "the host itself
/// refuses this even to root" from "something confines this process".
const ROOT_CAPS: &[u32] = &[
    1,  // CAP_DAC_OVERRIDE
    2,  // CAP_DAC_READ_SEARCH
    12, // CAP_NET_ADMIN
    13, // CAP_NET_RAW
    16, // CAP_SYS_MODULE
    17, // CAP_SYS_RAWIO
    19, // CAP_SYS_PTRACE
    21, // CAP_SYS_ADMIN
    22, // CAP_SYS_BOOT
    25, // CAP_SYS_TIME
    27, // CAP_MKNOD
];

/// The probe process's confinement as the kernel reports it in /proc/self/status.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Confinement {
    pub cap_eff: Option<u64>,
    pub cap_prm: Option<u64>,
    pub cap_bnd: Option<u64>,
    pub cap_amb: Option<u64>,
    pub no_new_privs: Option<u32>,
    /// 0 none, 1 strict, 2 filter.
    pub seccomp: Option<u32>,
    /// uid_map is the initial user namespace's identity map.
    pub initial_userns: bool,
}

impl Confinement {
    pub fn read() -> Confinement {
        let status = fs::read_to_string("/proc/self/status").unwrap_or_default();
        let uid_map = fs::read_to_string("/proc/self/uid_map").unwrap_or_default();
        Confinement::parse(&status, &uid_map)
    }

    pub fn parse(status: &str, uid_map: &str) -> Confinement {
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
                .map(str::trim)
        };
        let hex = |name: &str| field(name).and_then(|v| u64::from_str_radix(v, 16).ok());
        let dec = |name: &str| field(name).and_then(|v| v.parse().ok());
        let map: Vec<&str> = uid_map.split_whitespace().collect();
        Confinement {
            cap_eff: hex("CapEff"),
            cap_prm: hex("CapPrm"),
            cap_bnd: hex("CapBnd"),
            cap_amb: hex("CapAmb"),
            no_new_privs: dec("NoNewPrivs"),
            seccomp: dec("Seccomp"),
            initial_userns: map == ["0", "0", "4294967295"],
        }
    }

    /// No seccomp filter (ENOSYS and EAFNOSUPPORT then come from the kernel itself).
    pub fn no_seccomp(&self) -> bool {
        self.seccomp == Some(0)
    }

    /// Root of the initial user namespace with the powerful capabilities and no seccomp
    /// filter: whatever this process is refused, the host refuses to everyone.
    pub fn unconfined(&self) -> bool {
        let caps = self.cap_eff.unwrap_or(0);
        self.no_seccomp()
            && self.initial_userns
            && ROOT_CAPS.iter().all(|&c| caps & (1u64 << c) != 0)
    }
}

/// Everything a probe may consult.
#[derive(Debug, Clone, Default)]
pub struct Context {
    /// A file the harness planted on the host; a sandbox must not be able to read it.
    pub secret: Option<PathBuf>,
    /// A TCP port the harness listens on at the host's 127.0.0.1 (its abstract UNIX socket is
    /// named after it, see [`abstract_socket_name`]).
    pub host_port: Option<u16>,
    /// Descriptors beyond stdio that were open when the probe binary started.
    pub inherited_fds: Vec<RawFd>,
    pub confinement: Confinement,
}

/// The abstract UNIX socket name the harness listens on, derived from its TCP port so that
/// `--host-port` names both.
pub fn abstract_socket_name(port: u16) -> String {
    format!("cordon-probe-{port}")
}

/// The descriptors >= 3 open in this process right now. Call it first thing in `main`: it
/// opens nothing itself (it asks `fcntl` about each number up to the descriptor limit).
pub fn inherited_fds() -> Vec<RawFd> {
    let limit = RawFd::try_from(sys::max_fds().min(1 << 16)).unwrap_or(1024);
    (3..limit).filter(|&fd| sys::fd_is_open(fd)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOST: &str = "Name:\tx\nCapPrm:\t000001fffeffffff\nCapEff:\t000001fffeffffff\n\
        CapBnd:\t000001fffeffffff\nCapAmb:\t0000000000000000\nNoNewPrivs:\t0\nSeccomp:\t0\n\
        Seccomp_filters:\t0\n";
    const SANDBOX: &str = "CapEff:\t0000000000000000\nCapBnd:\t0000000000000000\n\
        NoNewPrivs:\t1\nSeccomp:\t2\n";

    #[test]
    fn host_root_is_unconfined() {
        let c = Confinement::parse(HOST, "         0          0 4294967295\n");
        assert_eq!(c.seccomp, Some(0));
        assert_eq!(c.cap_eff, Some(0x1fffeffffff));
        assert!(c.unconfined());
    }

    #[test]
    fn sandbox_and_userns_are_confined() {
        let c = Confinement::parse(SANDBOX, "0 0 4294967295");
        assert_eq!(
            (c.seccomp, c.no_new_privs, c.cap_bnd),
            (Some(2), Some(1), Some(0))
        );
        assert!(!c.unconfined());
        // Full capabilities inside a user namespace are not the host's.
        let c = Confinement::parse(HOST, "0 1000 1");
        assert!(!c.unconfined());
    }

    #[test]
    fn missing_status_is_confined() {
        assert!(!Confinement::parse("", "").unconfined());
    }
}
