//! How a followed run shows on stderr.
//!
//! On a terminal: a live view in cargo's manner. Each settled phase scrolls up as one line
//! (a mark, the label, its seconds, its note); the phase in progress is one live line with a
//! spinner, its elapsed and expected time (decisions::costs, from the stage's size), a bar fed
//! by the executor's progress events, and the whole run's ETA counting down. Off a terminal
//! (a pipeline's log) or with `-v` (executor logs interleave): one stable line per phase,
//! `label · seconds · note`, in order. Colour only on a terminal, never with NO_COLOR set.

use std::io::IsTerminal;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use console::Style;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};

use crate::proto;

/// Expected seconds of the phase in progress and of the phases still pending after it.
#[derive(Clone, Copy, Default)]
struct Remaining {
    current: f64,
    after: f64,
}

pub struct View {
    bar: Option<ProgressBar>,
    remaining: Arc<Mutex<Remaining>>,
    quiet: bool,
}

/// Colour on stderr: a terminal, and NO_COLOR unset or empty (no-color.org).
pub fn colour_wanted() -> bool {
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// "1m05s", "42s", "0.4s": how long something took or will take.
pub fn duration(seconds: f64) -> String {
    match seconds {
        s if s >= 59.5 => {
            let whole = s.round() as u64;
            format!("{}m{:02}s", whole / 60, whole % 60)
        }
        s if s >= 10.0 => format!("{s:.0}s"),
        s => format!("{s:.1}s"),
    }
}

impl View {
    pub fn new(quiet: bool, verbose: bool) -> Self {
        console::set_colors_enabled_stderr(colour_wanted());
        let remaining = Arc::new(Mutex::new(Remaining::default()));
        let live = std::io::stderr().is_terminal() && !quiet && !verbose;
        let bar = live.then(|| live_bar(remaining.clone()));
        Self { bar, remaining, quiet }
    }

    /// A line above the live one (or simply printed, without a live view).
    pub fn line(&self, text: &str) {
        match &self.bar {
            Some(bar) => bar.println(text),
            None => err!("{text}"),
        }
    }

    /// A progress or information line (not with `--quiet`).
    pub fn note(&self, message: &str) {
        if !self.quiet {
            self.line(&format!("[usdtune] {message}"));
        }
    }

    /// Run `f` (a prompt) with the live line out of the way.
    pub fn suspend<R>(&self, f: impl FnOnce() -> R) -> R {
        match &self.bar {
            Some(bar) => bar.suspend(f),
            None => f(),
        }
    }

    /// The live line goes; what follows (the summary, the verdict) prints below the phases.
    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }

    pub fn event(&self, event: &proto::RunEvent) {
        let phase = event.run.as_ref().and_then(|r| r.phases.iter().find(|p| p.milestone == event.milestone));
        match event.kind.as_str() {
            "phase_started" => {
                if let (Some(bar), Some(run)) = (&self.bar, &event.run) {
                    *self.remaining.lock().unwrap() = remaining(run, &event.milestone);
                    bar.reset();
                    bar.set_prefix(event.milestone.clone());
                    bar.set_message(String::new());
                }
            }
            "phase_finished" => {
                if let Some(p) = phase.filter(|_| !self.quiet) {
                    let text = if self.bar.is_some() { phase_line(p) } else { plain_phase_line(p) };
                    self.line(&text);
                }
            }
            "warning" if !self.quiet => {
                let mark = Style::new().yellow().bold().apply_to("warning:");
                let text = if self.bar.is_some() {
                    format!("  {mark} {}", event.message)
                } else {
                    format!("[usdtune] warning: {}", event.message)
                };
                self.line(&text);
            }
            "progress" if event.fraction >= 0.0 => {
                if let Some(bar) = &self.bar {
                    bar.set_position((event.fraction.clamp(0.0, 1.0) * 1000.0) as u64);
                    bar.set_message(event.message.clone());
                }
            }
            _ => {}
        }
    }
}

fn live_bar(remaining: Arc<Mutex<Remaining>>) -> ProgressBar {
    let expected = remaining.clone();
    let style = ProgressStyle::with_template(
        "{spinner:.green} {prefix:.bold} {elapsed:>4}{expected} {bar:20.cyan/blue} {wide_msg:.dim} {eta_run}",
    )
    .expect("a valid template")
    .progress_chars("━╸ ")
    .with_key("expected", move |_: &ProgressState, w: &mut dyn std::fmt::Write| {
        let current = expected.lock().unwrap().current;
        if current > 0.0 {
            let _ = write!(w, " of ~{}", duration(current));
        }
    })
    .with_key("eta_run", move |state: &ProgressState, w: &mut dyn std::fmt::Write| {
        let r = *remaining.lock().unwrap();
        if r.current + r.after > 0.0 {
            let left = (r.current - state.elapsed().as_secs_f64()).max(0.0) + r.after;
            let _ = write!(w, "run ETA {}", duration(left));
        }
    });
    let bar = ProgressBar::with_draw_target(Some(1000), ProgressDrawTarget::stderr());
    bar.set_style(style);
    bar.enable_steady_tick(Duration::from_millis(120));
    bar
}

/// The phase in progress's expected seconds and those of the pending phases after it.
fn remaining(run: &proto::Run, milestone: &str) -> Remaining {
    let at = run.phases.iter().position(|p| p.milestone == milestone).unwrap_or(run.phases.len());
    Remaining {
        current: run.phases.get(at).map_or(0.0, |p| p.expected_seconds),
        after: run.phases.iter().skip(at + 1).filter(|p| p.status == "pending").map(|p| p.expected_seconds).sum(),
    }
}

/// A settled phase on a terminal: mark, label, seconds, note (coloured when colour is on).
pub fn phase_line(p: &proto::PhaseRecord) -> String {
    let (mark, style) = match p.status.as_str() {
        "done" => ("✓", Style::new().green()),
        "failed" => ("✗", Style::new().red().bold()),
        "skipped" => ("–", Style::new().dim()),
        _ => ("·", Style::new()),
    };
    let seconds = if p.status == "done" || p.status == "failed" { duration(p.seconds) } else { String::new() };
    let note =
        if p.status == "skipped" { Style::new().dim().apply_to(&p.note) } else { Style::new().apply_to(&p.note) };
    format!("{} {:<33} {:>6}  {}", style.apply_to(mark), p.milestone, seconds, note)
}

/// A settled phase off a terminal: one stable line, `label · seconds · note`.
pub fn plain_phase_line(p: &proto::PhaseRecord) -> String {
    let when = match p.status.as_str() {
        "done" => format!("{:.1} s", p.seconds),
        "failed" => format!("failed after {:.1} s", p.seconds),
        other => other.to_string(),
    };
    format!("[usdtune] {} · {when} · {}", p.milestone, p.note)
}

/// The closing line in the verdict's colour.
pub fn verdict_line(text: &str, verdict: &str) -> String {
    let style = match verdict {
        "improved" => Style::new().green().bold(),
        "neutral" | "mixed" => Style::new().yellow().bold(),
        _ => Style::new().red().bold(),
    };
    style.apply_to(text).to_string()
}

/// "Error:" in red, then the message.
pub fn error_line(message: &str) -> String {
    format!("{} {message}", Style::new().red().bold().apply_to("Error:"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn phase(milestone: &str, status: &str, expected: f64) -> proto::PhaseRecord {
        proto::PhaseRecord {
            milestone: milestone.into(),
            status: status.into(),
            expected_seconds: expected,
            seconds: 1.25,
            note: "n".into(),
            ..Default::default()
        }
    }

    #[test]
    fn the_eta_counts_the_phase_in_progress_and_the_pending_ones_after_it() {
        let run = proto::Run {
            phases: vec![
                phase("a", "done", 5.0),
                phase("b", "running", 3.0),
                phase("c", "skipped", 9.0),
                phase("d", "pending", 4.0),
                phase("e", "pending", 1.5),
            ],
            ..Default::default()
        };
        let r = remaining(&run, "b");
        assert_eq!((r.current, r.after), (3.0, 5.5));
    }

    #[test]
    fn plain_lines_are_stable_and_durations_read_well() {
        assert_eq!(
            plain_phase_line(&phase("profile-stage:baseline", "done", 0.0)),
            "[usdtune] profile-stage:baseline · 1.2 s · n"
        );
        assert_eq!(plain_phase_line(&phase("x", "skipped", 0.0)), "[usdtune] x · skipped · n");
        assert_eq!((duration(0.44), duration(42.4), duration(65.0)), ("0.4s".into(), "42s".into(), "1m05s".into()));
        assert_eq!((duration(59.7), duration(119.6)), ("1m00s".into(), "2m00s".into()));
    }
}
