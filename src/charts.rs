//! Charts as SVG text (plotters' SVG backend; text as `<text>` elements, drawn by
//! whatever shows the SVG): the allocation, start against optimum per cell, grouped
//! by channel; the efficient frontier with its 90% band; each cell's response curve
//! with the chosen spend marked.
//!
//! Units as everywhere: spends and budgets per period; responses over the window and
//! its carry-over.

use crate::curves::CellCurve;
use crate::error::{Error, Result};
use crate::frontier::FrontierPoint;
use crate::model::CellInfo;
use plotters::coord::Shift;
use plotters::prelude::*;

/// Chart width in SVG pixels.
pub const WIDTH: u32 = 960;
/// The most cells a bar chart shows (the largest by optimum spend); the title says
/// how many were left out.
pub const MAX_BARS: usize = 40;
/// The most cells the response-curve chart shows, one panel each (the largest by
/// chosen spend).
pub const MAX_PANELS: usize = 12;

const START: RGBColor = RGBColor(170, 170, 170);
const OPTIMUM: RGBColor = RGBColor(31, 119, 180);
const BAND: RGBColor = RGBColor(158, 202, 225);
const MARK: RGBColor = RGBColor(214, 39, 40);

fn failed<E: std::fmt::Debug>(chart: &'static str) -> impl Fn(E) -> Error {
    move |e| Error::Render {
        chart,
        message: crate::error::truncated(&format!("{e:?}"), 300),
    }
}

/// An axis tick: whole numbers where the axis spans more than 10, else 2 significant
/// decimals more than the span needs.
fn tick(v: f64, span: f64) -> String {
    if span.abs() >= 10.0 {
        format!("{v:.0}")
    } else {
        let decimals = (2.0 - span.abs().max(1e-12).log10().floor()).clamp(0.0, 12.0) as usize;
        format!("{v:.decimals$}")
    }
}

/// The cells' indices, grouped by channel (then by the other coordinates), at most
/// [`MAX_BARS`] of them: the largest by `size`.
fn bar_order(cells: &[CellInfo], size: &[f64]) -> Vec<usize> {
    let mut keep: Vec<usize> = (0..cells.len()).collect();
    if keep.len() > MAX_BARS {
        keep.sort_by(|&a, &b| size[b].total_cmp(&size[a]));
        keep.truncate(MAX_BARS);
    }
    let key = |i: usize| {
        let c = &cells[i];
        (
            c.coord("channel").unwrap_or("").to_string(),
            c.label.clone(),
        )
    };
    keep.sort_by_key(|&i| key(i));
    keep
}

/// The allocation as grouped bars: per cell the start (grey) and the optimum (blue),
/// per period, cells grouped by channel.
///
/// ```
/// use mmm_budget::*;
/// let (model, scenario) = demo::case(&demo::DemoSize { channels: 3, geos: 2, draws: 50 }, 1);
/// let problem = Problem::new(&model, &scenario)?;
/// let x = problem.uniform_allocation();
/// let svg = charts::allocation_svg(&problem.cells, &x, &x)?;
/// assert!(svg.starts_with("<svg") && svg.contains("budget per period"));
/// # Ok::<(), mmm_budget::Error>(())
/// ```
pub fn allocation_svg(cells: &[CellInfo], start: &[f64], optimum: &[f64]) -> Result<String> {
    let order = bar_order(cells, optimum);
    let top = order
        .iter()
        .map(|&i| start[i].max(optimum[i]))
        .fold(0.0f64, f64::max);
    let top = if top > 0.0 && top.is_finite() {
        top * 1.1
    } else {
        1.0
    };
    let title = if order.len() < cells.len() {
        format!(
            "Budget per period: start and optimum ({} largest of {} cells)",
            order.len(),
            cells.len()
        )
    } else {
        "Budget per period: start and optimum".to_string()
    };
    let labels: Vec<String> = order.iter().map(|&i| cells[i].label.clone()).collect();
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, 480)).into_drawing_area();
        let err = failed("allocation");
        root.fill(&WHITE).map_err(&err)?;
        let n = order.len().max(1);
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(90)
            .y_label_area_size(70)
            .build_cartesian_2d(0.0..n as f64, 0.0..top)
            .map_err(&err)?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(0)
            .light_line_style(WHITE)
            .y_label_formatter(&|v| tick(*v, top))
            .y_desc("budget per period")
            .draw()
            .map_err(&err)?;
        // Each cell's label under its pair of bars, read from the axis down.
        let label_style = ("sans-serif", 12)
            .into_font()
            .transform(FontTransform::Rotate90)
            .color(&BLACK);
        for (k, label) in labels.iter().enumerate() {
            let (x, y) = chart.backend_coord(&(k as f64 + 0.5, 0.0));
            root.draw(&Text::new(
                label.clone(),
                (x - 6, y + 6),
                label_style.clone(),
            ))
            .map_err(&err)?;
        }
        let bars = |values: &[f64], offset: f64| -> Vec<(f64, f64, f64)> {
            order
                .iter()
                .enumerate()
                .map(|(k, &i)| (k as f64 + offset, k as f64 + offset + 0.38, values[i]))
                .collect()
        };
        for (series, color, name) in [
            (bars(start, 0.1), START, "start"),
            (bars(optimum, 0.5), OPTIMUM, "optimum"),
        ] {
            chart
                .draw_series(
                    series
                        .into_iter()
                        .map(|(a, b, v)| Rectangle::new([(a, 0.0), (b, v)], color.filled())),
                )
                .map_err(&err)?
                .label(name)
                .legend(move |(x, y)| {
                    Rectangle::new([(x, y - 5), (x + 12, y + 5)], color.filled())
                });
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.9))
            .border_style(BLACK)
            .position(SeriesLabelPosition::UpperRight)
            .draw()
            .map_err(&err)?;
        root.present().map_err(&err)?;
    }
    Ok(svg)
}

/// The frontier: the optimal mean response per total budget (per period) with the
/// 5%–95% band of the response over draws, and `current` (the scenario's budget)
/// marked.
pub fn frontier_svg(points: &[FrontierPoint], current: Option<f64>) -> Result<String> {
    let pts: Vec<&FrontierPoint> = points
        .iter()
        .filter(|p| p.solution.mean_response.is_finite() && p.response_quantiles[0].is_finite())
        .collect();
    let err = failed("frontier");
    let (x0, x1) = pts
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), p| {
            (a.min(p.budget), b.max(p.budget))
        });
    let (y0, y1) = pts
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), p| {
            (
                a.min(p.response_quantiles[0]),
                b.max(p.response_quantiles[2]),
            )
        });
    let (x0, x1) = if x0 < x1 { (x0, x1) } else { (0.0, 1.0) };
    let (y0, y1) = if y0 < y1 { (y0, y1) } else { (0.0, 1.0) };
    let pad = 0.05 * (y1 - y0);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, 480)).into_drawing_area();
        root.fill(&WHITE).map_err(&err)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(
                "Optimal mean response by total budget, with the 90% band over draws",
                ("sans-serif", 18),
            )
            .margin(12)
            .x_label_area_size(45)
            .y_label_area_size(80)
            .build_cartesian_2d(x0..x1, (y0 - pad).max(0.0)..y1 + pad)
            .map_err(&err)?;
        chart
            .configure_mesh()
            .light_line_style(WHITE)
            .x_label_formatter(&|v| tick(*v, x1 - x0))
            .y_label_formatter(&|v| tick(*v, y1 - y0))
            .x_desc("total budget per period")
            .y_desc("response over the window")
            .draw()
            .map_err(&err)?;
        let band: Vec<(f64, f64)> = pts
            .iter()
            .map(|p| (p.budget, p.response_quantiles[2]))
            .chain(
                pts.iter()
                    .rev()
                    .map(|p| (p.budget, p.response_quantiles[0])),
            )
            .collect();
        chart
            .draw_series(std::iter::once(Polygon::new(band, BAND.mix(0.6).filled())))
            .map_err(&err)?
            .label("5%–95% of draws")
            .legend(|(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], BAND.filled()));
        let line: Vec<(f64, f64)> = pts
            .iter()
            .map(|p| (p.budget, p.solution.mean_response))
            .collect();
        chart
            .draw_series(LineSeries::new(line.clone(), OPTIMUM.stroke_width(2)))
            .map_err(&err)?
            .label("mean response at the optimum")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 14, y)], OPTIMUM.stroke_width(2)));
        chart
            .draw_series(line.iter().map(|&p| Circle::new(p, 3, OPTIMUM.filled())))
            .map_err(&err)?;
        if let Some(b) = current.filter(|b| (x0..=x1).contains(b)) {
            chart
                .draw_series(std::iter::once(PathElement::new(
                    vec![(b, (y0 - pad).max(0.0)), (b, y1 + pad)],
                    MARK.stroke_width(2),
                )))
                .map_err(&err)?
                .label("the scenario's budget")
                .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 14, y)], MARK.stroke_width(2)));
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.9))
            .border_style(BLACK)
            .position(SeriesLabelPosition::LowerRight)
            .draw()
            .map_err(&err)?;
        root.present().map_err(&err)?;
    }
    Ok(svg)
}

/// Each cell's mean contribution against its spend per period (the others held at
/// the allocation), the chosen spend marked: one panel a cell, at most
/// [`MAX_PANELS`] (the largest chosen spends).
pub fn curves_svg(curves: &[CellCurve]) -> Result<String> {
    let err = failed("curves");
    let mut order: Vec<usize> = (0..curves.len()).collect();
    order.sort_by(|&a, &b| curves[b].at.total_cmp(&curves[a].at));
    order.truncate(MAX_PANELS);
    let cols = 3usize;
    let rows = order.len().div_ceil(cols).max(1);
    let height = 60 + 240 * rows as u32;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, height)).into_drawing_area();
        root.fill(&WHITE).map_err(&err)?;
        let title = if order.len() < curves.len() {
            format!(
                "Mean contribution by spend per period, chosen spend marked ({} largest of {} cells)",
                order.len(),
                curves.len()
            )
        } else {
            "Mean contribution by spend per period, chosen spend marked".to_string()
        };
        let root = root.titled(&title, ("sans-serif", 18)).map_err(&err)?;
        let panels = root.split_evenly((rows, cols));
        for (panel, &i) in panels.iter().zip(&order) {
            curve_panel(panel, &curves[i]).map_err(&err)?;
        }
        root.present().map_err(&err)?;
    }
    Ok(svg)
}

fn curve_panel(
    area: &DrawingArea<SVGBackend<'_>, Shift>,
    curve: &CellCurve,
) -> std::result::Result<(), DrawingAreaErrorKind<std::io::Error>> {
    let points: Vec<(f64, f64)> = curve
        .spend
        .iter()
        .zip(&curve.contribution)
        .map(|(&s, &c)| (s, c))
        .filter(|(s, c)| s.is_finite() && c.is_finite())
        .collect();
    let x1 = points.iter().map(|p| p.0).fold(0.0f64, f64::max);
    let y1 = points.iter().map(|p| p.1).fold(0.0f64, f64::max);
    let y0 = points.iter().map(|p| p.1).fold(0.0f64, f64::min);
    let x1 = if x1 > 0.0 { x1 } else { 1.0 };
    let y1 = if y1 > y0 { y1 } else { y0 + 1.0 };
    let mut chart = ChartBuilder::on(area)
        .caption(&curve.label, ("sans-serif", 14))
        .margin(8)
        .x_label_area_size(28)
        .y_label_area_size(56)
        .build_cartesian_2d(0.0..x1, y0..y1 * 1.05)?;
    chart
        .configure_mesh()
        .x_labels(4)
        .y_labels(4)
        .light_line_style(WHITE)
        .x_label_formatter(&|v| tick(*v, x1))
        .y_label_formatter(&|v| tick(*v, y1 - y0))
        .label_style(("sans-serif", 10))
        .draw()?;
    chart.draw_series(LineSeries::new(points.clone(), OPTIMUM.stroke_width(2)))?;
    // The contribution at the chosen spend, interpolated on the grid.
    let at = curve.at;
    let y_at = points
        .windows(2)
        .find(|w| w[0].0 <= at && at <= w[1].0)
        .map(|w| {
            let t = if w[1].0 > w[0].0 {
                (at - w[0].0) / (w[1].0 - w[0].0)
            } else {
                0.0
            };
            w[0].1 + t * (w[1].1 - w[0].1)
        });
    if let Some(y) = y_at {
        chart.draw_series(std::iter::once(PathElement::new(
            vec![(at, y0), (at, y)],
            MARK.stroke_width(2),
        )))?;
        chart.draw_series(std::iter::once(Circle::new((at, y), 4, MARK.filled())))?;
    }
    Ok(())
}
