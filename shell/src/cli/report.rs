//! How `check` and `verify` tell their checks: every line on stdout, in
//! order, as one report; then the summary, on stdout when all passed, and
//! on stderr as the command's error when any failed.

use std::process::ExitCode;

use jobvault::logging::{Said, say};
use jobvault_core::checks::{Check, Summary};
use jobvault_crypt::redact_secret_keys;

/// Prints the report; exits 0 when every check passed (warnings or not).
/// An age secret key in a line (a job id or body a check names) is cut,
/// as the daemon's log cuts it: `verify` printed one whole.
pub fn report(checks: &[Check]) -> ExitCode {
    for check in checks {
        println!("{}", redact_secret_keys(&check.line()));
    }
    let summary = Summary::of(checks);
    if summary.passed() {
        println!("{}", summary.line());
        ExitCode::SUCCESS
    } else {
        say(Said::Error, &summary.line());
        ExitCode::FAILURE
    }
}
