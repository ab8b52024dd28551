//! The constraint-string parser: the forms it accepts and the errors it gives.

use mmm_budget::io::load_case;
use mmm_budget::*;
use std::path::Path;

fn m8x4() -> (Model, Problem) {
    let case = load_case(Path::new("tests/data/m8x4"), None).unwrap();
    let p = case.problem().unwrap();
    (case.model, p)
}

fn s3() -> (Model, Problem) {
    let case = load_case(Path::new("tests/data/s3"), None).unwrap();
    let p = case.problem().unwrap();
    (case.model, p)
}

fn parse(model: &Model, p: &Problem, text: &str) -> Result<LinearConstraint> {
    LinearConstraint::parse(text, model, &p.cells, p.total_budget)
}

#[test]
fn accepted_forms() {
    let (m, p) = m8x4();
    let c = parse(&m, &p, "sum(channel=ch1) <= 0.3 * total").unwrap();
    assert_eq!(c.sense, Sense::LessEqual);
    assert_eq!(c.rhs, 600.0);
    assert_eq!(c.coefficients.iter().filter(|&&a| a == 1.0).count(), 4);
    let c = parse(&m, &p, "sum(geo=g2) >= 500").unwrap();
    assert_eq!((c.sense, c.rhs), (Sense::GreaterEqual, 500.0));
    assert_eq!(c.coefficients[16..24], [1.0; 8]);
    let c = parse(&m, &p, "sum(channel=ch3, geo=g1) == 1.2e2").unwrap();
    assert_eq!(c.coefficients.iter().sum::<f64>(), 1.0);
    assert_eq!(c.coefficients[8 + 3], 1.0);
    assert_eq!(c.rhs, 120.0);
    // Both sides, subtraction, division, parentheses, negatives, quotes.
    let c = parse(
        &m,
        &p,
        "2*sum(channel=ch0) - sum(channel=\"ch1\") / 4 >= -(10 - 30) + total/2",
    )
    .unwrap();
    assert_eq!(c.coefficients[0], 2.0);
    assert_eq!(c.coefficients[1], -0.25);
    assert_eq!(c.rhs, 20.0 + 1000.0);
    let c = parse(&m, &p, "sum(channel=ch0) <= sum(channel=ch1)").unwrap();
    assert_eq!(
        (c.coefficients[0], c.coefficients[1], c.rhs),
        (1.0, -1.0, 0.0)
    );
    let c = parse(&m, &p, "sum() <= 1E3").unwrap();
    assert_eq!(c.coefficients, vec![1.0; 32]);
    // Bare names are channels when there are no extra dims.
    let (m, p) = s3();
    let c = parse(&m, &p, "ch0 + 2 * ch2 <= 400").unwrap();
    assert_eq!(c.coefficients, vec![1.0, 0.0, 2.0]);
    assert_eq!(c.name, "ch0 + 2 * ch2 <= 400");
}

fn error(model: &Model, p: &Problem, text: &str) -> String {
    parse(model, p, text).unwrap_err().to_string()
}

#[test]
fn errors_point_at_the_column() {
    let (m, p) = m8x4();
    let e = error(&m, &p, "sum(chanel=ch1) <= 5");
    assert!(
        e.contains("column 5") && e.contains("unknown dim \"chanel\""),
        "{e}"
    );
    let e = error(&m, &p, "sum(channel=tv) <= 5");
    assert!(
        e.contains("column 13") && e.contains("unknown coordinate \"tv\""),
        "{e}"
    );
    let e = error(&m, &p, "sum(channel=ch1) < 5");
    assert!(e.contains("column 18") && e.contains("<=, >= or =="), "{e}");
    let e = error(&m, &p, "sum(channel=ch1) <= ");
    assert!(e.contains("column 21") && e.contains("end of input"), "{e}");
    let e = error(&m, &p, "sum(channel=ch1) * sum(geo=g0) <= 5");
    assert!(e.contains("column 18") && e.contains("not linear"), "{e}");
    let e = error(&m, &p, "ch1 <= 5");
    assert!(
        e.contains("column 1") && e.contains("sum(channel=ch1"),
        "{e}"
    );
    let e = error(&m, &p, "5 <= 6");
    assert!(e.contains("no optimized cell"), "{e}");
    let e = error(&m, &p, "sum(channel=ch1) <= 5 5");
    assert!(
        e.contains("column 23") && e.contains("end of constraint"),
        "{e}"
    );
    let e = error(&m, &p, "sum(channel=ch1 <= 5");
    assert!(e.contains("',' or ')'"), "{e}");
    let e = error(&m, &p, "sum(channel=ch1) / 0 <= 5");
    assert!(e.contains("division by zero"), "{e}");
    let e = error(&m, &p, "sum(channel=\"ch1) <= 5");
    assert!(e.contains("unterminated"), "{e}");
}

#[test]
fn scenario_constraints_are_parsed_with_the_file_named() {
    let dir = tempfile::tempdir().unwrap();
    for f in ["model.json", "posterior.npz"] {
        std::fs::copy(format!("tests/data/s3/{f}"), dir.path().join(f)).unwrap();
    }
    std::fs::write(
        dir.path().join("scenario.json"),
        r#"{"num_periods": 8, "total_budget": 300, "constraints": ["ch0 <= 100", "ch1 >= ch3"]}"#,
    )
    .unwrap();
    let e = load_case(dir.path(), None)
        .unwrap()
        .problem()
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("scenario.json: constraints[1]")
            && e.contains("column 8")
            && e.contains("\"ch3\""),
        "{e}"
    );
}

mod never_panics {
    use super::*;
    use proptest::prelude::*;
    use std::sync::OnceLock;

    fn case() -> &'static (Model, Problem) {
        static CASE: OnceLock<(Model, Problem)> = OnceLock::new();
        CASE.get_or_init(m8x4)
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

        /// Any text gives a constraint or an error, never a panic; errors name a column
        /// within the text.
        #[test]
        fn on_any_text(text in "[ a-z0-9=<>()*/+,.\\-\"_é]{0,40}") {
            let (m, p) = case();
            if let Err(e) = parse(m, p, &text) {
                let msg = e.to_string();
                prop_assert!(msg.contains("column"), "{}", msg);
            }
        }

        /// Near-valid texts built from the grammar's pieces.
        #[test]
        fn on_grammar_pieces(pieces in prop::collection::vec(prop::sample::select(vec![
            "sum(", "channel=ch1", "geo=g2", ",", ")", "total", "*", "/", "+", "-", "<=", ">=", "==",
            "2", "0.5", "1e3", "(", "\"ch3\"", " ",
        ]), 0..12)) {
            let (m, p) = case();
            let _ = parse(m, p, &pieces.concat());
        }
    }
}
