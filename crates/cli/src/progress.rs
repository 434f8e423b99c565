//! Progress lines for a person (bars with rate and ETA on a terminal, one line per status
//! elsewhere) or for a script (`--json`: each line as the API streams it).

use std::ops::ControlFlow;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use kiln_api::ProgressResponse;

/// Renders the progress lines of a create, pull or push.
pub(crate) struct Progress {
    json: bool,
    terminal: bool,
    current: Option<(String, ProgressBar)>,
}

impl Progress {
    pub(crate) fn new(json: bool) -> Progress {
        Progress {
            json,
            terminal: std::io::IsTerminal::is_terminal(&std::io::stderr()),
            current: None,
        }
    }

    /// Shows one line; never asks to stop.
    pub(crate) fn line(&mut self, p: &ProgressResponse) -> ControlFlow<()> {
        if self.json {
            crate::print_raw(&kiln_api::to_ndjson_line(p));
            return ControlFlow::Continue(());
        }
        let same = self.current.as_ref().is_some_and(|(s, _)| *s == p.status);
        if !same {
            self.finish();
            let bar = if p.total > 0 {
                let bar = ProgressBar::new(p.total as u64);
                bar.set_style(
                    ProgressStyle::with_template(
                        "{msg} {percent:>3}% ▕{bar:25}▏ {bytes}/{total_bytes} {bytes_per_sec} {eta}",
                    )
                    .expect("a valid template")
                    .progress_chars("█▌ "),
                );
                bar
            } else {
                let bar = ProgressBar::new_spinner();
                bar.enable_steady_tick(Duration::from_millis(120));
                bar
            };
            bar.set_message(p.status.clone());
            if !self.terminal {
                // No bars in a log: each status once, on its own line.
                bar.set_draw_target(ProgressDrawTarget::hidden());
                eprintln!("{}", p.status);
            }
            self.current = Some((p.status.clone(), bar));
        }
        if let Some((_, bar)) = &self.current
            && p.total > 0
        {
            bar.set_length(p.total as u64);
            bar.set_position(p.completed.max(0) as u64);
        }
        ControlFlow::Continue(())
    }

    /// Whether lines go out as JSON (for scripts) rather than for a person.
    pub(crate) fn is_json(&self) -> bool {
        self.json
    }

    /// Leaves the last status printed.
    pub(crate) fn finish(&mut self) {
        if let Some((_, bar)) = self.current.take() {
            bar.finish();
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.finish();
    }
}
