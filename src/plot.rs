//! PNG and SVG line charts of benchmark (and training) results, with
//! plotters — no Python needed.
//!
//! Text is drawn with the DejaVu Sans font from Debian's `fonts-dejavu-core`
//! (installed by `scripts/setup.sh`), or the TTF named by `RINGREDUCE_FONT`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use plotters::coord::ranged1d::{AsRangedCoord, ValueFormatter};
use plotters::coord::Shift;
use plotters::prelude::*;

use crate::error::{Error, Result};

/// One line of a chart.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// Legend label.
    pub name: String,
    /// (x, y) points in x order.
    pub points: Vec<(f64, f64)>,
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

const FONT_CANDIDATES: [&str; 2] = [
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
];

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
        let mut candidates: Vec<PathBuf> = crate::group::font_from_env().into_iter().collect();
        candidates.extend(FONT_CANDIDATES.iter().map(PathBuf::from));
        let path = candidates.iter().find(|p| p.is_file()).ok_or_else(|| {
            format!(
                "no font for plots: install fonts-dejavu-core or set {} to a .ttf file",
                crate::group::ENV_FONT
            )
        })?;
        let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
        // The font lives for the whole process, as plotters requires.
        let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
        plotters::style::register_font("sans-serif", FontStyle::Normal, bytes)
            .map_err(|_| format!("{}: not a usable TrueType font", path.display()))
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
    let points: Vec<(f64, f64)> = chart
        .series
        .iter()
        .flat_map(|s| s.points.iter().copied())
        .collect();
    let usable = |v: f64, log: bool| v.is_finite() && (!log || v > 0.0);
    let pts: Vec<_> = points
        .into_iter()
        .filter(|&(x, y)| usable(x, chart.log_x) && usable(y, chart.log_y))
        .collect();
    if pts.is_empty() {
        return Err(plot_error(format!("{}: nothing to plot", path.display())));
    }
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for &(x, y) in &pts {
        (x0, x1, y0, y1) = (x0.min(x), x1.max(x), y0.min(y), y1.max(y));
    }
    let pad = |lo: f64, hi: f64, log: bool| {
        if log {
            (lo / 1.5, hi * 1.5)
        } else {
            let span = (hi - lo).max(hi.abs() * 0.1).max(1e-12);
            (
                (lo - 0.05 * span).min(0.0f64.max(lo - 0.05 * span)),
                hi + 0.08 * span,
            )
        }
    };
    let (x0, x1) = pad(x0, x1, chart.log_x);
    let (y0, y1) = pad(y0, y1, chart.log_y);
    let size = (960, 600);
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    let result = match ext.as_str() {
        "png" => {
            let root = BitMapBackend::new(path, size).into_drawing_area();
            draw_on(root, chart, (x0, x1), (y0, y1))
        }
        "svg" => {
            let root = SVGBackend::new(path, size).into_drawing_area();
            draw_on(root, chart, (x0, x1), (y0, y1))
        }
        _ => return check_extension(path),
    };
    result.map_err(|e| plot_error(format!("{}: {e}", path.display())))
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
    let mut ctx = ChartBuilder::on(&root)
        .caption(chart.title, ("sans-serif", 24))
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
        .draw()
        .map_err(|x| e(&x))?;
    for (i, s) in chart.series.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        let style = ShapeStyle::from(color).stroke_width(2);
        ctx.draw_series(LineSeries::new(s.points.iter().copied(), style))
            .map_err(|x| e(&x))?
            .label(s.name.clone())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], style));
        ctx.draw_series(s.points.iter().map(|&p| Circle::new(p, 3, color.filled())))
            .map_err(|x| e(&x))?;
    }
    ctx.configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font(("sans-serif", 14))
        .position(SeriesLabelPosition::UpperLeft)
        .draw()
        .map_err(|x| e(&x))?;
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

/// Draws a training run's loss and test accuracy per epoch to `path` (PNG or SVG).
///
/// # Errors
/// Those of [`draw`].
pub fn training(history: &[crate::train::EpochMetrics], title: &str, path: &Path) -> Result<()> {
    let series = |name: &str, f: fn(&crate::train::EpochMetrics) -> f64| Series {
        name: name.into(),
        points: history.iter().map(|m| (m.epoch as f64, f(m))).collect(),
    };
    let series = [
        series("train loss", |m| m.train_loss),
        series("test accuracy", |m| m.test_accuracy),
    ];
    let chart = Chart {
        title,
        x_label: "epoch",
        y_label: "loss / accuracy",
        log_x: false,
        x_bytes: false,
        log_y: false,
        series: &series,
    };
    draw(&chart, path)
}

/// Reads the CSV written by `ringreduce bench --format csv` into one series
/// per algorithm for latency (µs) and bus bandwidth (GB/s) against bytes.
/// `auto:ring` and friends are all plotted as `auto`.
///
/// # Errors
/// A missing file, or a header or row that is not the bench CSV.
pub fn bench_series(csv: &Path) -> Result<(Vec<Series>, Vec<Series>)> {
    let bad = |reason: String| Error::InvalidArgument {
        what: "bench CSV",
        reason,
    };
    let text = std::fs::read_to_string(csv).map_err(|e| bad(format!("{}: {e}", csv.display())))?;
    let mut lines = text.lines();
    if lines.next() != Some(crate::bench::CSV_HEADER) {
        return Err(bad(format!(
            "{}: not a `ringreduce bench --format csv` file",
            csv.display()
        )));
    }
    let mut latency: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
    let mut busbw: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
    for (n, line) in lines.enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let f: Vec<&str> = line.split(',').collect();
        let num = |i: usize| -> Result<f64> {
            f.get(i)
                .and_then(|v| v.parse::<f64>().ok())
                .ok_or_else(|| bad(format!("{} line {}: bad field {}", csv.display(), n + 2, i + 1)))
        };
        let algo = f
            .get(3)
            .map(|a| a.split(':').next().unwrap_or(a))
            .unwrap_or("")
            .to_string();
        let (bytes, avg, bus) = (num(0)?, num(4)?, num(8)?);
        latency.entry(algo.clone()).or_default().push((bytes, avg));
        busbw.entry(algo).or_default().push((bytes, bus));
    }
    let to_series = |m: BTreeMap<String, Vec<(f64, f64)>>| {
        m.into_iter()
            .map(|(name, points)| Series { name, points })
            .collect::<Vec<_>>()
    };
    Ok((to_series(latency), to_series(busbw)))
}

/// Draws `latency.{png,svg}` and `busbw.{png,svg}` from a bench CSV into
/// `out_dir`; returns the files written.
pub fn plot_bench(csv: &Path, out_dir: &Path, title: &str) -> Result<Vec<PathBuf>> {
    let (latency, busbw) = bench_series(csv)?;
    std::fs::create_dir_all(out_dir).map_err(|e| plot_error(format!("{}: {e}", out_dir.display())))?;
    // (file stem, title suffix, y label, logarithmic y, series)
    let charts = [
        ("latency", "latency", "time (µs)", true, &latency),
        ("busbw", "bus bandwidth", "busbw (GB/s)", false, &busbw),
    ];
    let mut written = Vec::new();
    for ext in ["png", "svg"] {
        for (stem, what, y_label, log_y, series) in charts {
            let path = out_dir.join(format!("{stem}.{ext}"));
            let chart = Chart {
                title: &format!("{title}: {what}"),
                x_label: "message size (bytes)",
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
        let csv = dir.join("b.csv");
        let mut text = format!("{}\n", crate::bench::CSV_HEADER);
        for (i, algo) in ["ring", "mpi", "auto:ring"].iter().enumerate() {
            for b in [4u64, 64, 1024] {
                text += &format!("{b},{},f32,{algo},{}.0,1,2,0.1,0.1,,\n", b / 4, i + 1);
            }
        }
        std::fs::write(&csv, text).unwrap();
        let (lat, _) = bench_series(&csv).unwrap();
        assert_eq!(
            lat.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(),
            ["auto", "mpi", "ring"]
        );
        let files = plot_bench(&csv, &dir.join("out"), "test").unwrap();
        for f in &files {
            let head = std::fs::read(f).unwrap();
            let png = head.starts_with(b"\x89PNG");
            let svg = String::from_utf8_lossy(&head).contains("<svg");
            assert!(png || svg, "{} is neither PNG nor SVG", f.display());
        }
        std::fs::write(&csv, "size,time\n1,2\n").unwrap();
        assert!(bench_series(&csv).is_err());
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
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
