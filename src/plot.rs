//! PNG and SVG charts of benchmark and training results, with plotters —
//! no Python needed.
//!
//! Bench charts draw each subject's median over the runs as a line with
//! markers and its min–max range as a band; the training chart draws the
//! loss (per-epoch points over a thin line of the logged steps) on the left
//! axis and the held-out accuracy on the right. Colours are the Tableau 10
//! palette, each line also has its own marker, and legends sit below the
//! plot so they cover no data.
//!
//! Text is drawn with DejaVu Sans, built into the binary
//! (`assets/DejaVuSans.ttf`, Bitstream Vera licence in
//! `assets/DejaVuSans-LICENSE.txt`), so charts render alike on every
//! machine, with or without system fonts; `RINGREDUCE_FONT` names another
//! TrueType file.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use plotters::coord::ranged1d::{AsRangedCoord, ValueFormatter};
use plotters::coord::Shift;
use plotters::prelude::*;

use crate::error::{Error, Result};
use crate::summary::Summary;
use crate::train::{MetricsLog, TraceEvent};

/// Opens `$path` as a PNG or SVG drawing area of `$size` named `$root`
/// and evaluates `$body` (generic over the backend) on it.
macro_rules! on_backend {
    ($path:expr, $size:expr, $root:ident => $body:expr) => {{
        let path: &Path = $path;
        check_extension(path)?;
        let svg = path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| e.eq_ignore_ascii_case("svg"));
        let result = if svg {
            let $root = SVGBackend::new(path, $size).into_drawing_area();
            $body
        } else {
            let $root = BitMapBackend::new(path, $size).into_drawing_area();
            $body
        };
        result.map_err(|e| plot_error(format!("{}: {e}", path.display())))
    }};
}

/// One line of a chart: its points and, optionally, a band around them.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// Legend label.
    pub name: String,
    /// (x, y) points in x order.
    pub points: Vec<(f64, f64)>,
    /// (x, low, high) of the band (the range over runs); empty for none.
    pub band: Vec<(f64, f64, f64)>,
}

/// A chart to draw.
#[derive(Debug, Clone)]
pub struct Chart<'a> {
    /// Title at the top.
    pub title: &'a str,
    /// X axis label.
    pub x_label: &'a str,
    /// Y axis label.
    pub y_label: &'a str,
    /// Logarithmic x axis.
    pub log_x: bool,
    /// Label x ticks as byte sizes (4K, 16M).
    pub x_bytes: bool,
    /// Logarithmic y axis.
    pub log_y: bool,
    /// The lines.
    pub series: &'a [Series],
}

/// Tableau 10: distinguishable, none faint on white.
const PALETTE: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

/// The colour of series `i`.
fn colour(i: usize) -> RGBColor {
    PALETTE[i % PALETTE.len()]
}

/// Evaluates `$body` with `$m` bound to marker `$kind` (circle, triangle,
/// square, diamond, cross, in turn) at `$at` in `$colour`.
macro_rules! with_marker {
    ($at:expr, $kind:expr, $colour:expr, |$m:ident| $body:expr) => {{
        let (at, colour): (_, RGBColor) = ($at, $colour);
        let fill = colour.filled();
        match $kind % 5 {
            0 => {
                let $m = Circle::new(at, 4, fill);
                $body
            }
            1 => {
                let $m = TriangleMarker::new(at, 5, fill);
                $body
            }
            2 => {
                let $m = EmptyElement::at(at) + Rectangle::new([(-4, -4), (4, 4)], fill);
                $body
            }
            3 => {
                let $m = EmptyElement::at(at) + Polygon::new(vec![(0, -5), (5, 0), (0, 5), (-5, 0)], fill);
                $body
            }
            _ => {
                let $m = Cross::new(at, 4, colour.stroke_width(2));
                $body
            }
        }
    }};
}

/// An entry of a legend: label, colour, marker (`None`: a line only), line width.
struct Entry {
    label: String,
    colour: RGBColor,
    marker: Option<usize>,
    width: u32,
}

/// Height of the legend strip under a chart with these labels.
fn legend_height<'a>(labels: impl Iterator<Item = &'a str> + Clone) -> u32 {
    let n = labels.clone().count();
    12 + 24 * n.div_ceil(legend_columns(labels)) as u32
}

/// Four columns, or three when a label would run into the next column
/// (or off the chart): a strategy spelled `postlocal:warmup=200,tau=8`.
fn legend_columns<'a>(mut labels: impl Iterator<Item = &'a str>) -> usize {
    if labels.any(|l| l.chars().count() > 22) {
        3
    } else {
        4
    }
}

/// Draws the legend in its own strip, so it covers no data.
fn legend<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    entries: &[Entry],
) -> std::result::Result<(), String> {
    let e = |e: &dyn std::fmt::Display| e.to_string();
    let width = area.dim_in_pixel().0 as i32;
    let columns = legend_columns(entries.iter().map(|e| e.label.as_str()));
    let col = (width - 100) / columns as i32;
    for (k, entry) in entries.iter().enumerate() {
        let x = 90 + col * (k % columns) as i32;
        let y = 14 + 24 * (k / columns) as i32;
        let style = entry.colour.stroke_width(entry.width);
        area.draw(&PathElement::new(vec![(x, y), (x + 28, y)], style))
            .map_err(|x| e(&x))?;
        if let Some(kind) = entry.marker {
            with_marker!((x + 14, y), kind, entry.colour, |m| area
                .draw(&m)
                .map_err(|x| e(&x))?);
        }
        area.draw(&Text::new(
            entry.label.clone(),
            (x + 36, y - 8),
            ("sans-serif", 15),
        ))
        .map_err(|x| e(&x))?;
    }
    Ok(())
}

/// DejaVu Sans, the charts' font unless `RINGREDUCE_FONT` names another.
const BUILT_IN_FONT: &[u8] = include_bytes!("../assets/DejaVuSans.ttf");

fn plot_error(reason: impl std::fmt::Display) -> Error {
    Error::InvalidArgument {
        what: "plot",
        reason: reason.to_string(),
    }
}

/// Registers the font once per process.
fn ensure_font() -> Result<()> {
    static FONT: OnceLock<std::result::Result<(), String>> = OnceLock::new();
    FONT.get_or_init(|| {
        let (bytes, name): (&'static [u8], String) = match crate::group::font_from_env() {
            Some(path) => {
                let bytes = std::fs::read(&path)
                    .map_err(|e| format!("{} names {}: {e}", crate::group::ENV_FONT, path.display()))?;
                // The font lives for the whole process, as plotters requires.
                (Box::leak(bytes.into_boxed_slice()), path.display().to_string())
            }
            None => (BUILT_IN_FONT, "the built-in DejaVu Sans".into()),
        };
        plotters::style::register_font("sans-serif", FontStyle::Normal, bytes)
            .map_err(|_| format!("{name}: not a usable TrueType font"))
    })
    .clone()
    .map_err(plot_error)
}

/// Draws `chart` to `path`; the format follows the extension (`.png` or `.svg`).
///
/// # Errors
/// An unknown extension, no data, no font, or a file that cannot be written.
pub fn draw(chart: &Chart, path: &Path) -> Result<()> {
    ensure_font()?;
    let usable = |v: f64, log: bool| v.is_finite() && (!log || v > 0.0);
    let pts: Vec<(f64, f64)> = chart
        .series
        .iter()
        .flat_map(|s| {
            s.points
                .iter()
                .copied()
                .chain(s.band.iter().flat_map(|&(x, lo, hi)| [(x, lo), (x, hi)]))
        })
        .filter(|&(x, y)| usable(x, chart.log_x) && usable(y, chart.log_y))
        .collect();
    if pts.is_empty() {
        return Err(plot_error(format!("{}: nothing to plot", path.display())));
    }
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for &(x, y) in &pts {
        (x0, x1, y0, y1) = (x0.min(x), x1.max(x), y0.min(y), y1.max(y));
    }
    let (x0, x1) = pad(x0, x1, chart.log_x);
    let (y0, y1) = pad(y0, y1, chart.log_y);
    on_backend!(path, (960, 600 + legend_height(chart.series.iter().map(|s| s.name.as_str()))), root => {
        draw_on(root, chart, (x0, x1), (y0, y1))
    })
}

/// Room around the data: a factor on log axes, 5 % below and 8 % above on
/// linear ones (never below zero for data that is not).
fn pad(lo: f64, hi: f64, log: bool) -> (f64, f64) {
    if log {
        (lo / 1.5, hi * 1.5)
    } else {
        let span = (hi - lo).max(hi.abs() * 0.1).max(1e-12);
        let low = lo - 0.05 * span;
        (if lo >= 0.0 { low.max(0.0) } else { low }, hi + 0.08 * span)
    }
}

/// Whether `path` names a file [`draw`] can write (`.png` or `.svg`).
///
/// # Errors
/// [`Error::InvalidArgument`] for any other extension.
pub fn check_extension(path: &Path) -> Result<()> {
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
    if ext.eq_ignore_ascii_case("png") || ext.eq_ignore_ascii_case("svg") {
        Ok(())
    } else {
        Err(plot_error(format!(
            "{}: use a .png or .svg file name",
            path.display()
        )))
    }
}

fn draw_on<DB: DrawingBackend>(
    root: DrawingArea<DB, Shift>,
    chart: &Chart,
    x: (f64, f64),
    y: (f64, f64),
) -> std::result::Result<(), String> {
    // Byte sizes double, so their ticks go in powers of 4 (4, 16, …, 1K, 4K, …).
    let base = if chart.x_bytes { 4.0 } else { 10.0 };
    match (chart.log_x, chart.log_y) {
        (true, true) => draw_axes(
            root,
            chart,
            (x.0..x.1).log_scale().base(base),
            (y.0..y.1).log_scale(),
        ),
        (true, false) => draw_axes(root, chart, (x.0..x.1).log_scale().base(base), y.0..y.1),
        (false, true) => draw_axes(root, chart, x.0..x.1, (y.0..y.1).log_scale()),
        (false, false) => draw_axes(root, chart, x.0..x.1, y.0..y.1),
    }
}

fn draw_axes<DB, X, Y>(
    root: DrawingArea<DB, Shift>,
    chart: &Chart,
    x: X,
    y: Y,
) -> std::result::Result<(), String>
where
    DB: DrawingBackend,
    X: AsRangedCoord<Value = f64>,
    Y: AsRangedCoord<Value = f64>,
    X::CoordDescType: ValueFormatter<f64>,
    Y::CoordDescType: ValueFormatter<f64>,
{
    let e = |e: &dyn std::fmt::Display| e.to_string();
    root.fill(&WHITE).map_err(|x| e(&x))?;
    let height = root.dim_in_pixel().1;
    let (plot_area, legend_area) =
        root.split_vertically(height - legend_height(chart.series.iter().map(|s| s.name.as_str())));
    let mut ctx = ChartBuilder::on(&plot_area)
        .caption(chart.title, ("sans-serif", 22))
        .margin(16)
        .x_label_area_size(48)
        .y_label_area_size(72)
        .build_cartesian_2d(x, y)
        .map_err(|x| e(&x))?;
    let x_fmt = |v: &f64| {
        if chart.x_bytes {
            byte_label(*v)
        } else {
            number_label(*v)
        }
    };
    let y_fmt = |v: &f64| number_label(*v);
    ctx.configure_mesh()
        .x_desc(chart.x_label)
        .y_desc(chart.y_label)
        .x_label_formatter(&x_fmt)
        .y_label_formatter(&y_fmt)
        .label_style(("sans-serif", 14))
        .light_line_style(RGBColor(240, 240, 240))
        .max_light_lines(2)
        .draw()
        .map_err(|x| e(&x))?;
    // Bands first, so that every line is drawn over every band.
    for (i, s) in chart.series.iter().enumerate() {
        if s.band.iter().any(|&(_, lo, hi)| hi > lo) {
            let outline: Vec<(f64, f64)> = s
                .band
                .iter()
                .map(|&(x, lo, _)| (x, lo))
                .chain(s.band.iter().rev().map(|&(x, _, hi)| (x, hi)))
                .collect();
            ctx.draw_series(std::iter::once(Polygon::new(
                outline,
                colour(i).mix(0.18).filled(),
            )))
            .map_err(|x| e(&x))?;
        }
    }
    let mut entries = Vec::new();
    for (i, s) in chart.series.iter().enumerate() {
        let c = colour(i);
        ctx.draw_series(LineSeries::new(s.points.iter().copied(), c.stroke_width(2)))
            .map_err(|x| e(&x))?;
        for &p in &s.points {
            with_marker!(p, i, c, |m| ctx
                .draw_series(std::iter::once(m))
                .map_err(|x| e(&x))?);
        }
        entries.push(Entry {
            label: s.name.clone(),
            colour: c,
            marker: Some(i),
            width: 2,
        });
    }
    legend(&legend_area, &entries)?;
    root.present().map_err(|x| e(&x))
}

/// A tick label for a byte count: 512, 4K, 16M.
fn byte_label(v: f64) -> String {
    let b = v.round().max(0.0) as u64;
    for (shift, suffix) in [(30, "G"), (20, "M"), (10, "K")] {
        if b >= 1 << shift {
            let x = v / (1u64 << shift) as f64;
            return if (x - x.round()).abs() < 0.05 {
                format!("{}{suffix}", x.round())
            } else {
                format!("{x:.1}{suffix}")
            };
        }
    }
    b.to_string()
}

/// A tick label for a plain number without trailing zeros.
fn number_label(v: f64) -> String {
    let s = if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.3}")
    };
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

/// Draws a training run's metrics to `path` (PNG or SVG): the training
/// loss on the left axis (the mean of each logged stretch of steps as a
/// thin line, each epoch's mean as points), the held-out accuracy on the
/// right, epochs as integer ticks.
///
/// # Errors
/// No epochs, no font, an unknown extension, or a file that cannot be
/// written.
pub fn training(log: &MetricsLog, title: &str, path: &Path) -> Result<()> {
    ensure_font()?;
    let epochs: Vec<_> = log.epochs().collect();
    let Some(last) = epochs.last() else {
        return Err(plot_error(format!("{}: no epochs to plot", path.display())));
    };
    let per_epoch = log.steps_per_epoch().unwrap_or(1).max(1) as f64;
    let steps: Vec<(f64, f64)> = log
        .steps()
        .map(|(s, l)| (s as f64 / per_epoch, l))
        .filter(|p| p.1.is_finite())
        .collect();
    let losses = epochs
        .iter()
        .map(|m| m.train_loss)
        .chain(steps.iter().map(|p| p.1))
        .filter(|v| v.is_finite());
    let top = losses.fold(0.0f64, f64::max).max(1e-6) * 1.08;
    let accuracy: Vec<(f64, f64)> = epochs
        .iter()
        .filter_map(|m| m.test_accuracy.map(|a| (m.epoch as f64, a)))
        .collect();
    let low_acc = accuracy.iter().map(|p| p.1).fold(1.0f64, f64::min);
    let acc_low = ((low_acc - 0.05).max(0.0) * 10.0).floor() / 10.0;
    // A little room above 1, so a perfect score is not drawn on the frame.
    let acc_range = acc_low..1.0 + 0.03 * (1.0 - acc_low);
    let n = last.epoch;
    let ticks = (n + 1).min(12);
    let acc_name = log.accuracy.as_deref().map(|a| a.replace('_', " "));
    let mut entries = vec![Entry {
        label: "train loss per epoch".into(),
        colour: colour(0),
        marker: Some(0),
        width: 2,
    }];
    if !steps.is_empty() {
        entries.push(Entry {
            label: "train loss, logged steps".into(),
            colour: colour(0),
            marker: None,
            width: 1,
        });
    }
    if let Some(name) = &acc_name {
        entries.push(Entry {
            label: format!("{name} (right axis)"),
            colour: colour(1),
            marker: Some(1),
            width: 2,
        });
    }
    let size = (960, 600 + legend_height(entries.iter().map(|e| e.label.as_str())));
    let data = TrainingChart {
        title,
        epochs: n,
        ticks,
        top,
        acc_range,
        acc_name: acc_name.as_deref(),
        steps,
        points: epochs.iter().map(|m| (m.epoch as f64, m.train_loss)).collect(),
        accuracy,
        entries,
    };
    on_backend!(path, size, root => draw_training(root, &data))
}

/// What [`training`] draws.
struct TrainingChart<'a> {
    title: &'a str,
    epochs: usize,
    ticks: usize,
    top: f64,
    acc_range: std::ops::Range<f64>,
    acc_name: Option<&'a str>,
    steps: Vec<(f64, f64)>,
    points: Vec<(f64, f64)>,
    accuracy: Vec<(f64, f64)>,
    entries: Vec<Entry>,
}

/// A part of a chart's drawing.
type Area<DB> = DrawingArea<DB, Shift>;

/// Clears `root` to white and cuts it into the plot and, below, the strip
/// of the legend of `entries`.
fn with_legend_strip<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    entries: &[Entry],
) -> std::result::Result<(Area<DB>, Area<DB>), String> {
    root.fill(&WHITE).map_err(|x| x.to_string())?;
    let height = root.dim_in_pixel().1;
    Ok(root.split_vertically(height - legend_height(entries.iter().map(|e| e.label.as_str()))))
}

fn draw_training<DB: DrawingBackend>(
    root: DrawingArea<DB, Shift>,
    t: &TrainingChart,
) -> std::result::Result<(), String> {
    let e = |e: &dyn std::fmt::Display| e.to_string();
    let (plot_area, legend_area) = with_legend_strip(&root, &t.entries)?;
    let x_range = || 0.0..t.epochs as f64 + 0.25;
    let mut ctx = ChartBuilder::on(&plot_area)
        .caption(t.title, ("sans-serif", 22))
        .margin(16)
        .x_label_area_size(48)
        .y_label_area_size(72)
        .right_y_label_area_size(if t.acc_name.is_some() { 72 } else { 0 })
        .build_cartesian_2d(x_range(), 0.0..t.top)
        .map_err(|x| e(&x))?
        .set_secondary_coord(x_range(), t.acc_range.clone());
    ctx.configure_mesh()
        .x_desc("epoch")
        .y_desc("training loss")
        .x_labels(t.ticks)
        // Whole epochs only.
        .x_label_formatter(&|v| {
            if (v - v.round()).abs() < 1e-9 {
                format!("{v:.0}")
            } else {
                String::new()
            }
        })
        .y_label_formatter(&|v| number_label(*v))
        .label_style(("sans-serif", 14))
        .light_line_style(RGBColor(240, 240, 240))
        .max_light_lines(2)
        .draw()
        .map_err(|x| e(&x))?;
    if let Some(name) = t.acc_name {
        ctx.configure_secondary_axes()
            .y_desc(name)
            .y_label_formatter(&|v| number_label(*v))
            .label_style(("sans-serif", 14))
            .draw()
            .map_err(|x| e(&x))?;
    }
    let loss = colour(0);
    ctx.draw_series(LineSeries::new(
        t.steps.iter().copied(),
        loss.mix(0.55).stroke_width(1),
    ))
    .map_err(|x| e(&x))?;
    ctx.draw_series(LineSeries::new(t.points.iter().copied(), loss.stroke_width(2)))
        .map_err(|x| e(&x))?;
    for &p in &t.points {
        with_marker!(p, 0, loss, |m| ctx
            .draw_series(std::iter::once(m))
            .map_err(|x| e(&x))?);
    }
    if t.acc_name.is_some() {
        let c = colour(1);
        ctx.draw_secondary_series(LineSeries::new(t.accuracy.iter().copied(), c.stroke_width(2)))
            .map_err(|x| e(&x))?;
        for &p in &t.accuracy {
            with_marker!(p, 1, c, |m| ctx
                .draw_secondary_series(std::iter::once(m))
                .map_err(|x| e(&x))?);
        }
    }
    legend(&legend_area, &t.entries)?;
    root.present().map_err(|x| e(&x))
}

/// One series per subject of `summary`: (median, band) of latency in µs
/// and of bus bandwidth in GB/s against bytes.
pub fn bench_series(summary: &Summary) -> (Vec<Series>, Vec<Series>) {
    let mut latency = Vec::new();
    let mut busbw = Vec::new();
    for subject in &summary.subjects {
        let cells: Vec<_> = summary.cells.iter().filter(|c| &c.subject == subject).collect();
        let x = |c: &crate::summary::Cell| c.bytes as f64;
        latency.push(Series {
            name: subject.clone(),
            points: cells.iter().map(|c| (x(c), c.time.median)).collect(),
            band: cells.iter().map(|c| (x(c), c.time.min, c.time.max)).collect(),
        });
        busbw.push(Series {
            name: subject.clone(),
            points: cells.iter().map(|c| (x(c), c.busbw.median)).collect(),
            band: cells.iter().map(|c| (x(c), c.busbw.min, c.busbw.max)).collect(),
        });
    }
    (latency, busbw)
}

/// A link's rate in bits per second from tc's spelling (`1gbit`,
/// `100mbit`, `500kbit`, `2tbit`, `9600bit`; k, m, g, t are powers of 1000),
/// as `scripts/cluster.sh --rate` takes it.
///
/// # Errors
/// [`Error::InvalidArgument`] for anything else, or a rate of zero.
pub fn parse_link_rate(s: &str) -> Result<f64> {
    let lower = s.trim().to_ascii_lowercase();
    let bad = || Error::InvalidArgument {
        what: "link rate",
        reason: format!("`{s}` is not a rate such as 1gbit, 100mbit or 500kbit"),
    };
    let number = lower.strip_suffix("bit").ok_or_else(bad)?;
    let (digits, scale) = match number.chars().last() {
        Some('k') => (&number[..number.len() - 1], 1e3),
        Some('m') => (&number[..number.len() - 1], 1e6),
        Some('g') => (&number[..number.len() - 1], 1e9),
        Some('t') => (&number[..number.len() - 1], 1e12),
        _ => (number, 1.0),
    };
    let value: f64 = digits.parse().map_err(|_| bad())?;
    match value.is_finite() && value > 0.0 {
        true => Ok(value * scale),
        false => Err(bad()),
    }
}

/// The line a link of `bits_per_s` draws on the busbw chart, across the
/// sizes of `busbw`: busbw is bytes over time, so a schedule that keeps
/// the link busy reaches it (a shaper's burst lets small sizes exceed it).
fn link_series(busbw: &[Series], bits_per_s: f64, label: &str) -> Option<Series> {
    let xs = busbw.iter().flat_map(|s| s.points.iter().map(|p| p.0));
    let (lo, hi) = xs.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), x| {
        (a.min(x), b.max(x))
    });
    let gbs = bits_per_s / 8.0 / 1e9;
    (lo <= hi).then(|| Series {
        name: format!("link rate ({label})"),
        points: vec![(lo, gbs), (hi, gbs)],
        band: Vec::new(),
    })
}

/// Draws `latency.{png,svg}` and `busbw.{png,svg}` of `summary` into
/// `out_dir`, titled `title` (default: [`Summary::title`]); returns the
/// files written. With `link` (tc's spelling, see [`parse_link_rate`]) the
/// busbw chart draws the link's rate as a line.
///
/// # Errors
/// A directory that cannot be made, a link rate not understood, or those
/// of [`draw`].
pub fn plot_bench(
    summary: &Summary,
    out_dir: &Path,
    title: Option<&str>,
    link: Option<&str>,
) -> Result<Vec<PathBuf>> {
    let (latency, mut busbw) = bench_series(summary);
    if let Some(rate) = link {
        busbw.extend(link_series(&busbw, parse_link_rate(rate)?, rate));
    }
    std::fs::create_dir_all(out_dir).map_err(|e| plot_error(format!("{}: {e}", out_dir.display())))?;
    let title = title.map_or_else(|| summary.title(), str::to_string);
    // (file stem, title suffix, y label, logarithmic y, series)
    let charts = [
        ("latency", "all-reduce time", "time per call (µs)", true, &latency),
        ("busbw", "bus bandwidth", "busbw (GB/s)", false, &busbw),
    ];
    let mut written = Vec::new();
    for ext in ["png", "svg"] {
        for (stem, what, y_label, log_y, series) in charts {
            let path = out_dir.join(format!("{stem}.{ext}"));
            let chart = Chart {
                title: &format!("{what}: {title}"),
                x_label: if summary.runs > 1 {
                    "message size (bytes); lines: median, bands: min–max over the runs"
                } else {
                    "message size (bytes)"
                },
                y_label,
                log_x: true,
                x_bytes: true,
                log_y,
                series,
            };
            draw(&chart, &path)?;
            written.push(path);
        }
    }
    Ok(written)
}

/// The colour of a timeline event, by its name.
fn timeline_colour(name: &str) -> RGBColor {
    match name {
        "forward+backward" => colour(0),
        "all-reduce" => colour(1),
        "optimizer" => colour(2),
        "wait for buckets" | "gradient exchange" => colour(3),
        "loss agreement" => colour(4),
        "encode" | "decode" => colour(6),
        "end of epoch" => colour(8),
        _ => colour(7),
    }
}

/// Draws the last three steps of a run's timeline ([`crate::train::trace`])
/// to `path` (PNG or SVG): a row per rank and thread, a bar per phase, a
/// tick where each layer's gradient became ready.
///
/// # Errors
/// No steps in `events`, an unknown extension, or a file that cannot be
/// written.
pub fn timeline(events: &[TraceEvent], title: &str, path: &Path) -> Result<()> {
    ensure_font()?;
    let mut steps: Vec<u64> = events
        .iter()
        .filter(|e| e.name == "step")
        .filter_map(|e| e.arg("step"))
        .collect();
    steps.sort_unstable();
    steps.dedup();
    let Some(&last) = steps.last() else {
        return Err(plot_error(format!(
            "{}: no steps in the timeline",
            path.display()
        )));
    };
    let shown = |e: &TraceEvent| e.arg("step").is_some_and(|s| s + 3 > last);
    let window: Vec<&TraceEvent> = events.iter().filter(|e| shown(e)).collect();
    let x0 = window.iter().map(|e| e.ts).fold(f64::INFINITY, f64::min) / 1e3;
    let x1 = window.iter().map(|e| e.end()).fold(0.0f64, f64::max) / 1e3;
    let mut rows: Vec<(usize, u32)> = window.iter().map(|e| (e.pid, e.tid)).collect();
    rows.sort_unstable();
    rows.dedup();
    let mut names: Vec<&str> = Vec::new();
    for e in window.iter().filter(|e| e.ph == "X" && e.name != "step") {
        if !names.contains(&e.name.as_str()) {
            names.push(&e.name);
        }
    }
    let entries: Vec<Entry> = names
        .iter()
        .map(|n| Entry {
            label: (*n).into(),
            colour: timeline_colour(n),
            marker: None,
            width: 8,
        })
        .collect();
    let size = (
        1200,
        140 + 44 * rows.len() as u32 + legend_height(names.iter().copied()),
    );
    let t = TimelineChart {
        title,
        x: x0..x1.max(x0 + 1e-3),
        rows,
        window,
        entries,
    };
    on_backend!(path, size, root => draw_timeline(root, &t))
}

/// What [`timeline`] draws.
struct TimelineChart<'a> {
    title: &'a str,
    x: std::ops::Range<f64>,
    rows: Vec<(usize, u32)>,
    window: Vec<&'a TraceEvent>,
    entries: Vec<Entry>,
}

fn draw_timeline<DB: DrawingBackend>(
    root: DrawingArea<DB, Shift>,
    t: &TimelineChart,
) -> std::result::Result<(), String> {
    use plotters::coord::ranged1d::SegmentValue;
    let e = |e: &dyn std::fmt::Display| e.to_string();
    let (plot_area, legend_area) = with_legend_strip(&root, &t.entries)?;
    let n = t.rows.len() as i32;
    let label = |i: i32| {
        let (rank, tid) = t.rows[(n - 1 - i) as usize];
        let thread = if tid == crate::train::trace::COMM {
            "comm"
        } else {
            "main"
        };
        format!("rank {rank} {thread}")
    };
    let mut ctx = ChartBuilder::on(&plot_area)
        .caption(t.title, ("sans-serif", 22))
        .margin(16)
        .x_label_area_size(48)
        .y_label_area_size(120)
        .build_cartesian_2d(t.x.clone(), (0..n - 1).into_segmented())
        .map_err(|x| e(&x))?;
    ctx.configure_mesh()
        .x_desc("ms since the run's start")
        .y_label_formatter(&|v| match v {
            SegmentValue::CenterOf(i) if (0..n).contains(i) => label(*i),
            _ => String::new(),
        })
        .label_style(("sans-serif", 14))
        .disable_y_mesh()
        .light_line_style(RGBColor(240, 240, 240))
        .draw()
        .map_err(|x| e(&x))?;
    let row = |ev: &TraceEvent| {
        let k = t.rows.iter().position(|r| *r == (ev.pid, ev.tid)).unwrap_or(0) as i32;
        n - 1 - k
    };
    for ev in t.window.iter().filter(|ev| ev.ph == "X" && ev.name != "step") {
        let (a, b, y) = (ev.ts / 1e3, ev.end() / 1e3, row(ev));
        let corners = [(a, SegmentValue::Exact(y)), (b, SegmentValue::Exact(y + 1))];
        ctx.draw_series([
            Rectangle::new(corners.clone(), timeline_colour(&ev.name).filled()),
            Rectangle::new(corners, WHITE.stroke_width(1)),
        ])
        .map_err(|x| e(&x))?;
    }
    for ev in t.window.iter().filter(|ev| ev.ph == "i") {
        let (at, y) = (ev.ts / 1e3, row(ev));
        let tick = vec![(at, SegmentValue::Exact(y)), (at, SegmentValue::Exact(y + 1))];
        ctx.draw_series(std::iter::once(PathElement::new(tick, BLACK.stroke_width(2))))
            .map_err(|x| e(&x))?;
    }
    legend(&legend_area, &t.entries)?;
    root.present().map_err(|x| e(&x))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels() {
        assert_eq!(byte_label(4096.0), "4K");
        assert_eq!(byte_label(16.0 * 1048576.0), "16M");
        assert_eq!(byte_label(512.0), "512");
        assert_eq!(number_label(2.5), "2.5");
        assert_eq!(number_label(10000.0), "10000");
    }

    #[test]
    fn charts_are_written_and_bad_input_is_an_error() {
        let dir = std::env::temp_dir().join(format!("ringreduce-plot-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut text = format!("{}\n", crate::bench::CSV_HEADER);
        for (i, algo) in ["ring", "mpi", "auto:ring"].iter().enumerate() {
            for b in [4u64, 64, 1024] {
                text += &format!(
                    "{b},{},f32,{algo},{}.0,1,2,0.1,0.1,,,,,,,,,2,sum,h,2026-11-23,\n",
                    b / 4,
                    i + 1
                );
            }
        }
        let run = crate::bench::parse_csv(&text).unwrap();
        let mut slow = run.clone();
        for r in &mut slow {
            r.time.avg_us *= 2.0;
        }
        let summary = Summary::new(&[run, slow]).unwrap();
        let (lat, _) = bench_series(&summary);
        assert_eq!(
            lat.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(),
            ["ring", "mpi", "auto"]
        );
        // Median of 1 and 2 µs, band from 1 to 2.
        assert_eq!(lat[0].points[0], (4.0, 1.5));
        assert_eq!(lat[0].band[0], (4.0, 1.0, 2.0));
        let files = plot_bench(&summary, &dir.join("out"), None, Some("1gbit")).unwrap();
        assert_eq!(files.len(), 4);
        // The link's rate is a line on the busbw chart: 1 Gbit/s = 0.125 GB/s.
        let busbw_svg = std::fs::read_to_string(dir.join("out/busbw.svg")).unwrap();
        assert!(busbw_svg.contains("link rate (1gbit)"), "no link line");
        let (_, busbw) = bench_series(&summary);
        let line = link_series(&busbw, parse_link_rate("1gbit").unwrap(), "1gbit").unwrap();
        assert_eq!(line.points, [(4.0, 0.125), (1024.0, 0.125)]); // the sizes of the rows
        assert_eq!(parse_link_rate("100Mbit").unwrap(), 1e8);
        assert_eq!(parse_link_rate("9600bit").unwrap(), 9600.0);
        for bad in ["1gb", "fast", "0mbit", "-1gbit", "gbit", "1e999gbit"] {
            assert!(
                parse_link_rate(bad)
                    .unwrap_err()
                    .to_string()
                    .contains("not a rate"),
                "{bad}"
            );
        }
        for f in &files {
            let head = std::fs::read(f).unwrap();
            let png = head.starts_with(b"\x89PNG");
            let svg = String::from_utf8_lossy(&head).contains("<svg");
            assert!(png || svg, "{} is neither PNG nor SVG", f.display());
        }
        let svg = std::fs::read_to_string(dir.join("out/latency.svg")).unwrap();
        assert!(
            svg.contains("2 ranks, f32 sum, h, 2026-11-23, median of 2 runs"),
            "title missing"
        );
        let chart = Chart {
            title: "t",
            x_label: "x",
            y_label: "y",
            log_x: false,
            x_bytes: false,
            log_y: false,
            series: &lat,
        };
        assert!(
            draw(&chart, &dir.join("chart.bmp")).is_err(),
            "unknown extension accepted"
        );
        let empty = MetricsLog::new(1, "sync:ring", None);
        assert!(training(&empty, "t", &dir.join("t.png")).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
