//! Bar chart of the ratios (extension median / baseline median) with the target line, as PNG.
//! Text is rendered by ab_glyph from a TrueType file read at run time, so nothing beyond the
//! bitmap backend is linked in.

use std::error::Error;
use std::path::{Path, PathBuf};

use plotters::coord::ranged1d::SegmentValue;
use plotters::prelude::*;
use plotters::style::{register_font, FontStyle};

pub const FONT_FAMILY: &str = "sans-serif";

const FONT_CANDIDATES: [&str; 6] = [
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
    "/usr/share/fonts/truetype/freefont/FreeSans.ttf",
    "/usr/share/fonts/truetype/noto/NotoSans-Regular.ttf",
];

/// Reads a TrueType font (the given one, or the first well-known system font found) and
/// registers it as `sans-serif` for the chart.
pub fn load_font(explicit: Option<&Path>) -> Result<PathBuf, String> {
    let candidates: Vec<PathBuf> = match explicit {
        Some(p) => vec![p.to_path_buf()],
        None => FONT_CANDIDATES.iter().map(PathBuf::from).collect(),
    };
    let path = candidates
        .into_iter()
        .find(|p| p.is_file())
        .ok_or_else(|| {
            format!(
            "no TrueType font found (looked for {}); install fonts-dejavu-core or pass --font FILE",
            explicit.map_or_else(|| FONT_CANDIDATES.join(", "), |p| p.display().to_string())
        )
        })?;
    let bytes = std::fs::read(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    // The registry keeps fonts for the whole process.
    let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
    for style in [FontStyle::Normal, FontStyle::Bold] {
        register_font(FONT_FAMILY, style, bytes)
            .map_err(|_| format!("{} is not a usable TrueType font", path.display()))?;
    }
    Ok(path)
}

pub struct Bar {
    pub label: String,
    pub ratio: f64,
}

/// Horizontal bars, one per case, a red line at `target` and a grey one at 1.0.
pub fn draw(
    path: &Path,
    title: &str,
    bars: &[Bar],
    target: f64,
) -> Result<(), Box<dyn Error + 'static>> {
    let n = bars.len().max(1);
    let height = 140 + 44 * n as u32;
    let root = BitMapBackend::new(path, (1100, height)).into_drawing_area();
    root.fill(&WHITE)?;

    let finite = bars.iter().map(|b| b.ratio).filter(|r| r.is_finite());
    let x_max = finite.fold(target, f64::max) * 1.15;
    // The first bar goes on top: segment i from the bottom holds bar n - 1 - i.
    let labels: Vec<String> = bars.iter().rev().map(|b| b.label.clone()).collect();
    let row = |i: usize| (n - 1 - i) as i32;

    let mut chart = ChartBuilder::on(&root)
        .caption(title, (FONT_FAMILY, 22))
        .margin(16)
        .x_label_area_size(48)
        .y_label_area_size(300)
        // An i32 range is inclusive in plotters: 0..n-1 gives n segments.
        .build_cartesian_2d(0f64..x_max, (0..n as i32 - 1).into_segmented())?;

    chart
        .configure_mesh()
        .disable_y_mesh()
        .light_line_style(TRANSPARENT)
        .y_labels(n)
        .y_label_formatter(&|v| match v {
            SegmentValue::CenterOf(i) => labels.get(*i as usize).cloned().unwrap_or_default(),
            _ => String::new(),
        })
        .x_desc("extension median / baseline median (lower is better)")
        .label_style((FONT_FAMILY, 15))
        .axis_desc_style((FONT_FAMILY, 16))
        .draw()?;

    chart.draw_series(
        bars.iter()
            .enumerate()
            .filter(|(_, b)| b.ratio.is_finite())
            .map(|(i, b)| {
                let color = if b.ratio <= target {
                    RGBColor(76, 150, 90)
                } else {
                    RGBColor(205, 70, 60)
                };
                let mut bar = Rectangle::new(
                    [
                        (0.0, SegmentValue::Exact(row(i))),
                        (b.ratio, SegmentValue::Exact(row(i) + 1)),
                    ],
                    color.filled(),
                );
                bar.set_margin(8, 8, 0, 0);
                bar
            }),
    )?;
    chart.draw_series(
        bars.iter()
            .enumerate()
            .filter(|(_, b)| b.ratio.is_finite())
            .map(|(i, b)| {
                Text::new(
                    format!("{:.2}", b.ratio),
                    (b.ratio + x_max * 0.012, SegmentValue::CenterOf(row(i))),
                    (FONT_FAMILY, 14).into_font().color(&BLACK),
                )
            }),
    )?;

    let span = |x: f64| {
        vec![
            (x, SegmentValue::Exact(0)),
            (x, SegmentValue::Exact(n as i32)),
        ]
    };
    chart
        .draw_series(LineSeries::new(span(1.0), BLACK.mix(0.35).stroke_width(1)))?
        .label("1.0 = as fast as the baseline")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLACK.mix(0.35)));
    chart
        .draw_series(LineSeries::new(span(target), RED.stroke_width(2)))?
        .label(format!("target {target}"))
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], RED.stroke_width(2)));
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK.mix(0.4))
        .label_font((FONT_FAMILY, 14))
        .draw()?;

    root.present()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_a_png() {
        if let Err(e) = load_font(None) {
            eprintln!("skipped: {e}");
            return;
        }
        let path = std::env::temp_dir().join("backup_ext_bench-chart-test.png");
        let bars: Vec<Bar> = [("first", 0.9), ("second", 1.3), ("third", f64::NAN)]
            .into_iter()
            .map(|(label, ratio)| Bar {
                label: label.into(),
                ratio,
            })
            .collect();
        draw(&path, "test chart", &bars, 1.05).expect("drawing the chart");
        let bytes = std::fs::read(&path).expect("reading the chart back");
        assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
    }
}
