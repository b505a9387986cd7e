//! Small PNG charts (plotters, bitmap backend). Text is drawn with a system TrueType font
//! (DejaVu Sans or Liberation Sans, looked up at run time, never downloaded); without one the
//! charts are drawn without any text (titles, tick labels and legends are left out).

use std::path::Path;
use std::sync::OnceLock;

use anyhow::anyhow;
use plotters::prelude::*;
use plotters::style::FontStyle;

const FONT_FAMILY: &str = "sans-serif";
const FONT_CANDIDATES: &[&str] = &[
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu-sans-fonts/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
    "/usr/share/fonts/liberation/LiberationSans-Regular.ttf",
    "/Library/Fonts/Arial.ttf",
    "/System/Library/Fonts/Supplemental/Arial.ttf",
];

/// Registers the first system font found (once); `true` if text can be drawn.
pub fn font_available() -> bool {
    static FOUND: OnceLock<bool> = OnceLock::new();
    *FOUND.get_or_init(|| {
        FONT_CANDIDATES.iter().any(|path| {
            let Ok(bytes) = std::fs::read(path) else {
                return false;
            };
            let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
            plotters::style::register_font(FONT_FAMILY, FontStyle::Normal, bytes).is_ok()
        })
    })
}

/// One line of a chart.
#[derive(Debug, Clone)]
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
}

/// One panel of a line chart.
#[derive(Debug, Clone)]
pub struct LinePanel {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub series: Vec<Series>,
}

/// One panel of a bar chart: bar heights in order, highlighted bars drawn in red.
#[derive(Debug, Clone)]
pub struct BarPanel {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub values: Vec<f64>,
    pub highlighted: Vec<bool>,
}

fn palette(i: usize) -> RGBColor {
    const COLORS: [RGBColor; 8] = [
        RGBColor(31, 119, 180),
        RGBColor(255, 127, 14),
        RGBColor(44, 160, 44),
        RGBColor(214, 39, 40),
        RGBColor(148, 103, 189),
        RGBColor(140, 86, 75),
        RGBColor(227, 119, 194),
        RGBColor(127, 127, 127),
    ];
    COLORS[i % COLORS.len()]
}

fn range_of(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = values
        .filter(|v| v.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
            (a.min(v), b.max(v))
        });
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    if hi - lo < 1e-12 {
        return (lo - 0.5, hi + 0.5);
    }
    let pad = (hi - lo) * 0.05;
    (lo - pad, hi + pad)
}

fn tick(x: &f64) -> String {
    if (x - x.round()).abs() < 1e-9 {
        format!("{}", x.round())
    } else {
        format!("{x:.2}")
    }
}

fn err<E: std::fmt::Debug>(e: E) -> anyhow::Error {
    anyhow!("plotting: {e:?}")
}

/// Draws line panels side by side into one PNG (`text`: whether to draw any text).
pub fn line_panels(path: &Path, panels: &[LinePanel], text: bool) -> anyhow::Result<()> {
    let text = text && font_available();
    let (w, h) = (520 * panels.len().max(1) as u32, 400);
    let root = BitMapBackend::new(path, (w, h)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let areas = root.split_evenly((1, panels.len().max(1)));
    for (panel, area) in panels.iter().zip(&areas) {
        let (x0, x1) = range_of(
            panel
                .series
                .iter()
                .flat_map(|s| s.points.iter().map(|p| p.0)),
        );
        let (y0, y1) = range_of(
            panel
                .series
                .iter()
                .flat_map(|s| s.points.iter().map(|p| p.1)),
        );
        let mut builder = ChartBuilder::on(area);
        builder.margin(12);
        if text {
            builder
                .caption(&panel.title, (FONT_FAMILY, 18))
                .x_label_area_size(40)
                .y_label_area_size(56);
        }
        let mut chart = builder.build_cartesian_2d(x0..x1, y0..y1).map_err(err)?;
        if text {
            chart
                .configure_mesh()
                .x_desc(&panel.x_label)
                .y_desc(&panel.y_label)
                .x_label_formatter(&tick)
                .label_style((FONT_FAMILY, 13))
                .light_line_style(RGBColor(235, 235, 235))
                .draw()
                .map_err(err)?;
        } else {
            chart
                .plotting_area()
                .draw(&Rectangle::new([(x0, y0), (x1, y1)], BLACK.stroke_width(1)))
                .map_err(err)?;
        }
        for (i, s) in panel.series.iter().enumerate() {
            let color = palette(i);
            let pts: Vec<(f64, f64)> = s
                .points
                .iter()
                .copied()
                .filter(|p| p.0.is_finite() && p.1.is_finite())
                .collect();
            let drawn = chart
                .draw_series(LineSeries::new(pts.clone(), color.stroke_width(2)))
                .map_err(err)?;
            if text {
                drawn.label(&s.name).legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 16, y)], color.stroke_width(2))
                });
            }
            chart
                .draw_series(pts.iter().map(|&p| Circle::new(p, 3, color.filled())))
                .map_err(err)?;
        }
        if text && !panel.series.is_empty() {
            chart
                .configure_series_labels()
                .background_style(WHITE.mix(0.8))
                .border_style(RGBColor(180, 180, 180))
                .label_font((FONT_FAMILY, 12))
                .position(SeriesLabelPosition::UpperRight)
                .draw()
                .map_err(err)?;
        }
    }
    root.present().map_err(err)?;
    Ok(())
}

/// Draws bar panels in a grid (two columns) into one PNG.
pub fn bar_panels(path: &Path, panels: &[BarPanel], text: bool) -> anyhow::Result<()> {
    let text = text && font_available();
    let cols = panels.len().clamp(1, 2);
    let rows = panels.len().div_ceil(cols).max(1);
    let root = BitMapBackend::new(path, (560 * cols as u32, 340 * rows as u32)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let areas = root.split_evenly((rows, cols));
    for (panel, area) in panels.iter().zip(&areas) {
        let n = panel.values.len().max(1);
        let top = panel
            .values
            .iter()
            .copied()
            .filter(|v| v.is_finite())
            .fold(0.0f64, f64::max);
        let y1 = if top > 0.0 { top * 1.08 } else { 1.0 };
        let y0 = panel
            .values
            .iter()
            .copied()
            .filter(|v| v.is_finite())
            .fold(0.0f64, f64::min);
        let mut builder = ChartBuilder::on(area);
        builder.margin(12);
        if text {
            builder
                .caption(&panel.title, (FONT_FAMILY, 14))
                .x_label_area_size(36)
                .y_label_area_size(60);
        }
        let (x0, x1) = (0.5, n as f64 + 0.5);
        let mut chart = builder.build_cartesian_2d(x0..x1, y0..y1).map_err(err)?;
        if text {
            chart
                .configure_mesh()
                .disable_x_mesh()
                .x_desc(&panel.x_label)
                .y_desc(&panel.y_label)
                .x_labels(n.min(10))
                .x_label_formatter(&|x| {
                    if (x - x.round()).abs() < 1e-9 {
                        format!("{}", x.round())
                    } else {
                        String::new()
                    }
                })
                .label_style((FONT_FAMILY, 12))
                .light_line_style(RGBColor(235, 235, 235))
                .draw()
                .map_err(err)?;
        } else {
            chart
                .plotting_area()
                .draw(&Rectangle::new([(x0, y0), (x1, y1)], BLACK.stroke_width(1)))
                .map_err(err)?;
        }
        let red = RGBColor(214, 39, 40);
        // A light band behind highlighted bars keeps them visible when their value is ~0.
        chart
            .draw_series(
                panel
                    .values
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| panel.highlighted.get(*i).copied().unwrap_or(false))
                    .map(|(i, _)| {
                        let x = i as f64 + 1.0;
                        Rectangle::new([(x - 0.5, y0), (x + 0.5, y1)], red.mix(0.18).filled())
                    }),
            )
            .map_err(err)?;
        chart
            .draw_series(panel.values.iter().enumerate().map(|(i, &v)| {
                let hot = panel.highlighted.get(i).copied().unwrap_or(false);
                let color = if hot { red } else { RGBColor(31, 119, 180) };
                let x = i as f64 + 1.0;
                Rectangle::new(
                    [
                        (x - 0.4, 0.0f64.max(y0)),
                        (x + 0.4, if v.is_finite() { v } else { 0.0 }),
                    ],
                    color.filled(),
                )
            }))
            .map_err(err)?;
    }
    root.present().map_err(err)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charts_are_written_with_and_without_text() {
        let dir = tempfile::tempdir().unwrap();
        let panel = LinePanel {
            title: "loss".into(),
            x_label: "epoch".into(),
            y_label: "loss".into(),
            series: vec![
                Series {
                    name: "a".into(),
                    points: vec![(1.0, 3.0), (2.0, 2.0), (3.0, 1.5)],
                },
                Series {
                    name: "b".into(),
                    points: vec![(1.0, 2.5), (2.0, f64::NAN), (3.0, 1.0)],
                },
            ],
        };
        for text in [true, false] {
            let p = dir.path().join(format!("lines-{text}.png"));
            line_panels(&p, &[panel.clone(), panel.clone()], text).unwrap();
            assert!(std::fs::metadata(&p).unwrap().len() > 1000);
            let b = BarPanel {
                title: "caption".into(),
                x_label: "clip rank".into(),
                y_label: "p".into(),
                values: vec![0.5, 0.3, 0.1, 0.0],
                highlighted: vec![false, true, false, false],
            };
            let p = dir.path().join(format!("bars-{text}.png"));
            bar_panels(&p, &[b.clone(), b.clone(), b], text).unwrap();
            assert!(std::fs::metadata(&p).unwrap().len() > 1000);
        }
    }
}
