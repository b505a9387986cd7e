//! What a training node writes besides the model: `curves.parquet`, `curves.png`,
//! `metrics.json`.

use std::path::Path;

use pipeline_formats::{batch, f64_column, i64_column, write_parquet};
use plotters::prelude::*;
use serde_json::json;

use crate::train::{CurveRow, TrainSummary};

/// `curves.parquet`: one row per epoch (`epoch`, `step` as int64; the rest float64, NaN where
/// there is no validation split). No wall-clock column: the file is a function of the node's
/// key (timings are measurements, see `kinds::run_training`).
pub fn write_curves(path: &Path, curves: &[CurveRow]) -> anyhow::Result<()> {
    let val = |f: fn(&crate::train::ValScores) -> f64| {
        f64_column(
            curves
                .iter()
                .map(move |c| c.val.as_ref().map_or(f64::NAN, f)),
        )
    };
    let table = batch(vec![
        ("epoch", i64_column(curves.iter().map(|c| c.epoch as i64))),
        ("step", i64_column(curves.iter().map(|c| c.step as i64))),
        (
            "train_loss",
            f64_column(curves.iter().map(|c| c.train_loss)),
        ),
        ("lr", f64_column(curves.iter().map(|c| c.lr))),
        ("val_map10", val(|v| v.map10)),
        ("val_r1", val(|v| v.r1)),
        ("val_r5", val(|v| v.r5)),
        ("val_r10", val(|v| v.r10)),
    ])?;
    write_parquet(path, &table)
}

const FONT: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";

fn font_available() -> bool {
    static FOUND: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *FOUND.get_or_init(|| {
        let Ok(bytes) = std::fs::read(FONT) else {
            return false;
        };
        let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
        plotters::style::register_font("sans-serif", FontStyle::Normal, bytes).is_ok()
    })
}

/// `curves.png`: training loss (top, blue) and validation mAP@10 (bottom, red) per epoch.
/// Titles and tick labels are drawn only where DejaVu Sans is installed.
pub fn plot_curves(path: &Path, curves: &[CurveRow]) -> anyhow::Result<()> {
    let text = font_available();
    let root = BitMapBackend::new(path, (800, 600)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| anyhow::anyhow!("{e}"))?;
    let panels = root.split_evenly((2, 1));
    let loss: Vec<(f64, f64)> = curves
        .iter()
        .map(|c| (c.epoch as f64, c.train_loss))
        .collect();
    let map: Vec<(f64, f64)> = curves
        .iter()
        .filter_map(|c| c.val.map(|v| (c.epoch as f64, v.map10)))
        .collect();
    for (area, (points, color, title)) in panels
        .iter()
        .zip([(loss, BLUE, "train loss"), (map, RED, "val mAP@10")])
    {
        if points.is_empty() {
            continue;
        }
        let x_max = points.iter().map(|p| p.0).fold(1.0, f64::max) + 0.5;
        let (lo, hi) = points
            .iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), p| {
                (l.min(p.1), h.max(p.1))
            });
        let pad = ((hi - lo) * 0.1).max(1e-3);
        let mut builder = ChartBuilder::on(area);
        builder.margin(10);
        if text {
            builder
                .caption(title, ("sans-serif", 18))
                .x_label_area_size(30)
                .y_label_area_size(50);
        }
        let mut chart = builder
            .build_cartesian_2d(0.5..x_max, (lo - pad)..(hi + pad))
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        if text {
            chart
                .configure_mesh()
                .x_desc("epoch")
                .draw()
                .map_err(|e| anyhow::anyhow!("{e}"))?;
        }
        chart
            .draw_series(LineSeries::new(
                points.iter().copied(),
                color.stroke_width(2),
            ))
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        chart
            .draw_series(points.iter().map(|&p| Circle::new(p, 3, color.filled())))
            .map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    root.present().map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(())
}

/// `metrics.json`: the kept epoch, its validation scores and the device. No timing or
/// throughput: those differ between two runs of one key and go to the manifest
/// ([`pipeline_api::Reporter::measure`]).
pub fn metrics_json(summary: &TrainSummary, device: &str) -> serde_json::Value {
    let val = summary
        .best_val
        .map(|v| json!({"map10": v.map10, "r1": v.r1, "r5": v.r5, "r10": v.r10}));
    json!({
        "best_epoch": summary.best_epoch,
        "val": val,
        "device": device,
    })
}
