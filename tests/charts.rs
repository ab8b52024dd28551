//! Charts and the HTML report: the SVGs render (to PNG, with resvg) at their size and
//! show what they should; the page is self-contained, complete and escapes what the
//! input says. `MMM_CHART_PNG_DIR=DIR` keeps the PNGs there to look at.

use mmm_budget::*;
use resvg::tiny_skia::{Pixmap, Transform};
use std::process::Command;

/// The SVG rendered to pixels.
fn render(svg: &str, name: &str) -> Pixmap {
    let tree = resvg::usvg::Tree::from_str(svg, &resvg::usvg::Options::default()).unwrap();
    let size = tree.size().to_int_size();
    let mut pixmap = Pixmap::new(size.width(), size.height()).unwrap();
    resvg::render(&tree, Transform::default(), &mut pixmap.as_mut());
    if let Some(dir) = std::env::var_os("MMM_CHART_PNG_DIR") {
        std::fs::create_dir_all(&dir).unwrap();
        pixmap
            .save_png(std::path::Path::new(&dir).join(format!("{name}.png")))
            .unwrap();
    }
    pixmap
}

/// The share of pixels within 30 of `rgb` in every channel.
fn share_of(p: &Pixmap, rgb: [u8; 3]) -> f64 {
    let near = p
        .pixels()
        .iter()
        .filter(|px| {
            let c = px.demultiply();
            [c.red(), c.green(), c.blue()]
                .iter()
                .zip(rgb)
                .all(|(&a, b)| a.abs_diff(b) <= 30)
        })
        .count();
    near as f64 / p.pixels().len() as f64
}

const BLUE: [u8; 3] = [31, 119, 180];
const GREY: [u8; 3] = [170, 170, 170];
const RED: [u8; 3] = [214, 39, 40];
const WHITE: [u8; 3] = [255, 255, 255];

/// The problem of `model` and `scenario` solved on the CPU.
fn solve(model: &Model, scenario: &Scenario) -> (Problem, CpuEvaluator, Solution) {
    let problem = Problem::new(model, scenario).unwrap();
    let mut ev = CpuEvaluator::new(&problem).unwrap();
    let solution = Solver::new(&problem, &mut ev, Settings::default())
        .unwrap()
        .solve()
        .unwrap();
    (problem, ev, solution)
}

fn solved_demo() -> (Problem, CpuEvaluator, Solution, Model, Scenario) {
    let (model, scenario) = demo::case(
        &demo::DemoSize {
            channels: 4,
            geos: 2,
            draws: 60,
        },
        11,
    );
    let (problem, ev, solution) = solve(&model, &scenario);
    assert_eq!(solution.status, Status::Solved);
    (problem, ev, solution, model, scenario)
}

#[test]
fn the_allocation_chart_draws_both_bars_of_every_cell() {
    let (problem, _, solution, ..) = solved_demo();
    let svg = charts::allocation_svg(
        &problem.cells,
        &solution.start_allocation,
        &solution.allocation,
    )
    .unwrap();
    for c in &problem.cells {
        assert!(svg.contains(&c.label), "{} not labelled", c.label);
    }
    let png = render(&svg, "allocation");
    assert_eq!((png.width(), png.height()), (charts::WIDTH, 480));
    // Bars of both colours, on a mostly white page.
    assert!(share_of(&png, BLUE) > 0.03, "{}", share_of(&png, BLUE));
    assert!(share_of(&png, GREY) > 0.03, "{}", share_of(&png, GREY));
    assert!(share_of(&png, WHITE) > 0.3);
    // Taller bars paint more: doubling every optimum bar paints more blue... the axis
    // rescales, so compare a chart whose optimum is zero instead: no blue bars left.
    let zero = vec![0.0; solution.allocation.len()];
    let svg0 = charts::allocation_svg(&problem.cells, &solution.start_allocation, &zero).unwrap();
    let png0 = render(&svg0, "allocation-zero");
    assert!(share_of(&png0, BLUE) < 0.01, "{}", share_of(&png0, BLUE));
}

#[test]
fn many_cells_show_the_largest_and_say_so() {
    let (model, scenario) = demo::case(
        &demo::DemoSize {
            channels: 10,
            geos: 6,
            draws: 20,
        },
        3,
    );
    let problem = Problem::new(&model, &scenario).unwrap();
    let x: Vec<f64> = (0..problem.num_cells()).map(|k| k as f64).collect();
    let svg = charts::allocation_svg(&problem.cells, &x, &x).unwrap();
    assert!(svg.contains("40 largest of 60 cells"), "title");
    // The 20 smallest are left out, the largest shown.
    assert!(!svg.contains(&format!(">{}<", problem.cells[0].label)));
    assert!(svg.contains(&problem.cells[59].label));
}

#[test]
fn the_curves_and_frontier_charts_mark_the_chosen_points() {
    let (problem, mut ev, solution, model, scenario) = solved_demo();
    let curves = curves::response_curves(&problem, &mut ev, &solution.allocation, 25, 2.0).unwrap();
    let svg = charts::curves_svg(&curves).unwrap();
    let png = render(&svg, "curves");
    // 8 panels in 3 columns: 3 rows.
    assert_eq!((png.width(), png.height()), (charts::WIDTH, 60 + 240 * 3));
    assert!(share_of(&png, BLUE) > 0.002, "{}", share_of(&png, BLUE));
    assert!(
        share_of(&png, RED) > 0.0002,
        "the chosen spends: {}",
        share_of(&png, RED)
    );
    let b = scenario.total_budget;
    let budgets = frontier::budgets(0.5 * b, 1.5 * b, 5);
    let points = frontier::frontier(
        &model,
        &scenario,
        &mut ev,
        &budgets,
        &Settings::default(),
        true,
    )
    .unwrap();
    let svg = charts::frontier_svg(&points, Some(b)).unwrap();
    let png = render(&svg, "frontier");
    assert_eq!((png.width(), png.height()), (charts::WIDTH, 480));
    // The band (light blue) covers a good part of the plot; the line and the marker.
    assert!(share_of(&png, [170, 210, 230]) > 0.05, "band");
    assert!(share_of(&png, BLUE) > 0.002, "line");
    assert!(
        share_of(&png, RED) > 0.0003,
        "the scenario's budget: {}",
        share_of(&png, RED)
    );
    // Without the marker: no red.
    let svg = charts::frontier_svg(&points, None).unwrap();
    assert!(share_of(&render(&svg, "frontier-unmarked"), RED) < 0.0001);
}

#[test]
fn the_report_is_one_self_contained_page_with_everything() {
    let dir = tempfile::tempdir().unwrap();
    let page = dir.path().join("plan.html");
    let plots = dir.path().join("plots");
    let o = Command::new(env!("CARGO_BIN_EXE_mmm-budget"))
        .args([
            "optimize",
            "tests/data/m8x4",
            "--backend",
            "cpu",
            "--report",
        ])
        .arg(&page)
        .arg("--plot")
        .arg(&plots)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let html = std::fs::read_to_string(&page).unwrap();
    // Self-contained: nothing fetched (the SVG namespace is a name, not a request).
    for banned in ["<script", "src=", "href=", "@import", "url("] {
        assert!(!html.contains(banned), "{banned}");
    }
    assert_eq!(
        html.replace("xmlns=\"http://www.w3.org/2000/svg\"", "")
            .matches("http")
            .count(),
        0
    );
    assert_eq!(
        html.matches("<svg").count(),
        3,
        "allocation, curves, frontier"
    );
    assert!(html.contains("<p class=\"status\">optimal</p>"));
    assert!(html.contains("per period") && html.contains("over the window of 12 periods"));
    assert!(html.contains("90% of the posterior draws"));
    assert!(html.contains("Constraints that bind") && html.contains("<td>budget</td>"));
    // Every cell in the table.
    for g in 0..4 {
        for c in 0..8 {
            assert!(html.contains(&format!("<td>g{g}/ch{c}</td>")), "g{g}/ch{c}");
        }
    }
    for f in ["allocation.svg", "curves.svg"] {
        let svg = std::fs::read_to_string(plots.join(f)).unwrap();
        assert!(render(&svg, f).width() == charts::WIDTH);
    }
}

#[test]
fn the_report_escapes_what_the_input_says() {
    let (mut model, scenario) = demo::case(
        &demo::DemoSize {
            channels: 2,
            geos: 1,
            draws: 20,
        },
        2,
    );
    model.channels[0] = "<script>alert(1)</script>".into();
    let (problem, mut ev, solution) = solve(&model, &scenario);
    let report = report::Report::new(&problem, &mut ev, &solution.allocation).unwrap();
    let svg = charts::allocation_svg(
        &problem.cells,
        &solution.start_allocation,
        &solution.allocation,
    )
    .unwrap();
    let page = html_report::plan_page(Some(&report), &solution, &[("Allocation", &svg)]);
    assert!(
        !page.contains("<script"),
        "escaped in the table and in the SVG"
    );
    assert!(page.contains("&lt;script&gt;"));
}

#[test]
fn an_infeasible_plan_reports_why_without_a_table() {
    let (model, mut scenario) = demo::case(
        &demo::DemoSize {
            channels: 2,
            geos: 1,
            draws: 20,
        },
        2,
    );
    scenario.constraints = vec!["sum(channel=ch0) >= 2 * total".into()];
    let (_, _, solution) = solve(&model, &scenario);
    assert_eq!(solution.status, Status::Infeasible);
    let page = html_report::plan_page(None, &solution, &[]);
    assert!(page.contains("infeasible"));
    assert!(!page.contains("<h2>Allocation</h2>"));
}
