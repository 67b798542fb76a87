//! The one progress-bar style of deepgen: training epochs, evaluations and
//! sampling all show `label [=====>    ] pos/len message (elapsed, eta)` on
//! stderr, and nothing when stderr is not a terminal (logs and pipes stay
//! clean).

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;

/// The template every bar uses.
const TEMPLATE: &str = "{prefix} [{bar:30}] {pos}/{len} {msg} ({elapsed}, eta {eta})";

/// A bar of `len` steps labelled `label`; hidden unless `visible` and stderr
/// is a terminal.
pub fn progress_bar(len: u64, label: &str, visible: bool) -> ProgressBar {
    let bar = ProgressBar::new(len);
    if !visible || !std::io::stderr().is_terminal() {
        bar.set_draw_target(ProgressDrawTarget::hidden());
    }
    if let Ok(style) = ProgressStyle::with_template(TEMPLATE) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_prefix(label.to_string());
    bar
}
