//! The process's own privilege posture, as the kernel reports it.

use crate::context::Context;
use crate::verdict::Outcome;

/// CapEff == 0, CapBnd == 0, NoNewPrivs == 1, Seccomp == 2 (filter) in /proc/self/status.
pub(crate) fn posture(ctx: &Context) -> Outcome {
    let c = &ctx.confinement;
    let (Some(eff), Some(bnd), Some(nnp), Some(seccomp)) =
        (c.cap_eff, c.cap_bnd, c.no_new_privs, c.seccomp)
    else {
        return Outcome::error(
            "/proc/self/status is unreadable or lacks the Cap*/NoNewPrivs/Seccomp fields",
        );
    };
    let mut wrong = Vec::new();
    if eff != 0 {
        wrong.push(format!("CapEff={eff:016x}"));
    }
    if bnd != 0 {
        wrong.push(format!("CapBnd={bnd:016x}"));
    }
    if c.cap_amb.is_some_and(|a| a != 0) {
        wrong.push(format!("CapAmb={:016x}", c.cap_amb.unwrap_or(0)));
    }
    if nnp != 1 {
        wrong.push(format!("NoNewPrivs={nnp}"));
    }
    if seccomp != 2 {
        wrong.push(format!("Seccomp={seccomp}"));
    }
    if wrong.is_empty() {
        Outcome::blocked("CapEff=0 CapBnd=0 NoNewPrivs=1 Seccomp=2 (filter)")
    } else {
        Outcome::escaped(format!("privileged posture: {}", wrong.join(" ")))
    }
}
