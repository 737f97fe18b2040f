//! SVG charts drawn with plotters (SVG backend only): startup by runtime, syscall overhead,
//! host memory per sandbox, and ready latency as sandboxes accumulate.

use std::collections::BTreeMap;
use std::fmt::Display;
use std::path::{Path, PathBuf};

use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::report::{fmt_num, ReportError, Results};
use crate::stats::{quantile, Summary};

const FONT: &str = "sans-serif";
const WIDTH: u32 = 900;

fn err<E: Display>(path: &Path) -> impl Fn(E) -> ReportError + '_ {
    move |e| ReportError::Chart {
        path: path.to_path_buf(),
        why: e.to_string(),
    }
}

/// One colour per runtime, the same in every chart.
fn color(name: &str) -> RGBColor {
    match name {
        "native" => RGBColor(120, 120, 120),
        "chroot" => RGBColor(170, 140, 90),
        "bwrap" => RGBColor(60, 150, 60),
        "runc" => RGBColor(40, 100, 200),
        "crun" => RGBColor(120, 70, 190),
        "runsc" => RGBColor(220, 120, 20),
        "qemu" => RGBColor(150, 30, 90),
        "cordon-microvm" => RGBColor(235, 90, 170),
        "cordon-sentry" => RGBColor(0, 160, 160),
        _ => RGBColor(200, 30, 40), // cordon-container
    }
}

const SERIES: [RGBColor; 2] = [RGBColor(40, 100, 200), RGBColor(220, 120, 20)];

/// A runtime's values for each series: (min, p50, p90).
struct Row {
    label: String,
    values: Vec<Option<(f64, f64, f64)>>,
}

fn triple(s: &Summary) -> (f64, f64, f64) {
    (s.min, s.p50, s.p90)
}

/// Horizontal dot-and-range chart on a log axis: a dot at p50, a line from min to p90.
fn range_chart(
    path: &Path,
    title: &str,
    x_desc: &str,
    series: &[&str],
    rows: &[Row],
    unit: fn(f64) -> String,
) -> Result<(), ReportError> {
    let e = err(path);
    let n = rows.len();
    let values = rows
        .iter()
        .flat_map(|r| r.values.iter().flatten())
        .flat_map(|&(a, b, c)| [a, b, c])
        .filter(|v| *v > 0.0 && v.is_finite());
    let (lo, hi) = values.fold((f64::MAX, f64::MIN), |(lo, hi), v| (lo.min(v), hi.max(v)));
    if n == 0 || lo > hi {
        return Ok(());
    }
    let height = 120 + 46 * u32::try_from(n).unwrap_or(1);
    let root = SVGBackend::new(path, (WIDTH, height)).into_drawing_area();
    root.fill(&WHITE).map_err(&e)?;
    let top = n as f64 - 0.5;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, (FONT, 20))
        .margin(14)
        .x_label_area_size(42)
        .y_label_area_size(140)
        // Room on the right for the legend.
        .build_cartesian_2d((lo * 0.6..hi * 8.0).log_scale(), -0.5f64..top)
        .map_err(&e)?;
    chart
        .configure_mesh()
        .disable_y_mesh()
        .y_labels(0)
        .x_desc(x_desc)
        .x_label_formatter(&|v| unit(*v))
        .draw()
        .map_err(&e)?;
    let label_style =
        TextStyle::from((FONT, 14).into_font()).pos(Pos::new(HPos::Right, VPos::Center));
    let value_style =
        TextStyle::from((FONT, 11).into_font()).pos(Pos::new(HPos::Left, VPos::Bottom));
    let m = series.len() as f64;
    let y_of = |i: usize, k: usize| (n - 1 - i) as f64 + (k as f64 - (m - 1.0) / 2.0) * 0.32;
    for (i, row) in rows.iter().enumerate() {
        let (px, py) = chart.backend_coord(&(lo * 0.6, (n - 1 - i) as f64));
        root.draw(&Text::new(
            row.label.clone(),
            (px - 10, py),
            label_style.clone(),
        ))
        .map_err(&e)?;
    }
    for (k, name) in series.iter().enumerate() {
        let c = SERIES[k % SERIES.len()];
        let points: Vec<(usize, (f64, f64, f64))> = rows
            .iter()
            .enumerate()
            .filter_map(|(i, r)| r.values.get(k).copied().flatten().map(|v| (i, v)))
            .collect();
        chart
            .draw_series(points.iter().map(|&(i, (a, _, c90))| {
                PathElement::new(vec![(a, y_of(i, k)), (c90, y_of(i, k))], c.stroke_width(2))
            }))
            .map_err(&e)?;
        chart
            .draw_series(
                points
                    .iter()
                    .map(|&(i, (_, mid, _))| Circle::new((mid, y_of(i, k)), 5, c.filled())),
            )
            .map_err(&e)?
            .label(*name)
            .legend(move |(x, y)| Circle::new((x + 8, y), 5, c.filled()));
        chart
            .draw_series(points.iter().map(|&(i, (_, mid, _))| {
                Text::new(unit(mid), (mid, y_of(i, k) + 0.06), value_style.clone())
            }))
            .map_err(&e)?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font((FONT, 13))
        .draw()
        .map_err(&e)?;
    root.present().map_err(&e)?;
    Ok(())
}

fn ms(v: f64) -> String {
    format!("{} ms", fmt_num(v))
}

fn ns(v: f64) -> String {
    if v >= 1000.0 {
        format!("{} µs", fmt_num(v / 1000.0))
    } else {
        format!("{} ns", fmt_num(v))
    }
}

/// One row per runtime measured in `metric` for any of `workloads` (dot and range per workload).
fn workload_rows(
    r: &Results,
    metric: &BTreeMap<String, BTreeMap<String, Summary>>,
    workloads: &[&str],
) -> Vec<Row> {
    r.names()
        .into_iter()
        .map(|name| Row {
            label: name.to_string(),
            values: workloads
                .iter()
                .map(|w| metric.get(*w).and_then(|x| x.get(name)).map(triple))
                .collect(),
        })
        .filter(|row| row.values.iter().any(Option::is_some))
        .collect()
}

fn startup(r: &Results, path: &Path) -> Result<bool, ReportError> {
    let rows = workload_rows(r, &r.metrics.startup_ms, &["true", "python"]);
    if rows.is_empty() {
        return Ok(false);
    }
    range_chart(
        path,
        "Sandbox lifecycle (dot: p50, line: min to p90)",
        "milliseconds, log scale",
        &["/bin/true", "python3 -c pass"],
        &rows,
        ms,
    )?;
    Ok(true)
}

fn syscalls(r: &Results, path: &Path) -> Result<bool, ReportError> {
    let rows = workload_rows(r, &r.metrics.syscall_ns, &["getppid", "open_read_close"]);
    if rows.is_empty() {
        return Ok(false);
    }
    range_chart(
        path,
        "Syscall cost inside the sandbox (dot: p50, line: min to p90)",
        "time per call, log scale",
        &["getppid", "open+read+close 64 B"],
        &rows,
        ns,
    )?;
    Ok(true)
}

fn memory(r: &Results, path: &Path) -> Result<bool, ReportError> {
    let e = err(path);
    let rows: Vec<(&str, f64)> = r
        .names()
        .into_iter()
        .filter_map(|n| r.metrics.host_mem_mib.get(n).map(|x| (n, x.machinery.p50)))
        .collect();
    if rows.is_empty() {
        return Ok(false);
    }
    let n = rows.len();
    let hi = rows.iter().map(|r| r.1).fold(0.0f64, f64::max).max(1.0) * 1.25;
    let height = 110 + 40 * u32::try_from(n).unwrap_or(1);
    let root = SVGBackend::new(path, (WIDTH, height)).into_drawing_area();
    root.fill(&WHITE).map_err(&e)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "Host memory per sandbox (PSS of the runtime's processes, p50)",
            (FONT, 20),
        )
        .margin(14)
        .x_label_area_size(42)
        .y_label_area_size(140)
        .build_cartesian_2d(0f64..hi, -0.5f64..n as f64 - 0.5)
        .map_err(&e)?;
    chart
        .configure_mesh()
        .disable_y_mesh()
        .y_labels(0)
        .x_desc("MiB")
        .draw()
        .map_err(&e)?;
    let label_style =
        TextStyle::from((FONT, 14).into_font()).pos(Pos::new(HPos::Right, VPos::Center));
    let value_style =
        TextStyle::from((FONT, 12).into_font()).pos(Pos::new(HPos::Left, VPos::Center));
    for (i, (name, v)) in rows.iter().enumerate() {
        let y = (n - 1 - i) as f64;
        let (px, py) = chart.backend_coord(&(0.0, y));
        root.draw(&Text::new(
            name.to_string(),
            (px - 10, py),
            label_style.clone(),
        ))
        .map_err(&e)?;
        chart
            .draw_series(std::iter::once(Rectangle::new(
                [(0.0, y - 0.3), (*v, y + 0.3)],
                color(name).filled(),
            )))
            .map_err(&e)?;
        chart
            .draw_series(std::iter::once(Text::new(
                if *v > 0.0 {
                    format!(" {} MiB", fmt_num(*v))
                } else {
                    " none: the runtime execs the workload".to_string()
                },
                (*v, y),
                value_style.clone(),
            )))
            .map_err(&e)?;
    }
    root.present().map_err(&e)?;
    Ok(true)
}

/// Rolling median of `v` over windows of `w` samples (centred).
fn rolling_median(v: &[f64], w: usize) -> Vec<f64> {
    let half = w / 2;
    (0..v.len())
        .map(|i| {
            let lo = i.saturating_sub(half);
            let hi = (i + half + 1).min(v.len());
            let mut win = v[lo..hi].to_vec();
            win.sort_by(f64::total_cmp);
            quantile(&win, 0.5)
        })
        .collect()
}

fn density(r: &Results, path: &Path) -> Result<bool, ReportError> {
    let e = err(path);
    let d = &r.metrics.density;
    let names: Vec<&str> = r
        .names()
        .into_iter()
        .filter(|n| d.contains_key(*n))
        .collect();
    let max_n = names
        .iter()
        .map(|n| d[*n].ready_ms.len())
        .max()
        .unwrap_or(0);
    let values = names
        .iter()
        .flat_map(|n| d[*n].ready_ms.iter().copied())
        .filter(|v| *v > 0.0);
    let (lo, hi) = values.fold((f64::MAX, f64::MIN), |(lo, hi), v| (lo.min(v), hi.max(v)));
    if max_n == 0 || lo > hi {
        return Ok(false);
    }
    let root = SVGBackend::new(path, (WIDTH, 520)).into_drawing_area();
    root.fill(&WHITE).map_err(&e)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "Startup latency as idle sandboxes accumulate (rolling median)",
            (FONT, 20),
        )
        .margin(14)
        .x_label_area_size(42)
        .y_label_area_size(70)
        .build_cartesian_2d(1usize..max_n.max(2), (lo * 0.7..hi * 1.5).log_scale())
        .map_err(&e)?;
    chart
        .configure_mesh()
        .x_desc("sandboxes already running + 1")
        .y_desc("spawn to ready, ms (log)")
        .y_label_formatter(&|v| fmt_num(*v))
        .draw()
        .map_err(&e)?;
    for name in names {
        let ready = &d[name].ready_ms;
        let smooth = rolling_median(ready, (ready.len() / 20).max(1) | 1);
        let c = color(name);
        chart
            .draw_series(LineSeries::new(
                smooth.iter().enumerate().map(|(i, v)| (i + 1, *v)),
                c.stroke_width(2),
            ))
            .map_err(&e)?
            .label(name.to_string())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], c.stroke_width(2)));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font((FONT, 13))
        .draw()
        .map_err(&e)?;
    root.present().map_err(&e)?;
    Ok(true)
}

/// Draws every chart that has data into `dir`; returns the files written.
pub(crate) fn render_all(r: &Results, dir: &Path) -> Result<Vec<PathBuf>, ReportError> {
    type Draw = fn(&Results, &Path) -> Result<bool, ReportError>;
    let charts: [(&str, Draw); 4] = [
        ("startup.svg", startup),
        ("syscall.svg", syscalls),
        ("memory.svg", memory),
        ("density.svg", density),
    ];
    let mut written = Vec::new();
    for (name, draw) in charts {
        let path = dir.join(name);
        if draw(r, &path)? {
            written.push(path);
        }
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rolling_median_smooths_spikes() {
        let v = [1.0, 1.0, 9.0, 1.0, 1.0];
        assert_eq!(rolling_median(&v, 3), vec![1.0, 1.0, 1.0, 1.0, 1.0]);
        assert_eq!(rolling_median(&v, 1), v.to_vec());
    }
}
