//! The loss and accuracy curves as an SVG figure of two panels, drawn with plotters.
//! Non-finite points are left out and break their line.

use plotters::coord::Shift;
use plotters::prelude::*;
use std::path::Path;

/// A line: legend entry, points, and whether it is the main line (solid, with markers) or a
/// faint one (thin, translucent: noisy per-step data).
pub type Line<'a> = (&'a str, &'a [(f64, f64)], bool);

/// One chart: title, y-axis label, lines (x is the epoch).
pub struct Panel<'a> {
    title: &'a str,
    y_label: &'a str,
    lines: &'a [Line<'a>],
}

impl<'a> Panel<'a> {
    pub fn new(title: &'a str, y_label: &'a str, lines: &'a [Line<'a>]) -> Self {
        Panel { title, y_label, lines }
    }
}

const COLORS: [RGBColor; 3] = [
    RGBColor(0x1f, 0x77, 0xb4),
    RGBColor(0xd6, 0x27, 0x28),
    RGBColor(0x2c, 0xa0, 0x2c),
];

/// Writes the two panels side by side under `title`.
pub fn two_panels(path: &Path, title: &str, panels: [Panel; 2]) -> Result<(), String> {
    let root = SVGBackend::new(path, (920, 400)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let root = root.titled(title, ("sans-serif", 17)).map_err(|e| e.to_string())?;
    let areas = root.split_evenly((1, 2));
    for (i, (area, panel)) in areas.iter().zip(&panels).enumerate() {
        draw(area, panel, i).map_err(|e| e.to_string())?;
    }
    root.present().map_err(|e| e.to_string())
}

fn draw(area: &DrawingArea<SVGBackend, Shift>, p: &Panel, panel: usize) -> Result<(), Box<dyn std::error::Error>> {
    let finite = |&&(x, y): &&(f64, f64)| x.is_finite() && y.is_finite();
    let points = || p.lines.iter().flat_map(|l| l.1.iter().filter(finite));
    let span = |f: fn(&(f64, f64)) -> f64| {
        points()
            .map(f)
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| (lo.min(v), hi.max(v)))
    };
    let ((x0, x1), (y0, y1)) = (span(|p| p.0), span(|p| p.1));
    // No finite point: an empty unit chart; a single value: a range around it.
    let fix = |(lo, hi): (f64, f64)| match (lo.is_finite(), hi > lo) {
        (false, _) => (0.0, 1.0),
        (true, false) => (lo - 0.5, hi + 0.5),
        (true, true) => (lo, hi + (hi - lo) * 0.05),
    };
    let ((x0, x1), (y0, y1)) = (fix((x0, x1)), fix((y0.min(y1), y1)));
    let mut chart = ChartBuilder::on(area)
        .caption(p.title, ("sans-serif", 15))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(55)
        .build_cartesian_2d(x0..x1, y0..y1)?;
    chart.configure_mesh().x_desc("epoch").y_desc(p.y_label).draw()?;
    for (i, &(name, pts, main)) in p.lines.iter().enumerate() {
        let color = COLORS[(panel * 2 + i) % COLORS.len()];
        let style = if main {
            color.stroke_width(2)
        } else {
            color.mix(0.45).stroke_width(1)
        };
        // Runs of finite points, so a NaN breaks the line instead of ending the series.
        let runs = pts.split(|q| !finite(&q));
        for (r, run) in runs.filter(|r| !r.is_empty()).enumerate() {
            let s = chart.draw_series(LineSeries::new(run.iter().copied(), style))?;
            if r == 0 {
                s.label(name)
                    .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], style));
            }
            if main {
                chart.draw_series(run.iter().map(|&q| Circle::new(q, 3, color.filled())))?;
            }
        }
    }
    chart
        .configure_series_labels()
        .position(if panel == 0 {
            SeriesLabelPosition::UpperRight
        } else {
            SeriesLabelPosition::LowerRight
        })
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.3))
        .draw()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn degenerate_input_still_makes_a_figure() {
        let dir = std::env::temp_dir().join(format!("wgrad-plot-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("p.svg");
        let nan = [(1.0, f64::NAN), (2.0, f64::INFINITY)];
        let one = [(1.0, 0.5)];
        let broken = [(1.0, 2.0), (2.0, f64::NAN), (3.0, 1.0), (4.0, 0.5)];
        let a = [("nan", &nan[..], true), ("broken", &broken[..], false)];
        let b = [("one", &one[..], true), ("empty", &[][..], true)];
        two_panels(&path, "t", [Panel::new("a", "y", &a), Panel::new("b", "y", &b)]).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        assert!(svg.starts_with("<svg") && svg.contains("broken") && svg.contains("one"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
