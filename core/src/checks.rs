//! The verdicts of `jobvault check` and `jobvault verify`, and how they are
//! told: one line per check, then a summary. Both commands render through
//! here; before, each had a loop of its own, and `check` printed its
//! failures on stdout while `verify` printed them on stderr.

/// How one check went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// What was found.
    Passed(String),
    /// Passed, but something a user will miss later is off: what.
    Warned(String),
    /// Why it failed.
    Failed(String),
}

/// One check and how it went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub what: String,
    pub outcome: Outcome,
}

impl Check {
    /// Passed with what `result` found, or failed with why.
    pub fn new(
        what: impl Into<String>,
        result: Result<impl Into<String>, impl Into<String>>,
    ) -> Self {
        Check {
            what: what.into(),
            outcome: match result {
                Ok(found) => Outcome::Passed(found.into()),
                Err(why) => Outcome::Failed(why.into()),
            },
        }
    }

    pub fn passed(what: impl Into<String>, found: impl Into<String>) -> Self {
        Check::new(what, Ok::<_, String>(found))
    }

    pub fn failed(what: impl Into<String>, why: impl Into<String>) -> Self {
        Check::new(what, Err::<String, _>(why))
    }

    /// Passed with a warning: `detail` says what is missed.
    pub fn warned(what: impl Into<String>, detail: impl Into<String>) -> Self {
        Check {
            what: what.into(),
            outcome: Outcome::Warned(detail.into()),
        }
    }

    /// Its line: `ok    what: found`, `WARN  what: detail` or
    /// `FAIL  what: why`.
    pub fn line(&self) -> String {
        let (verdict, text) = match &self.outcome {
            Outcome::Passed(found) => ("ok  ", found),
            Outcome::Warned(detail) => ("WARN", detail),
            Outcome::Failed(why) => ("FAIL", why),
        };
        format!("{verdict}  {}: {text}", self.what)
    }
}

/// How a run of checks went, as its last line says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    pub checks: usize,
    pub failed: usize,
    pub warned: usize,
}

impl Summary {
    pub fn of(checks: &[Check]) -> Self {
        let count =
            |wanted: fn(&Outcome) -> bool| checks.iter().filter(|c| wanted(&c.outcome)).count();
        Summary {
            checks: checks.len(),
            failed: count(|o| matches!(o, Outcome::Failed(_))),
            warned: count(|o| matches!(o, Outcome::Warned(_))),
        }
    }

    pub fn passed(&self) -> bool {
        self.failed == 0
    }

    /// `all N checks passed[, W with a warning]`, or `F of N checks failed`.
    pub fn line(&self) -> String {
        let Summary {
            checks,
            failed,
            warned,
        } = *self;
        match (failed, warned) {
            (0, 0) => format!("all {checks} checks passed"),
            (0, _) => format!("all {checks} checks passed, {warned} with a warning"),
            _ => format!("{failed} of {checks} checks failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_verdict_has_its_line_and_the_summary_counts_them() {
        let checks = [
            Check::passed("bucket", "gs://b"),
            Check::warned("versioning", "off"),
            Check::failed("database", "missing"),
        ];
        let lines: Vec<_> = checks.iter().map(Check::line).collect();
        assert_eq!(
            lines,
            [
                "ok    bucket: gs://b",
                "WARN  versioning: off",
                "FAIL  database: missing"
            ]
        );
        let summary = Summary::of(&checks);
        assert!(!summary.passed());
        assert_eq!(summary.line(), "1 of 3 checks failed");
        let passed = Summary::of(&checks[..2]);
        assert!(passed.passed());
        assert_eq!(passed.line(), "all 2 checks passed, 1 with a warning");
        assert_eq!(Summary::of(&checks[..1]).line(), "all 1 checks passed");
    }
}
