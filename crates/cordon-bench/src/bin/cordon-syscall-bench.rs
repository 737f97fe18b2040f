//! `cordon-syscall-bench`: the workload `cordon bench` runs inside every sandbox and natively.
//!
//! It is linked statically (the workspace's target config), so it runs in any root filesystem.
//! Each mode prints one JSON object on stdout:
//!
//! - `syscalls [--dir D] [--budget-ms N]`: nanoseconds per `getppid` and per
//!   open+read+close of a 64-byte file in `D` (median over batches of about 2 ms each);
//! - `cpu [--iters N]`: milliseconds for a fixed integer loop that makes no syscalls;
//! - `io [--dir D] [--mib N]`: MiB/s writing then reading back an N MiB file in `D`;
//! - `notify-floor [--dir D] [--budget-ms N]`: nanoseconds per open+read+close as in
//!   `syscalls`, with every `openat` trapped by seccomp user notification and answered by
//!   this program's parent half with the least work possible (`cordon_bench::notify_floor`);
//!   run natively as root, it is the sentry mechanism's floor on this host;
//! - `idle`: prints `ready`, then waits for end of file on stdin and exits 0.

use std::fs::{self, File};
use std::hint::black_box;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

const USAGE: &str = "usage: cordon-syscall-bench syscalls [--dir D] [--budget-ms N]
       cordon-syscall-bench cpu [--iters N]
       cordon-syscall-bench io [--dir D] [--mib N]
       cordon-syscall-bench notify-floor [--dir D] [--budget-ms N]
       cordon-syscall-bench idle";

/// Options shared by the modes, with their defaults.
struct Options {
    dir: PathBuf,
    budget: Duration,
    iters: u64,
    mib: usize,
}

fn parse(args: &[String]) -> Result<Options, String> {
    let mut opts = Options {
        dir: PathBuf::from("/tmp"),
        budget: Duration::from_millis(200),
        iters: 200_000_000,
        mib: 256,
    };
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let number = || {
            value
                .parse::<u64>()
                .map_err(|_| format!("{flag}: not a number: {value}"))
        };
        match flag.as_str() {
            "--dir" => opts.dir = PathBuf::from(value),
            "--budget-ms" => opts.budget = Duration::from_millis(number()?),
            "--iters" => opts.iters = number()?,
            "--mib" => {
                opts.mib = usize::try_from(number()?).map_err(|_| format!("{flag}: too large"))?
            }
            _ => return Err(format!("unknown option {flag}")),
        }
    }
    Ok(opts)
}

/// Nanoseconds per call of `op`: batches sized to about 2 ms, repeated until `budget` is
/// spent (at least 5 batches); returns the median batch.
fn per_call(budget: Duration, mut op: impl FnMut() -> io::Result<()>) -> io::Result<f64> {
    let mut batch: u32 = 1;
    loop {
        let t = Instant::now();
        for _ in 0..batch {
            op()?;
        }
        if t.elapsed() >= Duration::from_millis(2) || batch >= 1 << 24 {
            break;
        }
        batch *= 2;
    }
    let mut samples = Vec::new();
    let start = Instant::now();
    while start.elapsed() < budget || samples.len() < 5 {
        let t = Instant::now();
        for _ in 0..batch {
            op()?;
        }
        samples.push(t.elapsed().as_secs_f64() * 1e9 / f64::from(batch));
    }
    samples.sort_by(f64::total_cmp);
    Ok(samples[samples.len() / 2])
}

fn syscalls(opts: &Options) -> io::Result<String> {
    let getppid_ns = per_call(opts.budget, || {
        black_box(std::os::unix::process::parent_id());
        Ok(())
    })?;
    let orc_ns = with_small_file(opts, |path| open_read_close(opts.budget, path))?;
    Ok(format!(
        "{{\"getppid_ns\":{getppid_ns:.1},\"open_read_close_ns\":{orc_ns:.1}}}"
    ))
}

fn notify_floor(opts: &Options) -> io::Result<String> {
    let mut answered = 0;
    let ns = with_small_file(opts, |path| {
        let floor =
            cordon_bench::notify_floor::under_notify(|| open_read_close(opts.budget, path))?;
        answered = floor.answered;
        Ok(floor.ns)
    })?;
    Ok(format!(
        "{{\"notify_floor_ns\":{ns:.1},\"answered_opens\":{answered}}}"
    ))
}

/// Runs `f` on a fresh 64-byte file in the bench directory, removed afterwards.
fn with_small_file(opts: &Options, f: impl FnOnce(&Path) -> io::Result<f64>) -> io::Result<f64> {
    let path = opts
        .dir
        .join(format!("cordon-bench-small.{}", std::process::id()));
    fs::write(&path, [b'x'; 64]).map_err(|e| with_path(e, "writing", &path))?;
    let result = f(&path);
    let _ = fs::remove_file(&path);
    result.map_err(|e| with_path(e, "reading", &path))
}

/// Nanoseconds per open+read+close of `path` (the 64-byte file), each read checked.
fn open_read_close(budget: Duration, path: &Path) -> io::Result<f64> {
    let mut buf = [0u8; 4096];
    per_call(budget, || {
        let mut f = File::open(path)?;
        let n = f.read(&mut buf)?;
        if n != 64 {
            return Err(io::Error::other(format!("read {n} bytes, not 64")));
        }
        Ok(())
    })
}

/// A multiply-xorshift chain: one dependent multiply per step, no memory traffic, no syscalls.
fn cpu(opts: &Options) -> String {
    let iters = black_box(opts.iters);
    let t = Instant::now();
    let mut x: u64 = black_box(0x9e37_79b9_7f4a_7c15);
    for _ in 0..iters {
        x = x
            .wrapping_mul(0x5851_f42d_4c95_7f2d)
            .wrapping_add(0x1405_7b7e_f767_814f);
        x ^= x >> 29;
    }
    black_box(x);
    let ms = t.elapsed().as_secs_f64() * 1e3;
    format!("{{\"cpu_ms\":{ms:.3},\"iters\":{iters}}}")
}

fn io_bench(opts: &Options) -> io::Result<String> {
    const CHUNK: usize = 1 << 20;
    let path = opts
        .dir
        .join(format!("cordon-bench-io.{}", std::process::id()));
    let chunk: Vec<u8> = (0..CHUNK)
        .map(|i| u8::try_from(i % 251).unwrap_or(0))
        .collect();
    let run = || -> io::Result<(f64, f64)> {
        let t = Instant::now();
        let mut f = File::create(&path)?;
        for _ in 0..opts.mib {
            f.write_all(&chunk)?;
        }
        f.sync_all()?;
        drop(f);
        let write_s = t.elapsed().as_secs_f64();
        let mut buf = vec![0u8; CHUNK];
        let t = Instant::now();
        let mut f = File::open(&path)?;
        let mut total = 0usize;
        loop {
            let n = f.read(&mut buf)?;
            if n == 0 {
                break;
            }
            total += n;
        }
        let read_s = t.elapsed().as_secs_f64();
        if total != opts.mib * CHUNK {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "short read back",
            ));
        }
        Ok((write_s, read_s))
    };
    let result = run();
    let _ = fs::remove_file(&path);
    let (write_s, read_s) = result.map_err(|e| with_path(e, "writing and reading", &path))?;
    let mib = opts.mib as f64;
    Ok(format!(
        "{{\"write_mib_s\":{:.1},\"read_mib_s\":{:.1},\"mib\":{}}}",
        mib / write_s,
        mib / read_s,
        opts.mib
    ))
}

fn idle() -> io::Result<String> {
    let mut out = io::stdout().lock();
    out.write_all(b"ready\n")?;
    out.flush()?;
    let mut sink = [0u8; 256];
    let mut stdin = io::stdin().lock();
    while stdin.read(&mut sink)? > 0 {}
    Ok(String::new())
}

fn with_path(e: io::Error, op: &str, path: &Path) -> io::Error {
    io::Error::new(e.kind(), format!("{op} {}: {e}", path.display()))
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(mode) = args.first() else {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    };
    let opts = match parse(&args[1..]) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("cordon-syscall-bench: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let result = match mode.as_str() {
        "syscalls" => syscalls(&opts),
        "cpu" => Ok(cpu(&opts)),
        "io" => io_bench(&opts),
        "notify-floor" => notify_floor(&opts),
        "idle" => idle(),
        _ => {
            eprintln!("cordon-syscall-bench: unknown mode {mode}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(line) if line.is_empty() => ExitCode::SUCCESS,
        Ok(line) => {
            println!("{line}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("cordon-syscall-bench: {mode}: {e}");
            ExitCode::FAILURE
        }
    }
}
