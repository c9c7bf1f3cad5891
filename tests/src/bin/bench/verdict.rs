//! The figures of every run, and the verdict on them: each figure's median
//! over the runs against its target, with the spread, so one noisy run
//! neither passes nor fails the bench.

use std::collections::BTreeMap;

use super::targets::{Bound, Figure, TARGETS, target};

/// What a section measured in one run.
pub type Measured = Vec<(Figure, f64)>;

/// Every run's value of each figure, and the targets `--target` changed.
#[derive(Debug, Default)]
pub struct Verdict {
    samples: BTreeMap<Figure, Vec<f64>>,
    overrides: BTreeMap<Figure, f64>,
}

impl Verdict {
    pub fn new(overrides: &[(Figure, f64)]) -> Self {
        Verdict {
            samples: BTreeMap::new(),
            overrides: overrides.iter().copied().collect(),
        }
    }

    pub fn add(&mut self, measured: Measured) {
        for (figure, value) in measured {
            self.samples.entry(figure).or_default().push(value);
        }
    }

    fn bound(&self, figure: Figure) -> Bound {
        let bound = target(figure).bound;
        self.overrides.get(&figure).map_or(bound, |&v| bound.at(v))
    }

    /// Prints the table; returns how many medians missed their target.
    pub fn print(&self) -> usize {
        println!("== verdict: the median of each figure over the runs, against its target");
        println!("| figure | target | median | spread (min to max) | runs | |");
        println!("| --- | --- | --- | --- | --- | --- |");
        let mut missed = 0;
        for row in TARGETS {
            let Some(values) = self.samples.get(&row.figure) else {
                continue;
            };
            let bound = self.bound(row.figure);
            let median = median(values);
            let met = bound.met_by(median);
            missed += usize::from(!met);
            let (low, high) = spread(values);
            println!(
                "| {} ({}) | {bound} | {median:.3} | {low:.3} to {high:.3} | {} | {} |",
                row.what,
                row.name,
                values.len(),
                if met { "met" } else { "**missed**" }
            );
        }
        missed
    }
}

/// The middle value; for an even count, the mean of the two middle ones.
fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let mid = sorted.len() / 2;
    if sorted.len().is_multiple_of(2) {
        (sorted[mid - 1] + sorted[mid]) / 2.0
    } else {
        sorted[mid]
    }
}

fn spread(values: &[f64]) -> (f64, f64) {
    let low = values.iter().copied().fold(f64::INFINITY, f64::min);
    let high = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    (low, high)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::targets::parse_override;

    #[test]
    fn the_median_of_an_odd_count_is_the_middle_and_of_an_even_one_the_mean_of_two() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), 2.5);
        assert_eq!(spread(&[4.0, 1.0, 3.0]), (1.0, 4.0));
    }

    #[test]
    fn a_median_past_its_target_is_missed_and_one_noisy_run_is_not() {
        let mut verdict = Verdict::new(&[]);
        verdict.add(vec![(Figure::UploadCpuPer10k, 0.8), (Figure::IdleCpu, 0.9)]);
        verdict.add(vec![(Figure::UploadCpuPer10k, 5.0), (Figure::IdleCpu, 0.7)]);
        verdict.add(vec![(Figure::UploadCpuPer10k, 0.9), (Figure::IdleCpu, 0.6)]);
        assert_eq!(
            verdict.print(),
            1,
            "only the idle CPU's median (0.7) misses"
        );
    }

    #[test]
    fn a_target_set_on_the_command_line_keeps_its_direction() {
        let tightened = parse_override("upload-cpu=0.5").unwrap();
        assert_eq!(tightened, (Figure::UploadCpuPer10k, 0.5));
        let mut verdict = Verdict::new(&[tightened]);
        verdict.add(vec![(Figure::UploadCpuPer10k, 0.8)]);
        assert_eq!(verdict.print(), 1);
        let loosened = parse_override("upload-concurrency-gain=2").unwrap();
        let mut verdict = Verdict::new(&[loosened]);
        verdict.add(vec![(Figure::UploadConcurrencyGain, 3.0)]);
        assert_eq!(verdict.print(), 0, "at least 2, as the table's at least 10");
        assert!(
            parse_override("nonsense=1")
                .unwrap_err()
                .contains("upload-cpu")
        );
        assert!(parse_override("upload-cpu").is_err());
        assert!(parse_override("upload-cpu=fast").is_err());
        for bad in ["NaN", "inf", "1e400", "-1"] {
            assert!(
                parse_override(&format!("upload-cpu={bad}")).is_err(),
                "{bad}"
            );
        }
    }
}
