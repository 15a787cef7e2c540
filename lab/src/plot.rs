//! Line charts and heat maps as SVG (plotters' SVG backend: no fonts or system libraries needed).

use std::path::Path;

use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::error::{Error, Result};

/// One line of a chart.
#[derive(Clone, Debug, PartialEq)]
pub struct Series {
    /// Legend label.
    pub name: String,
    /// `(x, y)` points, in x order; non-finite points are skipped.
    pub points: Vec<(f64, f64)>,
}

fn plot_err(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::Usage(format!("{}: {e}", path.display()))
}

/// Draws `series` as lines with markers into an SVG file.
pub fn line_chart(path: &Path, title: &str, x_label: &str, y_label: &str, series: &[Series]) -> Result<()> {
    let finite = || {
        series
            .iter()
            .flat_map(|s| s.points.iter())
            .filter(|p| p.0.is_finite() && p.1.is_finite())
    };
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for &(x, y) in finite() {
        x0 = x0.min(x);
        x1 = x1.max(x);
        y0 = y0.min(y);
        y1 = y1.max(y);
    }
    if x0 > x1 {
        (x0, x1, y0, y1) = (0.0, 1.0, 0.0, 1.0);
    }
    let pad = ((y1 - y0) * 0.08).max(1e-3);
    let root = SVGBackend::new(path, (820, 520)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| plot_err(path, e))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 22))
        .margin(16)
        .x_label_area_size(44)
        .y_label_area_size(64)
        .build_cartesian_2d(x0..x1.max(x0 + 1e-9), (y0 - pad)..(y1 + pad))
        .map_err(|e| plot_err(path, e))?;
    chart
        .configure_mesh()
        .x_desc(x_label)
        .y_desc(y_label)
        .draw()
        .map_err(|e| plot_err(path, e))?;
    for (i, s) in series.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        let pts: Vec<(f64, f64)> = s
            .points
            .iter()
            .copied()
            .filter(|p| p.0.is_finite() && p.1.is_finite())
            .collect();
        chart
            .draw_series(LineSeries::new(pts.clone(), color.stroke_width(2)))
            .map_err(|e| plot_err(path, e))?
            .label(s.name.clone())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2)));
        chart
            .draw_series(pts.into_iter().map(|p| Circle::new(p, 3, color.filled())))
            .map_err(|e| plot_err(path, e))?;
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(|e| plot_err(path, e))?;
    root.present().map_err(|e| plot_err(path, e))?;
    Ok(())
}

/// A table of values in [0, 1] drawn as coloured cells ([`heat_map`]).
#[derive(Clone, Debug, PartialEq)]
pub struct HeatMap<'a> {
    /// The chart's title (also the key to the colours and labels).
    pub title: &'a str,
    /// Row names, top to bottom.
    pub rows: Vec<String>,
    /// Column names, left to right.
    pub columns: Vec<String>,
    /// One value per cell, `values[row][column]`: 0 is red, 1 green; not finite is grey.
    pub values: Vec<Vec<f64>>,
    /// The text of each cell, `labels[row][column]`.
    pub labels: Vec<Vec<String>>,
}

/// The colour of a heat-map value: red (0) through yellow to green (1), grey when not finite.
fn heat_colour(v: f64) -> RGBColor {
    if !v.is_finite() {
        return RGBColor(210, 210, 210);
    }
    let v = v.clamp(0.0, 1.0);
    let (r, g) = if v < 0.5 {
        (1.0, 2.0 * v)
    } else {
        (2.0 * (1.0 - v), 1.0)
    };
    // Pastel: halfway to white, so that the cell's label stays readable.
    let c = |x: f64| (127.5 + 127.5 * x).round() as u8;
    RGBColor(c(r * 0.85), c(g * 0.85), c(0.25))
}

/// Draws `map` into an SVG file: rows named on the left, columns named
/// (vertically) on top, each cell filled by its value and labelled with its text.
pub fn heat_map(path: &Path, map: &HeatMap<'_>) -> Result<()> {
    let (cell_w, cell_h) = (44i32, 26i32);
    let longest = |names: &[String]| names.iter().map(|n| n.chars().count()).max().unwrap_or(0) as i32;
    let left = 16 + 7 * longest(&map.rows);
    let top = 56 + 7 * longest(&map.columns);
    let (cols, rows) = (map.columns.len() as i32, map.rows.len() as i32);
    let size = (
        (left + cols * cell_w + 16).max(480) as u32,
        (top + rows * cell_h + 16) as u32,
    );
    let root = SVGBackend::new(path, size).into_drawing_area();
    root.fill(&WHITE).map_err(|e| plot_err(path, e))?;
    let draw_err = |e| plot_err(path, e);
    root.draw(&Text::new(
        map.title.to_string(),
        (16, 14),
        ("sans-serif", 16).into_font(),
    ))
    .map_err(draw_err)?;
    let row_style = ("sans-serif", 12)
        .into_font()
        .color(&BLACK)
        .pos(Pos::new(HPos::Right, VPos::Center));
    let column_style = ("sans-serif", 12)
        .into_font()
        .transform(FontTransform::Rotate270)
        .color(&BLACK)
        .pos(Pos::new(HPos::Left, VPos::Center));
    let cell_style = ("sans-serif", 11)
        .into_font()
        .color(&BLACK)
        .pos(Pos::new(HPos::Center, VPos::Center));
    for (c, name) in map.columns.iter().enumerate() {
        let x = left + c as i32 * cell_w + cell_w / 2;
        root.draw(&Text::new(name.clone(), (x, top - 6), column_style.clone()))
            .map_err(draw_err)?;
    }
    for (r, name) in map.rows.iter().enumerate() {
        let y = top + r as i32 * cell_h;
        root.draw(&Text::new(name.clone(), (left - 8, y + cell_h / 2), row_style.clone()))
            .map_err(draw_err)?;
        for c in 0..map.columns.len() {
            let x = left + c as i32 * cell_w;
            let v = map
                .values
                .get(r)
                .and_then(|row| row.get(c))
                .copied()
                .unwrap_or(f64::NAN);
            root.draw(&Rectangle::new(
                [(x, y), (x + cell_w, y + cell_h)],
                heat_colour(v).filled(),
            ))
            .map_err(draw_err)?;
            root.draw(&Rectangle::new(
                [(x, y), (x + cell_w, y + cell_h)],
                WHITE.stroke_width(1),
            ))
            .map_err(draw_err)?;
            if let Some(label) = map.labels.get(r).and_then(|row| row.get(c)) {
                root.draw(&Text::new(
                    label.clone(),
                    (x + cell_w / 2, y + cell_h / 2),
                    cell_style.clone(),
                ))
                .map_err(draw_err)?;
            }
        }
    }
    root.present().map_err(|e| plot_err(path, e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heat_map_colours_and_labels_every_cell() {
        assert_eq!(heat_colour(0.0), RGBColor(236, 128, 159));
        assert_eq!(heat_colour(1.0), RGBColor(128, 236, 159));
        assert_eq!(heat_colour(f64::NAN), RGBColor(210, 210, 210));
        let path = std::env::temp_dir().join(format!("tracemark-heat-map-{}.svg", std::process::id()));
        let map = HeatMap {
            title: "test",
            rows: vec!["row a".into(), "row b".into()],
            columns: vec!["col 1".into(), "col 2".into(), "col 3".into()],
            values: vec![vec![0.0, 0.5, 1.0], vec![f64::NAN, 0.25, 0.75]],
            labels: vec![
                vec!["-1".into(), "-2".into(), "-3".into()],
                vec!["n/a".into(), "-5".into(), "-6".into()],
            ],
        };
        heat_map(&path, &map).expect("heat map");
        let svg = std::fs::read_to_string(&path).expect("svg");
        std::fs::remove_file(&path).ok();
        for text in ["row a", "row b", "col 1", "col 3", "-1", "n/a", "-6"] {
            assert!(svg.contains(&format!(">\n{text}\n</text>")), "{text}");
        }
        assert!(svg.contains("rotate(270"));
    }
}
