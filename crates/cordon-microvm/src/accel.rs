//! Choosing the accelerator: KVM only where it can really run a guest, TCG everywhere else.
//!
//! Some hosts expose a /dev/kvm that cannot run a stock kernel: `kvm_pvm` (KVM in a VM without
//! nested hardware virtualisation) creates VMs but emulates instructions it should not, so a
//! real guest dies minutes later ("KVM internal error"). Such a host is recognised at once
//! (the module is loaded, or the CPU has neither `vmx` nor `svm`) and gets TCG. Where KVM
//! looks real, the first boot proves it: a guest that fails to become ready under KVM marks KVM
//! unusable in the cache and is booted again with TCG.

use std::path::Path;

use crate::vmm::Accel;

/// The accelerator to use and, when it is not KVM, a one-line reason.
pub fn choose(kvm_verdict_file: &Path) -> (Accel, Option<String>) {
    match std::env::var("CORDON_MICROVM_ACCEL").as_deref() {
        Ok("tcg") => {
            return (
                Accel::Tcg,
                Some("TCG forced by CORDON_MICROVM_ACCEL".into()),
            )
        }
        Ok("kvm") => return (Accel::Kvm, None),
        _ => {}
    }
    if Path::new("/sys/module/kvm_pvm").exists() {
        return (
            Accel::Tcg,
            Some("/dev/kvm is kvm_pvm (no hardware virtualisation): using TCG emulation".into()),
        );
    }
    let flags = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let hw = flags
        .lines()
        .filter(|l| l.starts_with("flags"))
        .any(|l| l.split_whitespace().any(|f| f == "vmx" || f == "svm"));
    if !hw {
        return (
            Accel::Tcg,
            Some("the CPU has no vmx/svm: using TCG emulation".into()),
        );
    }
    if std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_err()
    {
        return (
            Accel::Tcg,
            Some("/dev/kvm cannot be opened: using TCG emulation".into()),
        );
    }
    if kvm_verdict_file.exists() {
        return (
            Accel::Tcg,
            Some(format!(
                "KVM failed to boot a guest earlier ({}): using TCG emulation",
                kvm_verdict_file.display()
            )),
        );
    }
    (Accel::Kvm, None)
}
