//! Host data: a secret file the harness planted on the host, read directly and through the
//! root directory of PID 1 (or of an ancestor) in /proc.

use std::fs;
use std::path::Path;

use super::{ancestors, ename, refused};
use crate::context::Context;
use crate::verdict::Outcome;

fn read_secret(path: &Path, how: &str) -> Result<Outcome, std::io::Error> {
    let data = fs::read(path)?;
    Ok(Outcome::escaped(format!(
        "read {} bytes of the host's secret {how}",
        data.len()
    )))
}

/// Reads the planted secret at its host path.
pub(crate) fn secret_direct(ctx: &Context) -> Outcome {
    let Some(secret) = &ctx.secret else {
        return Outcome::error("needs --secret (a file the harness planted on the host)");
    };
    match read_secret(secret, &format!("at {}", secret.display())) {
        Ok(o) => o,
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Outcome::blocked(format!(
            "{}: ENOENT (the host's file is not in the sandbox's view)",
            secret.display()
        )),
        Err(e) => refused(ctx, &format!("read({})", secret.display()), &e),
    }
}

/// Reads the planted secret through /proc/<pid>/root for PID 1, then for each ancestor: in a
/// sandbox that shares the host's PID namespace those are host processes whose root is the
/// host's.
pub(crate) fn secret_proc_root(ctx: &Context) -> Outcome {
    let Some(secret) = &ctx.secret else {
        return Outcome::error("needs --secret (a file the harness planted on the host)");
    };
    let rel = secret.strip_prefix("/").unwrap_or(secret);
    let mut pids = vec![1];
    pids.extend(ancestors().into_iter().filter(|&p| p != 1));
    let mut notes = Vec::new();
    let mut first_err = None;
    for pid in pids {
        let via = Path::new("/proc")
            .join(pid.to_string())
            .join("root")
            .join(rel);
        match read_secret(&via, &format!("via {}", via.display())) {
            Ok(o) => {
                let before = if notes.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", notes.join("; "))
                };
                return Outcome::new(o.verdict, format!("{}{before}", o.detail));
            }
            Err(e) => {
                notes.push(format!("/proc/{pid}/root: {}", ename(&e)));
                first_err.get_or_insert((pid, e));
            }
        }
    }
    match first_err {
        Some((pid, e)) if e.raw_os_error() != Some(libc::ENOENT) => {
            let o = refused(ctx, &format!("read via /proc/{pid}/root"), &e);
            Outcome::new(o.verdict, notes.join("; "))
        }
        _ => Outcome::blocked(notes.join("; ")),
    }
}
