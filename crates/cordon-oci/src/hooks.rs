//! Running the OCI lifecycle hooks: each gets the container's state JSON on stdin and must
//! exit 0 within its timeout.

use std::io::Write;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use oci_spec::runtime::Hook;

/// Runs `hooks` in order; the first failure stops the sequence and is returned.
pub fn run(hooks: &[Hook], state: &serde_json::Value) -> Result<(), String> {
    let input = state.to_string();
    for h in hooks {
        let path = h.path();
        let mut cmd = Command::new(path);
        let args = h.args().clone().unwrap_or_default();
        if let Some((arg0, rest)) = args.split_first() {
            cmd.arg0(arg0).args(rest);
        }
        cmd.env_clear();
        for kv in h.env().iter().flatten() {
            if let Some((k, v)) = kv.split_once('=') {
                cmd.env(k, v);
            }
        }
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("hook {}: {e}", path.display()))?;
        if let Some(mut stdin) = child.stdin.take() {
            let _ = stdin.write_all(input.as_bytes());
        }
        let timeout = h
            .timeout()
            .and_then(|t| u64::try_from(t).ok())
            .filter(|t| *t > 0);
        let deadline = timeout.map(|t| Instant::now() + Duration::from_secs(t));
        let status = loop {
            if let Some(status) = child
                .try_wait()
                .map_err(|e| format!("hook {}: {e}", path.display()))?
            {
                break status;
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "hook {} timed out after {}s",
                    path.display(),
                    timeout.unwrap_or(0)
                ));
            }
            std::thread::sleep(Duration::from_millis(2));
        };
        if !status.success() {
            return Err(format!("hook {} failed: {status}", path.display()));
        }
    }
    Ok(())
}
