//! BENCHMARKS.md: the results as tables of ratios (against native and against the closest
//! peer), with the charts, a cross-check against earlier figures and the method.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;

use crate::report::{fmt_ns, fmt_num, fmt_ratio, p50, ratio, Results, RuntimeInfo, NOISY_PERCENT};
use crate::stats::Summary;

/// Figures measured earlier on this machine class (FIELD-NOTES, 2026-11-23: hyperfine -N,
/// 30 runs x 7 passes), for a sanity check: (metric, runtime, value).
const REFERENCE: &[(&str, &str, f64)] = &[
    ("startup_ms true", "native", 0.55),
    ("startup_ms true", "chroot", 1.7),
    ("startup_ms true", "bwrap", 6.9),
    ("startup_ms true", "crun", 14.8),
    ("startup_ms true", "runc", 34.0),
    ("startup_ms true", "runsc", 151.0),
    ("startup_ms python", "native", 18.0),
    ("startup_ms python", "bwrap", 23.0),
    ("startup_ms python", "crun", 38.0),
    ("startup_ms python", "runc", 55.0),
    ("startup_ms python", "runsc", 230.0),
    ("host_mem_mib", "bwrap", 0.6),
    ("host_mem_mib", "crun", 1.4),
    ("host_mem_mib", "runc", 9.0),
    ("host_mem_mib", "runsc", 34.0),
    ("syscall_ns getppid", "native", 220.0),
    ("syscall_ns getppid", "runsc", 23_400.0),
    ("syscall_ns open_read_close", "native", 4_300.0),
    ("syscall_ns open_read_close", "runsc", 86_000.0),
];

/// The peers nearest to a tier's isolation, nearest first.
fn peer_preference(tier: &str) -> &'static [&'static str] {
    match tier {
        "cordon-sentry" => &["runsc", "crun", "runc", "bwrap"],
        "cordon-microvm" => &["qemu", "runsc", "crun", "runc"],
        _ => &["crun", "runc", "bwrap", "runsc"],
    }
}

/// The peer to compare a tier with: the first measured in its preference order.
pub(crate) fn closest_peer<'a, T>(tier: &str, have: &'a BTreeMap<String, T>) -> Option<&'a str> {
    peer_preference(tier)
        .iter()
        .find_map(|p| have.get_key_value(*p).map(|(k, _)| k.as_str()))
}

/// A table header: `head` and `align` (each ending in `|`), then one "TIER ÷ runtime" column
/// per cordon tier.
fn header_with_tier_ratios(md: &mut String, head: &str, align: &str, tiers: &[&str]) {
    md.push_str(head);
    for t in tiers {
        let _ = write!(md, " {t} ÷ runtime |");
    }
    md.push('\n');
    md.push_str(align);
    for _ in tiers {
        md.push_str("--:|");
    }
    md.push('\n');
}
/// A table of one lower-is-better (or higher-is-better) summary metric by runtime.
fn summary_table(
    md: &mut String,
    r: &Results,
    map: Option<&BTreeMap<String, Summary>>,
    unit: &str,
    fmt: fn(f64) -> String,
) {
    let Some(map) = map else { return };
    let tiers = r.tiers();
    header_with_tier_ratios(
        md,
        &format!("| runtime | p50 {unit} | p90 | min | max | n | × native |"),
        "|---|--:|--:|--:|--:|--:|--:|",
        &tiers,
    );
    let native = map.get("native").map(|s| s.p50);
    for name in r.names() {
        let Some(s) = map.get(name) else { continue };
        let _ = write!(
            md,
            "| {name} | {} | {} | {} | {} | {} | {} |",
            fmt(s.p50),
            fmt(s.p90),
            fmt(s.min),
            fmt(s.max),
            s.n,
            ratio(Some(s.p50), native)
        );
        for t in &tiers {
            let _ = write!(md, " {} |", ratio(map.get(*t).map(|x| x.p50), Some(s.p50)));
        }
        md.push('\n');
    }
    md.push('\n');
}

fn headline(md: &mut String, r: &Results) {
    let m = &r.metrics;
    for tier in r.tiers() {
        let Some(peer) = closest_peer(tier, m.startup_ms.get("true").unwrap_or(&BTreeMap::new()))
            .map(str::to_string)
        else {
            let _ = writeln!(md, "No peer of {tier}'s class was measured.\n");
            continue;
        };
        let _ = writeln!(
            md,
            "{tier} against native and against its closest peer, **{peer}** (the first measured of {}, nearest isolation first):\n",
            peer_preference(tier).join(", ")
        );
        let _ = writeln!(
            md,
            "| metric | {tier} | × native | {peer} | {tier} ÷ {peer} |\n|---|--:|--:|--:|--:|"
        );
        // `pick` chooses the statistic: p50, or the best run where other load on the host
        // makes the distribution of runs bimodal (syscall costs).
        let mut row = |label: &str,
                       map: Option<&BTreeMap<String, Summary>>,
                       pick: fn(&Summary) -> f64,
                       f: fn(f64) -> String| {
            let get = |name: &str| map.and_then(|m| m.get(name)).map(pick);
            let (a, n, b) = (get(tier), get("native"), get(&peer));
            if let Some(a) = a {
                let _ = writeln!(
                    md,
                    "| {label} | {} | {} | {} | {} |",
                    f(a),
                    ratio(Some(a), n),
                    b.map(f).unwrap_or_else(|| "–".into()),
                    ratio(Some(a), b)
                );
            }
        };
        let ms = |v: f64| format!("{} ms", fmt_num(v));
        let median: fn(&Summary) -> f64 = |s| s.p50;
        let best: fn(&Summary) -> f64 = |s| s.min;
        row(
            "startup `/bin/true` (p50)",
            m.startup_ms.get("true"),
            median,
            ms,
        );
        row(
            "startup `python3 -c pass` (p50)",
            m.startup_ms.get("python"),
            median,
            ms,
        );
        row(
            "getppid (best run)",
            m.syscall_ns.get("getppid"),
            best,
            fmt_ns,
        );
        row(
            "open+read+close 64 B (best run)",
            m.syscall_ns.get("open_read_close"),
            best,
            fmt_ns,
        );
        let mib = |v: f64| format!("{} MiB/s", fmt_num(v));
        row(
            "write 256 MiB to /tmp (p50)",
            m.io_mib_s.get("write"),
            median,
            mib,
        );
        row(
            "read 256 MiB from /tmp (p50)",
            m.io_mib_s.get("read"),
            median,
            mib,
        );
        let mem: BTreeMap<String, Summary> = m
            .host_mem_mib
            .iter()
            .map(|(k, v)| (k.clone(), v.machinery.clone()))
            .collect();
        let (a, b) = (p50(Some(&mem), tier), p50(Some(&mem), &peer));
        if let Some(a) = a {
            let _ = writeln!(
                md,
                "| host PSS per sandbox (p50) | {} MiB | – | {} | {} |",
                fmt_num(a),
                b.map(|b| format!("{} MiB", fmt_num(b)))
                    .unwrap_or_else(|| "–".into()),
                ratio(Some(a), b)
            );
        }
        let best = |n: &str| m.cpu_ratio.get(n).map(|c| c.cpu_ms.min);
        if let Some(a) = best(tier) {
            let _ = writeln!(
                md,
                "| CPU loop, best run | {} ms | {} | {} | {} |",
                fmt_num(a),
                ratio(Some(a), best("native")),
                best(&peer)
                    .map(|b| format!("{} ms", fmt_num(b)))
                    .unwrap_or_else(|| "–".into()),
                ratio(Some(a), best(&peer))
            );
        }
        md.push('\n');
        if tier == "cordon-sentry" {
            floor_line(md, r, &peer);
        }
    }
}

/// What the kernel mechanism alone costs next to the sentry and its peer (best runs, as in
/// the headline): the share of the sentry's open+read+close that no supervisor can remove.
fn floor_line(md: &mut String, r: &Results, peer: &str) {
    let m = &r.metrics.syscall_ns;
    let best = |metric: &str, rt: &str| m.get(metric).and_then(|x| x.get(rt)).map(|s| s.min);
    let Some(floor) = best("notify_floor", "native") else {
        return;
    };
    let sentry = best("open_read_close", "cordon-sentry");
    let _ = writeln!(
        md,
        "Mechanism floor, same run: open+read+close with `openat` trapped by seccomp user notification and answered with the least work possible (copy the path, open, `ADDFD|SEND`; no policy), natively: **{}** (best run), {} of {peer}'s best run; the sentry's policy and confinement add {} on top (the sentry runs at {} the floor).\n",
        fmt_ns(floor),
        ratio(Some(floor), best("open_read_close", peer)),
        sentry.map_or_else(|| "–".into(), |s| fmt_ns(s - floor)),
        ratio(sentry, Some(floor)),
    );
}

fn density_table(md: &mut String, r: &Results) {
    let d = &r.metrics.density;
    if d.is_empty() {
        md.push_str("Not run (`--density 0`).\n\n");
        return;
    }
    let tiers = r.tiers();
    md.push_str("| runtime | sandboxes | ready p50, first tenth | ready p50, last tenth | growth | PSS per sandbox at the end | stopped because | teardown |\n|---|--:|--:|--:|--:|--:|---|--:|\n");
    for name in r.names() {
        let Some(x) = d.get(name) else { continue };
        let (first, last) = (x.checkpoints.first(), x.checkpoints.last());
        let (f, l) = (first.map(|c| c.ready_ms_p50), last.map(|c| c.ready_ms_p50));
        let _ = writeln!(
            md,
            "| {name} | {}/{} | {} | {} | {} | {} | {} | {:.1} s |",
            x.reached,
            x.bound,
            f.map(|v| format!("{} ms", fmt_num(v)))
                .unwrap_or_else(|| "–".into()),
            l.map(|v| format!("{} ms", fmt_num(v)))
                .unwrap_or_else(|| "–".into()),
            ratio(l, f),
            last.map(|c| format!("{} MiB", fmt_num(c.pss_mib_per_sandbox)))
                .unwrap_or_else(|| "–".into()),
            x.stop_reason.as_deref().unwrap_or("bound reached"),
            x.teardown_s
        );
    }
    md.push('\n');
    for t in tiers {
        let Some(x) = d.get(t) else { continue };
        let mut rows = String::new();
        for name in r.names() {
            let Some(v) = d.get(name).filter(|_| name != t) else {
                continue;
            };
            // Compare at the largest checkpoint both reached.
            let common = x.checkpoints.iter().rev().find_map(|a| {
                v.checkpoints
                    .iter()
                    .find(|b| b.sandboxes == a.sandboxes)
                    .map(|b| (a, b))
            });
            let Some((a, b)) = common else { continue };
            let pss = if b.pss_mib_per_sandbox > 0.0 {
                ratio(Some(a.pss_mib_per_sandbox), Some(b.pss_mib_per_sandbox))
            } else {
                "–".to_string()
            };
            let _ = writeln!(
                rows,
                "| {name} | {} | {} | {pss} |",
                a.sandboxes,
                ratio(Some(a.ready_ms_p50), Some(b.ready_ms_p50))
            );
        }
        if !rows.is_empty() {
            let _ = writeln!(
                md,
                "{t} against each runtime at the largest number of sandboxes both reached:\n\n| runtime | sandboxes | {t} ÷ runtime, ready p50 | {t} ÷ runtime, PSS per sandbox |\n|---|--:|--:|--:|\n{rows}"
            );
        }
    }
}

fn reference_table(md: &mut String, r: &Results) {
    md.push_str("| figure | runtime | this run (p50) | FIELD-NOTES | this run ÷ notes |\n|---|---|--:|--:|--:|\n");
    let m = &r.metrics;
    for &(metric, rt, reference) in REFERENCE {
        let here = match metric {
            "startup_ms true" => p50(m.startup_ms.get("true"), rt),
            "startup_ms python" => p50(m.startup_ms.get("python"), rt),
            "host_mem_mib" => m.host_mem_mib.get(rt).map(|x| x.machinery.p50),
            "syscall_ns getppid" => p50(m.syscall_ns.get("getppid"), rt),
            "syscall_ns open_read_close" => p50(m.syscall_ns.get("open_read_close"), rt),
            _ => None,
        };
        let Some(here) = here else { continue };
        let _ = writeln!(
            md,
            "| {metric} | {rt} | {} | {} | {} |",
            fmt_num(here),
            fmt_num(reference),
            fmt_ratio(here / reference)
        );
    }
    md.push('\n');
}

/// BENCHMARKS.md.
pub(crate) fn render(r: &Results, charts: &[PathBuf]) -> String {
    let mut md = String::new();
    let mc = &r.machine;
    let _ = writeln!(md, "# cordon benchmarks\n");
    let _ = writeln!(
        md,
        "Produced by `{}` ({} mode, {:.1} min) on {}.\n",
        r.command,
        r.mode,
        r.duration_s / 60.0,
        mc.date_utc.replace('T', " ").replace('Z', " UTC")
    );
    let _ = writeln!(
        md,
        "Machine: {}, {} cores, {:.1} GiB RAM, Linux {}, {}{}; load average {} at the start, {} at the end; \
         other processes used {} of the CPU time during the run. \
         Raw samples and versions: `bench-results.json` next to this file.\n",
        mc.cpu_model,
        mc.cores,
        mc.memory_mib as f64 / 1024.0,
        mc.kernel,
        mc.os,
        if mc.virtualized { " (virtual machine)" } else { "" },
        mc.loadavg_start,
        mc.loadavg_end,
        mc.other_cpu_percent
            .map(|p| format!("{p:.0}%"))
            .unwrap_or_else(|| "an unknown share".into())
    );
    md.push_str("Absolute numbers depend on the machine; read the ratios. Every figure comes from the same run, with the runtimes interleaved.\n\n");
    if !r.other_cpu_by_phase.is_empty() {
        let phases: Vec<String> = r
            .other_cpu_by_phase
            .iter()
            .map(|s| format!("{} {:.0}%", s.phase, s.other_cpu_percent))
            .collect();
        let _ = writeln!(
            md,
            "Other processes' share of the CPU time, by phase: {}.\n",
            phases.join(", ")
        );
    }
    let noisy: Vec<&str> = r
        .other_cpu_by_phase
        .iter()
        .filter(|s| s.other_cpu_percent > NOISY_PERCENT)
        .map(|s| s.phase.as_str())
        .collect();
    if mc.other_cpu_percent.is_some_and(|p| p > NOISY_PERCENT) || !noisy.is_empty() {
        let _ = writeln!(
            md,
            "**Warning: other processes took over {NOISY_PERCENT:.0}% of the CPU time during {}; absolute figures there are inflated and noisy. Rerun on a quiet machine for reference numbers.**\n",
            if noisy.is_empty() { "this run".to_string() } else { format!("these phases: {}", noisy.join(", ")) }
        );
    }
    md.push_str("## Headline\n\n");
    headline(&mut md, r);

    md.push_str(
        "## Runtimes\n\n| runtime | status | version | isolation / reason |\n|---|---|---|---|\n",
    );
    for rt in &r.runtimes {
        let detail = match (&rt.reason, &rt.isolation) {
            (Some(reason), _) => reason.clone(),
            (None, Some(iso)) => iso.clone(),
            _ => String::new(),
        };
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} |",
            rt.name,
            rt.status,
            rt.version.as_deref().unwrap_or("–"),
            detail.replace('|', "/")
        );
    }
    md.push('\n');
    let notes: Vec<String> = r
        .runtimes
        .iter()
        .flat_map(|rt| rt.notes.iter().map(move |n| format!("- {}: {n}", rt.name)))
        .collect();
    if !notes.is_empty() {
        let _ = writeln!(
            md,
            "Not measured, or measured less:\n\n{}\n",
            notes.join("\n")
        );
    }
    let has = |name: &str| {
        charts
            .iter()
            .any(|p| p.file_name().is_some_and(|f| f == name))
    };
    let chart = |md: &mut String, name: &str, alt: &str| {
        if has(name) {
            let _ = writeln!(md, "![{alt}](bench/{name})\n");
        }
    };

    md.push_str("## Startup (`startup_ms`)\n\nFull lifecycle of one sandbox running the command, milliseconds.\n\n");
    chart(&mut md, "startup.svg", "startup by runtime");
    md.push_str("### `/bin/true`\n\n");
    summary_table(&mut md, r, r.metrics.startup_ms.get("true"), "ms", fmt_num);
    md.push_str("### `python3 -c pass`\n\n");
    summary_table(
        &mut md,
        r,
        r.metrics.startup_ms.get("python"),
        "ms",
        fmt_num,
    );

    if let Some(mv) = &r.metrics.microvm_start_ms {
        microvm_section(&mut md, mv);
    }

    md.push_str("## Host memory per sandbox (`host_mem_mib`)\n\nPSS of the runtime's own processes while the workload idles, MiB.\n\n");
    chart(&mut md, "memory.svg", "memory per sandbox");
    let tiers = r.tiers();
    header_with_tier_ratios(
        &mut md,
        "| runtime | PSS p50 MiB | min | max | processes counted | workload PSS MiB |",
        "|---|--:|--:|--:|---|--:|",
        &tiers,
    );
    for name in r.names() {
        let Some(x) = r.metrics.host_mem_mib.get(name) else {
            continue;
        };
        let s = &x.machinery;
        let mut procs: Vec<String> = Vec::new();
        for name in &x.processes {
            let count = x.processes.iter().filter(|p| *p == name).count();
            let label = if count > 1 {
                format!("{name} ×{count}")
            } else {
                name.clone()
            };
            if !procs.contains(&label) {
                procs.push(label);
            }
        }
        let _ = write!(
            md,
            "| {name} | {} | {} | {} | {} | {} |",
            fmt_num(s.p50),
            fmt_num(s.min),
            fmt_num(s.max),
            if procs.is_empty() {
                "none (exec)".to_string()
            } else {
                procs.join(", ")
            },
            if x.payload_included {
                "included".to_string()
            } else {
                x.payload_mib
                    .as_ref()
                    .map(|p| fmt_num(p.p50))
                    .unwrap_or_else(|| "–".into())
            }
        );
        for t in &tiers {
            let a = r.metrics.host_mem_mib.get(*t).map(|m| m.machinery.p50);
            let _ = write!(
                md,
                " {} |",
                if s.p50 > 0.0 {
                    ratio(a, Some(s.p50))
                } else {
                    "–".into()
                }
            );
        }
        md.push('\n');
    }
    md.push('\n');

    md.push_str("## Syscall overhead (`syscall_ns`)\n\nMeasured by `cordon-syscall-bench` inside each sandbox, nanoseconds per call.\n\n");
    chart(&mut md, "syscall.svg", "syscall overhead");
    md.push_str("### getppid\n\n");
    summary_table(
        &mut md,
        r,
        r.metrics.syscall_ns.get("getppid"),
        "ns",
        fmt_num,
    );
    md.push_str("### open+read+close of a 64-byte file in /tmp\n\n");
    summary_table(
        &mut md,
        r,
        r.metrics.syscall_ns.get("open_read_close"),
        "ns",
        fmt_num,
    );

    if let Some(floor) = r.metrics.syscall_ns.get("notify_floor") {
        md.push_str("### The sentry mechanism's floor\n\n`cordon-syscall-bench notify-floor`, natively: open+read+close of the same file with `openat` trapped by seccomp user notification and answered by a parent process with the least work any such supervisor must do (copy the path, open, install the fd with `ADDFD|SEND`, synchronous wake-ups). Measured only when the sentry tier is.\n\n| | p50 ns | p90 | min | max | n |\n|---|--:|--:|--:|--:|--:|\n");
        for (name, s) in floor {
            spread_row(&mut md, name, s);
        }
        md.push('\n');
    }

    md.push_str("## CPU (`cpu_ratio`)\n\nA fixed integer loop; time relative to native (1.00 = no overhead). The ratio compares best runs, the ones least disturbed by other load; the p50 ratio is shown too.\n\n| runtime | loop ms, best | p50 | max | ratio vs native (best) | ratio (p50) |\n|---|--:|--:|--:|--:|--:|\n");
    for name in r.names() {
        let Some(c) = r.metrics.cpu_ratio.get(name) else {
            continue;
        };
        let _ = writeln!(
            md,
            "| {name} | {} | {} | {} | {} | {} |",
            fmt_num(c.cpu_ms.min),
            fmt_num(c.cpu_ms.p50),
            fmt_num(c.cpu_ms.max),
            c.ratio.map(fmt_ratio).unwrap_or_else(|| "–".into()),
            c.ratio_p50.map(fmt_ratio).unwrap_or_else(|| "–".into())
        );
    }
    md.push('\n');

    md.push_str("## I/O (`io_mib_s`)\n\n256 MiB written then read back in the sandbox's /tmp, MiB/s (higher is better).\n\n### write\n\n");
    summary_table(
        &mut md,
        r,
        r.metrics.io_mib_s.get("write"),
        "MiB/s",
        fmt_num,
    );
    md.push_str("### read\n\n");
    summary_table(&mut md, r, r.metrics.io_mib_s.get("read"), "MiB/s", fmt_num);

    md.push_str("## Density\n\nIdle sandboxes started one after another, each kept running; time from spawn to ready for each, PSS per sandbox at the end.\n\n");
    chart(&mut md, "density.svg", "latency vs density");
    density_table(&mut md, r);

    md.push_str("## Cross-check with earlier measurements\n\nFIELD-NOTES.md (2026-11-23, hyperfine -N, 30 runs × 7 passes; python there ran in a debootstrap rootfs).\n\n");
    reference_table(&mut md, r);

    md.push_str("## Method\n\n");
    for line in &r.method {
        let _ = writeln!(md, "- {line}");
    }
    let _ = writeln!(
        md,
        "- Samples: {} warm-up + {} measured lifecycles per runtime and workload; syscalls {} runs; CPU {} runs; I/O {} runs; memory {} sandboxes; density up to {}.",
        r.params.warmup,
        r.params.runs,
        r.params.syscall_reps,
        r.params.cpu_reps,
        r.params.io_reps,
        r.params.mem_reps,
        r.params.density_bound
    );
    let failed: Vec<&RuntimeInfo> = r.runtimes.iter().filter(|x| !x.errors.is_empty()).collect();
    if !failed.is_empty() {
        md.push_str("\n## Errors during the run\n\n");
        for x in failed {
            for e in &x.errors {
                let _ = writeln!(md, "- {}: {}", x.name, e.replace('|', "/"));
            }
        }
    }
    md
}

/// A table row `| label | p50 | p90 | min | max | n |`.
fn spread_row(md: &mut String, label: &str, s: &Summary) {
    let _ = writeln!(
        md,
        "| {label} | {} | {} | {} | {} | {} |",
        fmt_num(s.p50),
        fmt_num(s.p90),
        fmt_num(s.min),
        fmt_num(s.max),
        s.n
    );
}

fn microvm_section(md: &mut String, mv: &crate::microvm::MicrovmStarts) {
    md.push_str("## microVM starts (`microvm_start_ms`)\n\n`/bin/true` in a fresh guest, milliseconds, by how the VM is obtained (see Method).\n\n");
    md.push_str("| mode | p50 ms | p90 | min | max | n |\n|---|--:|--:|--:|--:|--:|\n");
    for mode in ["cold_boot", "snapshot", "pool", "qemu_restore"] {
        if let Some(s) = mv.modes.get(mode) {
            spread_row(md, mode, s);
        }
    }
    md.push('\n');
    if let Some(o) = mv.cordon_overhead_ms {
        let _ = writeln!(
            md,
            "cordon's overhead over the bare qemu restore (p50 snapshot - p50 qemu_restore): {} ms.\n",
            fmt_num(o)
        );
    }
    if mv.pool_misses > 0 {
        let _ = writeln!(
            md,
            "Pool samples that found no warm VM (restored instead, left out): {}.\n",
            mv.pool_misses
        );
    }
    for n in &mv.notes {
        let _ = writeln!(md, "- {n}");
    }
    if !mv.notes.is_empty() {
        md.push('\n');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closest_peer_prefers_same_class() {
        let mut have: BTreeMap<String, u8> = BTreeMap::new();
        have.insert("runc".into(), 1);
        have.insert("bwrap".into(), 1);
        assert_eq!(closest_peer("cordon-container", &have), Some("runc"));
        have.insert("crun".into(), 1);
        assert_eq!(closest_peer("cordon-container", &have), Some("crun"));
        assert_eq!(
            closest_peer("cordon-container", &BTreeMap::<String, u8>::new()),
            None
        );
    }
}
