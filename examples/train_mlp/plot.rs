//! A small dependency-free SVG line-plot writer: panels side by side, each with axes, "nice"
//! tick labels, axis labels, a legend and a title, and a title over the whole figure.
//!
//! Non-finite points are skipped (the line breaks there); a panel without any finite point
//! says "no data".

use std::fmt::Write;
use std::path::Path;

/// One line in a panel.
pub struct Series {
    /// Legend entry.
    pub name: String,
    /// Stroke colour (any SVG colour).
    pub color: &'static str,
    /// (x, y) points in drawing order.
    pub points: Vec<(f64, f64)>,
    /// Stroke width in pixels.
    pub width: f64,
    /// Draw a dot on every point.
    pub markers: bool,
    /// Stroke opacity in (0, 1].
    pub opacity: f64,
}

impl Series {
    /// A solid line with markers.
    pub fn new(name: impl Into<String>, color: &'static str, points: Vec<(f64, f64)>) -> Series {
        Series {
            name: name.into(),
            color,
            points,
            width: 2.0,
            markers: true,
            opacity: 1.0,
        }
    }

    /// A thin, translucent line without markers (for noisy per-step data).
    pub fn faint(name: impl Into<String>, color: &'static str, points: Vec<(f64, f64)>) -> Series {
        Series {
            name: name.into(),
            color,
            points,
            width: 1.0,
            markers: false,
            opacity: 0.45,
        }
    }
}

/// One chart.
pub struct Panel {
    /// Title above the chart.
    pub title: String,
    /// Label under the x axis.
    pub x_label: String,
    /// Label left of the y axis.
    pub y_label: String,
    /// The lines.
    pub series: Vec<Series>,
    /// Fixed y range; `None` fits the data.
    pub y_range: Option<(f64, f64)>,
    /// Where the legend goes (pick the corner the lines avoid).
    pub legend: Corner,
}

/// A corner of the plot area.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Corner {
    /// Top right.
    TopRight,
    /// Bottom right.
    BottomRight,
}

const PANEL_W: f64 = 460.0;
const PANEL_H: f64 = 340.0;
const TOP: f64 = 44.0;
const MARGIN_L: f64 = 70.0;
const MARGIN_R: f64 = 20.0;
const MARGIN_T: f64 = 34.0;
const MARGIN_B: f64 = 52.0;

/// Renders the figure as SVG text.
pub fn render(title: &str, panels: &[Panel]) -> String {
    let width = PANEL_W * panels.len().max(1) as f64;
    let height = TOP + PANEL_H;
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" font-family="Helvetica, Arial, sans-serif">"#
    );
    let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{}" y="28" text-anchor="middle" font-size="17" font-weight="bold">{}</text>"#,
        width / 2.0,
        esc(title)
    );
    for (i, p) in panels.iter().enumerate() {
        render_panel(&mut s, p, i as f64 * PANEL_W, TOP);
    }
    s.push_str("</svg>\n");
    s
}

/// Renders the figure and writes it to `path`.
pub fn write_svg(path: &Path, title: &str, panels: &[Panel]) -> std::io::Result<()> {
    std::fs::write(path, render(title, panels))
}

fn render_panel(s: &mut String, p: &Panel, ox: f64, oy: f64) {
    let (x0, y0) = (ox + MARGIN_L, oy + MARGIN_T);
    let (w, h) = (PANEL_W - MARGIN_L - MARGIN_R, PANEL_H - MARGIN_T - MARGIN_B);
    let finite = |&(x, y): &(f64, f64)| x.is_finite() && y.is_finite();
    let pts: Vec<(f64, f64)> = p
        .series
        .iter()
        .flat_map(|se| se.points.iter().copied())
        .filter(finite)
        .collect();

    let _ = writeln!(
        s,
        r#"<text x="{}" y="{}" text-anchor="middle" font-size="14" font-weight="bold">{}</text>"#,
        x0 + w / 2.0,
        oy + 20.0,
        esc(&p.title)
    );
    let (xlo, xhi) = span(pts.iter().map(|q| q.0));
    let (ylo, yhi) = p.y_range.unwrap_or_else(|| span(pts.iter().map(|q| q.1)));
    let xt = ticks(xlo, xhi, 6);
    let yt = ticks(ylo, yhi, 6);
    let (xa, xb) = (
        xt.first().copied().unwrap_or(xlo).min(xlo),
        xt.last().copied().unwrap_or(xhi).max(xhi),
    );
    let (ya, yb) = (
        yt.first().copied().unwrap_or(ylo).min(ylo),
        yt.last().copied().unwrap_or(yhi).max(yhi),
    );
    let sx = |x: f64| x0 + (x - xa) / (xb - xa) * w;
    let sy = |y: f64| y0 + h - (y - ya) / (yb - ya) * h;

    // Grid, ticks and tick labels.
    let xdec = decimals(&xt);
    for &t in &xt {
        let x = sx(t);
        let _ = writeln!(
            s,
            r##"<line x1="{x:.1}" y1="{y0:.1}" x2="{x:.1}" y2="{:.1}" stroke="#e6e6e6"/>"##,
            y0 + h
        );
        let _ = writeln!(
            s,
            r##"<line x1="{x:.1}" y1="{:.1}" x2="{x:.1}" y2="{:.1}" stroke="#333"/>"##,
            y0 + h,
            y0 + h + 5.0
        );
        let _ = writeln!(
            s,
            r#"<text x="{x:.1}" y="{:.1}" text-anchor="middle" font-size="11">{:.*}</text>"#,
            y0 + h + 18.0,
            xdec,
            t
        );
    }
    let ydec = decimals(&yt);
    for &t in &yt {
        let y = sy(t);
        let _ = writeln!(
            s,
            r##"<line x1="{x0:.1}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#e6e6e6"/>"##,
            x0 + w
        );
        let _ = writeln!(
            s,
            r##"<line x1="{:.1}" y1="{y:.1}" x2="{x0:.1}" y2="{y:.1}" stroke="#333"/>"##,
            x0 - 5.0
        );
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="end" font-size="11">{:.*}</text>"#,
            x0 - 8.0,
            y + 4.0,
            ydec,
            t
        );
    }
    // Axes and their labels.
    let _ = writeln!(
        s,
        r##"<rect x="{x0:.1}" y="{y0:.1}" width="{w:.1}" height="{h:.1}" fill="none" stroke="#333"/>"##
    );
    let _ = writeln!(
        s,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle" font-size="12">{}</text>"#,
        x0 + w / 2.0,
        y0 + h + 38.0,
        esc(&p.x_label)
    );
    let (lx, ly) = (ox + 18.0, y0 + h / 2.0);
    let _ = writeln!(
        s,
        r#"<text x="{lx:.1}" y="{ly:.1}" text-anchor="middle" font-size="12" transform="rotate(-90 {lx:.1} {ly:.1})">{}</text>"#,
        esc(&p.y_label)
    );
    if pts.is_empty() {
        let _ = writeln!(
            s,
            r##"<text x="{:.1}" y="{:.1}" text-anchor="middle" font-size="13" fill="#888">no data</text>"##,
            x0 + w / 2.0,
            y0 + h / 2.0
        );
    }

    // Lines, clipped to the plot area, broken at non-finite points.
    let clip = format!("clip{}", ox as i64);
    let _ = writeln!(
        s,
        r#"<clipPath id="{clip}"><rect x="{x0:.1}" y="{y0:.1}" width="{w:.1}" height="{h:.1}"/></clipPath>"#
    );
    let _ = writeln!(s, r#"<g clip-path="url(#{clip})">"#);
    for se in &p.series {
        let mut d = String::new();
        let mut pen_down = false;
        for &(x, y) in &se.points {
            if !(x.is_finite() && y.is_finite()) {
                pen_down = false;
                continue;
            }
            let _ = write!(d, "{}{:.2},{:.2} ", if pen_down { "L" } else { "M" }, sx(x), sy(y));
            pen_down = true;
        }
        if !d.is_empty() {
            let _ = writeln!(
                s,
                r#"<path d="{}" fill="none" stroke="{}" stroke-width="{}" stroke-opacity="{}" stroke-linejoin="round"/>"#,
                d.trim_end(),
                se.color,
                se.width,
                se.opacity
            );
        }
        if se.markers {
            for &(x, y) in se.points.iter().filter(|q| finite(q)) {
                let _ = writeln!(
                    s,
                    r#"<circle cx="{:.2}" cy="{:.2}" r="2.8" fill="{}"/>"#,
                    sx(x),
                    sy(y),
                    se.color
                );
            }
        }
    }
    s.push_str("</g>\n");

    // Legend, top right inside the plot area.
    if !p.series.is_empty() {
        let longest = p.series.iter().map(|se| se.name.chars().count()).max().unwrap_or(0) as f64;
        let lw = 36.0 + longest * 6.4;
        let lh = 8.0 + 18.0 * p.series.len() as f64;
        let bx = x0 + w - lw - 8.0;
        let by = match p.legend {
            Corner::TopRight => y0 + 8.0,
            Corner::BottomRight => y0 + h - lh - 8.0,
        };
        let _ = writeln!(
            s,
            r##"<rect x="{bx:.1}" y="{by:.1}" width="{lw:.1}" height="{lh:.1}" fill="white" fill-opacity="0.85" stroke="#bbb"/>"##
        );
        for (i, se) in p.series.iter().enumerate() {
            let y = by + 15.0 + 18.0 * i as f64;
            let _ = writeln!(
                s,
                r#"<line x1="{:.1}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="{}" stroke-width="{}" stroke-opacity="{}"/>"#,
                bx + 6.0,
                bx + 26.0,
                se.color,
                se.width.max(2.0),
                se.opacity
            );
            let _ = writeln!(
                s,
                r#"<text x="{:.1}" y="{:.1}" font-size="11">{}</text>"#,
                bx + 31.0,
                y + 4.0,
                esc(&se.name)
            );
        }
    }
}

/// Min and max of the values, widened when empty or degenerate.
fn span(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| (a.min(v), b.max(v)));
    if !(lo.is_finite() && hi.is_finite()) {
        return (0.0, 1.0);
    }
    if hi - lo <= f64::EPSILON * hi.abs().max(1.0) {
        let pad = if lo == 0.0 { 1.0 } else { lo.abs() * 0.1 };
        return (lo - pad, hi + pad);
    }
    (lo, hi)
}

/// "Nice" tick positions (steps of 1, 2 or 5 × 10^k) covering [lo, hi] with about `n` ticks.
fn ticks(lo: f64, hi: f64, n: usize) -> Vec<f64> {
    let raw = (hi - lo) / (n.max(2) - 1) as f64;
    if !(raw.is_finite() && raw > 0.0) {
        return vec![lo, hi];
    }
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|&s| s >= raw)
        .unwrap_or(10.0 * mag);
    let first = (lo / step).floor() * step;
    let mut out = Vec::new();
    let mut k = 0;
    loop {
        let t = first + k as f64 * step;
        // Snap values like 0.30000000000000004 and -0.0 to clean ones.
        let t = (t / step).round() * step + 0.0;
        out.push(t);
        if t >= hi - step * 1e-9 || k > 50 {
            break;
        }
        k += 1;
    }
    out
}

/// Decimals needed to print the ticks distinctly.
fn decimals(ticks: &[f64]) -> usize {
    if ticks.len() < 2 {
        return 2;
    }
    let step = (ticks[1] - ticks[0]).abs();
    if step >= 1.0 {
        0
    } else {
        (-step.log10().floor()) as usize
    }
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nice_ticks() {
        let t = ticks(0.0, 1.0, 6);
        assert_eq!(t.len(), 6);
        assert!(t
            .iter()
            .zip([0.0, 0.2, 0.4, 0.6, 0.8, 1.0])
            .all(|(a, b)| (a - b).abs() < 1e-12));
        let t = ticks(1.0, 20.0, 6);
        assert_eq!(t.first(), Some(&0.0));
        assert!(*t.last().unwrap() >= 20.0);
        assert_eq!(decimals(&ticks(0.05, 0.31, 6)), 1);
        assert_eq!(decimals(&ticks(0.05, 0.15, 6)), 2);
    }

    #[test]
    fn renders_degenerate_input() {
        let svg = render(
            "t",
            &[Panel {
                title: "a".into(),
                x_label: "x".into(),
                y_label: "y".into(),
                series: vec![],
                y_range: None,
                legend: Corner::TopRight,
            }],
        );
        assert!(svg.contains("no data"));
        let one = Series::new("s", "red", vec![(1.0, f64::NAN), (1.0, 2.0)]);
        let svg = render(
            "t<&>",
            &[Panel {
                title: "a".into(),
                x_label: "x".into(),
                y_label: "y".into(),
                series: vec![one],
                y_range: None,
                legend: Corner::BottomRight,
            }],
        );
        assert!(svg.contains("t&lt;&amp;&gt;"));
        assert!(!svg.contains("NaN"));
    }
}
