//! The plan as one self-contained HTML page (no scripts, no network: styles inline,
//! charts as inline SVG): the summary in plain words, the cells' table, the
//! constraints that bind and what one more unit of each is worth, and the charts.
//! Every text from the input (cell labels, constraint texts, messages) is escaped.

use crate::report::{Report, binding_worth, plain_status};
use crate::solution::Solution;
use html_escape::encode_text;
use std::fmt::Write;

const STYLE: &str = "body{font-family:sans-serif;max-width:1000px;margin:2em auto;color:#222}\
table{border-collapse:collapse;font-size:14px}td,th{padding:3px 10px;border-bottom:1px solid #ddd;text-align:right}\
td:first-child,th:first-child{text-align:left}.status{font-size:20px;font-weight:bold}\
.small{color:#666;font-size:13px}figure{margin:1.5em 0}";

/// A number with thousands separators and `decimals` decimals.
fn num(v: f64, decimals: usize) -> String {
    if !v.is_finite() {
        return format!("{v}");
    }
    let s = format!("{:.*}", decimals, v.abs());
    let (int, frac) = s.split_once('.').map_or((s.as_str(), ""), |(a, b)| (a, b));
    let mut grouped = String::new();
    for (k, ch) in int.chars().enumerate() {
        if k > 0 && (int.len() - k).is_multiple_of(3) {
            grouped.push(',');
        }
        grouped.push(ch);
    }
    let sign = if v < 0.0 { "-" } else { "" };
    if frac.is_empty() {
        format!("{sign}{grouped}")
    } else {
        format!("{sign}{grouped}.{frac}")
    }
}

/// The page of an optimization: `report` is the evaluation of the optimum (absent
/// where there is none, as when infeasible), `start` the per-period start allocation,
/// `charts` (title, SVG) pairs shown in order.
///
/// ```
/// use mmm_budget::*;
/// let (model, scenario) = demo::case(&demo::DemoSize { channels: 2, geos: 1, draws: 30 }, 3);
/// let problem = Problem::new(&model, &scenario)?;
/// let mut ev = CpuEvaluator::new(&problem)?;
/// let solution = Solver::new(&problem, &mut ev, Settings::default())?.solve()?;
/// let report = report::Report::new(&problem, &mut ev, &solution.allocation)?;
/// let page = html_report::plan_page(Some(&report), &solution, &[]);
/// assert!(page.contains("<h1>Budget plan</h1>") && page.contains("optimal"));
/// # Ok::<(), mmm_budget::Error>(())
/// ```
pub fn plan_page(report: Option<&Report>, solution: &Solution, charts: &[(&str, &str)]) -> String {
    let mut h = String::new();
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>Budget plan</title><style>{STYLE}</style></head><body>\n<h1>Budget plan</h1>\n"
    );
    let _ = writeln!(
        h,
        "<p class=\"status\">{}</p>",
        encode_text(&plain_status(solution, false))
    );
    if let Some(r) = report {
        summary(&mut h, r, solution);
        cell_table(&mut h, r, solution);
        let worth = binding_worth(solution, r.num_periods);
        if !worth.is_empty() {
            h.push_str("<h2>Constraints that bind</h2>\n<p>What one more unit of each is worth: the mean response that one more unit of its right-hand side, spent over the window, brings (as mROI).</p>\n<table><tr><th>constraint</th><th>worth of one more unit</th></tr>\n");
            for (constraint, value) in worth {
                let _ = writeln!(
                    h,
                    "<tr><td>{}</td><td>{}</td></tr>",
                    encode_text(&constraint),
                    num(value, 4)
                );
            }
            h.push_str("</table>\n");
        }
    }
    for (title, svg) in charts {
        let _ = writeln!(
            h,
            "<figure><figcaption><h2>{}</h2></figcaption>\n{svg}\n</figure>",
            encode_text(title)
        );
    }
    let _ = writeln!(
        h,
        "<p class=\"small\">{}: {} iterations, {} evaluations, {:.3} s on {}; {} posterior draws. Budgets are per period; responses are over the window and its carry-over.</p>\n</body></html>",
        encode_text(&plain_status(solution, true)),
        solution.iterations,
        solution.evaluations,
        solution.seconds,
        encode_text(&solution.backend),
        report.map_or(0, |r| r.num_draws)
    );
    h
}

fn summary(h: &mut String, r: &Report, solution: &Solution) {
    let n = r.num_periods;
    let change = solution.mean_response - solution.start_mean_response;
    let pct = 100.0 * change / solution.start_mean_response.abs().max(f64::MIN_POSITIVE);
    let _ = writeln!(
        h,
        "<ul>\n<li>Budget: <b>{}</b> per period, {} over the window of {n} periods.</li>\n\
         <li>Expected response: <b>{}</b> over the window and its carry-over; 90% of the posterior draws lie between {} and {}.</li>\n\
         <li>Against the start allocation ({}): {}{} ({:+.2}%).</li>\n</ul>",
        num(r.total_budget, 2),
        num(r.total_budget * n as f64, 2),
        num(r.mean_response, 2),
        num(r.response_quantiles[0], 2),
        num(r.response_quantiles[2], 2),
        num(solution.start_mean_response, 2),
        if change >= 0.0 { "+" } else { "" },
        num(change, 2),
        pct
    );
}

fn cell_table(h: &mut String, r: &Report, solution: &Solution) {
    h.push_str("<h2>Allocation</h2>\n<table><tr><th>cell</th><th>budget per period</th><th>over the window</th><th>start per period</th><th>change</th><th>share</th><th>contribution</th><th>ROI</th><th>mROI</th></tr>\n");
    for (k, c) in r.cells.iter().enumerate() {
        let start = solution
            .start_allocation
            .get(k)
            .copied()
            .unwrap_or(f64::NAN);
        let share = if r.allocated > 0.0 {
            100.0 * c.budget / r.allocated
        } else {
            0.0
        };
        let _ = writeln!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{:.1}%</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            encode_text(&c.label),
            num(c.budget, 2),
            num(c.budget_window, 2),
            num(start, 2),
            num(c.budget - start, 2),
            share,
            num(c.mean_contribution, 2),
            c.roi.map_or("-".into(), |v| num(v, 4)),
            num(c.marginal_roi, 4)
        );
    }
    let _ = writeln!(
        h,
        "<tr><th>total</th><th>{}</th><th>{}</th><th></th><th></th><th></th><th>{}</th><th></th><th></th></tr>\n</table>",
        num(r.allocated, 2),
        num(r.allocated * r.num_periods as f64, 2),
        num(r.cells.iter().map(|c| c.mean_contribution).sum::<f64>(), 2)
    );
}
