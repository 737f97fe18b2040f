//! Seccomp profiles given in a bundle's config.json, compiled with cordon's BPF compiler.

use cordon_container::seccomp_policy::{Action, CmpOp, Cond, MatchRule, Policy};
use oci_spec::runtime::{LinuxSeccomp, LinuxSeccompAction, LinuxSeccompOperator};

include!(concat!(env!("OUT_DIR"), "/syscalls.rs"));

/// The number of a syscall by name, on x86_64.
pub fn syscall_number(name: &str) -> Option<i64> {
    SYSCALLS.iter().find(|(n, _)| *n == name).map(|&(_, nr)| nr)
}

fn action(a: LinuxSeccompAction, errno: Option<u32>) -> Result<Action, String> {
    let errno = u16::try_from(errno.unwrap_or(1 /* EPERM */))
        .map_err(|_| "errnoRet out of range".to_string())?;
    Ok(match a {
        LinuxSeccompAction::ScmpActAllow => Action::Allow,
        LinuxSeccompAction::ScmpActErrno => Action::Errno(errno),
        LinuxSeccompAction::ScmpActKill | LinuxSeccompAction::ScmpActKillThread => {
            Action::KillThread
        }
        LinuxSeccompAction::ScmpActKillProcess => Action::KillProcess,
        LinuxSeccompAction::ScmpActTrap => Action::Trap,
        LinuxSeccompAction::ScmpActLog => Action::Log,
        // No tracer is attached by cordon: a traced syscall fails as unimplemented.
        LinuxSeccompAction::ScmpActTrace => Action::Errno(38 /* ENOSYS */),
        other => return Err(format!("unsupported seccomp action {other:?}")),
    })
}

/// Translates an OCI seccomp profile. Unknown syscall names are skipped (profiles list
/// syscalls of every architecture and kernel version); unsupported actions are errors.
pub fn from_oci(profile: &LinuxSeccomp) -> Result<Policy, String> {
    let default = action(profile.default_action(), profile.default_errno_ret())?;
    let mut matched: Vec<(i64, Vec<MatchRule>)> = Vec::new();
    for rule in profile.syscalls().iter().flatten() {
        let act = action(rule.action(), rule.errno_ret())?;
        let mut conds = Vec::new();
        for arg in rule.args().iter().flatten() {
            let op = match arg.op() {
                LinuxSeccompOperator::ScmpCmpEq => CmpOp::Eq,
                LinuxSeccompOperator::ScmpCmpNe => CmpOp::Ne,
                LinuxSeccompOperator::ScmpCmpLt => CmpOp::Lt,
                LinuxSeccompOperator::ScmpCmpLe => CmpOp::Le,
                LinuxSeccompOperator::ScmpCmpGt => CmpOp::Gt,
                LinuxSeccompOperator::ScmpCmpGe => CmpOp::Ge,
                LinuxSeccompOperator::ScmpCmpMaskedEq => CmpOp::MaskedEq(arg.value()),
            };
            let value = match op {
                CmpOp::MaskedEq(_) => arg.value_two().unwrap_or(0),
                _ => arg.value(),
            };
            let index = u8::try_from(arg.index())
                .ok()
                .filter(|i| *i < 6)
                .ok_or("seccomp argument index out of range")?;
            conds.push(Cond {
                arg: index,
                op,
                value,
            });
        }
        for name in rule.names() {
            let Some(nr) = syscall_number(name) else {
                continue;
            };
            let r = MatchRule {
                conds: conds.clone(),
                action: act,
            };
            match matched.iter_mut().find(|(n, _)| *n == nr) {
                Some((_, rules)) => rules.push(r),
                None => matched.push((nr, vec![r])),
            }
        }
    }
    // Unconditional rules decide everything after them; keep them last so that conditional
    // rules for the same syscall are tried first (libseccomp's behaviour).
    for (_, rules) in &mut matched {
        rules.sort_by_key(|r| r.conds.is_empty());
    }
    Ok(Policy {
        allow: Vec::new(),
        deny: Vec::new(),
        conditional: Vec::new(),
        matched,
        default,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn syscall_table_matches_libc() {
        assert_eq!(syscall_number("read"), Some(libc::SYS_read));
        assert_eq!(syscall_number("openat2"), Some(libc::SYS_openat2));
        assert_eq!(
            syscall_number("io_uring_setup"),
            Some(libc::SYS_io_uring_setup)
        );
        assert_eq!(syscall_number("no_such_call"), None);
        assert!(SYSCALLS.len() > 350);
    }

    #[test]
    fn profile_translation() {
        let json = r#"{
            "defaultAction": "SCMP_ACT_ERRNO",
            "defaultErrnoRet": 38,
            "syscalls": [
                {"names": ["read", "write", "not_a_syscall"], "action": "SCMP_ACT_ALLOW"},
                {"names": ["personality"], "action": "SCMP_ACT_ALLOW", "args": [{"index": 0, "value": 8, "op": "SCMP_CMP_EQ"}]},
                {"names": ["clone"], "action": "SCMP_ACT_ALLOW", "args": [{"index": 0, "value": 2114060288, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}]}
            ]
        }"#;
        let profile: LinuxSeccomp = serde_json::from_str(json).unwrap();
        let policy = from_oci(&profile).unwrap();
        assert_eq!(policy.default, Action::Errno(38));
        assert_eq!(policy.matched.len(), 4);
        let clone = policy
            .matched
            .iter()
            .find(|(n, _)| *n == libc::SYS_clone)
            .unwrap();
        assert_eq!(clone.1[0].conds[0].op, CmpOp::MaskedEq(2_114_060_288));
        assert_eq!(clone.1[0].conds[0].value, 0);
        assert!(!policy.compile().is_empty());
    }
}
