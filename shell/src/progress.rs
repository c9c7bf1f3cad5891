//! Progress bars for long work, drawn on stderr only when it is a terminal.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// A bar counting bytes; hidden unless stderr is a terminal.
pub fn bytes(message: &str, total: Option<u64>) -> ProgressBar {
    bar(
        message,
        total,
        "{msg:>12} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} {eta}",
        "{msg:>12} {spinner} {bytes} {bytes_per_sec}",
    )
}

/// A bar counting items (objects, jobs); hidden unless stderr is a terminal.
pub fn items(message: &str, total: Option<u64>) -> ProgressBar {
    bar(
        message,
        total,
        "{msg:>12} [{bar:30}] {pos}/{len} {per_sec} {eta}",
        "{msg:>12} {spinner} {pos}",
    )
}

fn bar(message: &str, total: Option<u64>, with_total: &str, without_total: &str) -> ProgressBar {
    let template = if total.is_some() {
        with_total
    } else {
        without_total
    };
    let style = ProgressStyle::with_template(template)
        .expect("the templates are valid")
        .progress_chars("=> ");
    ProgressBar::with_draw_target(total, ProgressDrawTarget::stderr())
        .with_style(style)
        .with_message(message.to_owned())
}
