//! Builds the guest agent (crate `cordon-agent`) as a static, stripped release binary and
//! embeds it: the initramfs cordon makes for each guest carries it as `/init`, so a `cordon`
//! binary needs nothing else on disk to start a microVM. The agent is built by a nested cargo
//! in its own target directory (`<target-dir>/guest-agent`), shared by every profile.

use std::env;
use std::fs;
use std::path::PathBuf;
use std::process::Command;

use sha2::{Digest, Sha256};

fn main() {
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let agent_dir = manifest_dir.join("../cordon-agent");
    let out_dir = PathBuf::from(env::var("OUT_DIR").expect("OUT_DIR"));
    let target = env::var("TARGET").expect("TARGET");
    for p in ["src", "Cargo.toml"] {
        println!("cargo:rerun-if-changed={}", agent_dir.join(p).display());
    }
    println!("cargo:rerun-if-env-changed=CORDON_AGENT_PREBUILT");

    let binary = match env::var_os("CORDON_AGENT_PREBUILT") {
        Some(path) => PathBuf::from(path),
        None => {
            // OUT_DIR is <target-dir>/<triple>/<profile>/build/<pkg>-<hash>/out.
            let target_dir = out_dir
                .ancestors()
                .nth(5)
                .map(PathBuf::from)
                .unwrap_or_else(|| out_dir.join("target"));
            let nested = target_dir.join("guest-agent");
            let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".into());
            let mut cmd = Command::new(cargo);
            cmd.current_dir(&agent_dir)
                .args(["build", "--release", "--offline", "-p", "cordon-agent"])
                .args(["--bin", "cordon-agent", "--target", &target])
                .arg("--target-dir")
                .arg(&nested)
                // Static and small, whatever the outer build's flags and wrappers are.
                .env("CARGO_ENCODED_RUSTFLAGS", "-Ctarget-feature=+crt-static")
                .env("CARGO_PROFILE_RELEASE_STRIP", "symbols")
                .env("CARGO_PROFILE_RELEASE_OPT_LEVEL", "s")
                .env("CARGO_PROFILE_RELEASE_PANIC", "abort")
                .env_remove("RUSTC_WORKSPACE_WRAPPER")
                .env_remove("CARGO_TARGET_DIR")
                .env_remove("RUSTFLAGS")
                .env_remove("CARGO_BUILD_RUSTFLAGS");
            let status = cmd.status().expect("running cargo for the guest agent");
            assert!(
                status.success(),
                "building the guest agent (cordon-agent) failed"
            );
            nested.join(&target).join("release/cordon-agent")
        }
    };
    let bytes = fs::read(&binary).unwrap_or_else(|e| panic!("reading {}: {e}", binary.display()));
    fs::write(out_dir.join("cordon-agent"), &bytes).expect("copying the guest agent");
    let digest = Sha256::digest(&bytes);
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    println!("cargo:rustc-env=CORDON_AGENT_SHA256={hex}");
}
