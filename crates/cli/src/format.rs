//! Numbers and times as Ollama's `format` package prints them, so `kiln list` reads like
//! `ollama list`.

use std::time::Duration;

/// Ollama's `format.HumanBytes`: decimal units; whole numbers from 10 up, one decimal below
/// unless the value is whole (`4.7 GB`, `12 MB`, `2 KB`, `999 B`).
pub fn human_bytes(bytes: i64) -> String {
    const UNITS: [(i64, &str); 4] = [
        (1_000_000_000_000, "TB"),
        (1_000_000_000, "GB"),
        (1_000_000, "MB"),
        (1_000, "KB"),
    ];
    let Some(&(scale, unit)) = UNITS.iter().find(|(scale, _)| bytes >= *scale) else {
        return format!("{bytes} B");
    };
    let value = bytes as f64 / scale as f64;
    if value >= 10.0 || value == value.trunc() {
        format!("{} {unit}", value as i64)
    } else {
        format!("{value:.1} {unit}")
    }
}

/// Ollama's `humanDuration`: an approximation such as `About a minute` or `3 days`.
pub fn human_duration(d: Duration) -> String {
    let seconds = d.as_secs();
    match seconds {
        0 => return "Less than a second".into(),
        1 => return "1 second".into(),
        2..=59 => return format!("{seconds} seconds"),
        _ => {}
    }
    let minutes = seconds / 60;
    match minutes {
        1 => return "About a minute".into(),
        2..=59 => return format!("{minutes} minutes"),
        _ => {}
    }
    let hours = (d.as_secs_f64() / 3600.0).round() as u64;
    match hours {
        1 => "About an hour".into(),
        h if h < 48 => format!("{h} hours"),
        h if h < 24 * 7 * 2 => format!("{} days", h / 24),
        h if h < 24 * 30 * 2 => format!("{} weeks", h / 24 / 7),
        h if h < 24 * 365 * 2 => format!("{} months", h / 24 / 30),
        _ => format!("{} years", seconds / 3600 / 24 / 365),
    }
}

/// Ollama's `format.HumanTime` for a moment `ago` before now (`2 days ago`), or in the future.
pub(crate) fn human_time(since: Result<Duration, Duration>) -> String {
    match since {
        Ok(ago) => format!("{} ago", human_duration(ago)),
        Err(ahead) if ahead.as_secs() / 3600 / 24 / 365 > 20 => "Forever".into(),
        Err(ahead) => format!("{} from now", human_duration(ahead)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Cases from Ollama's format/bytes_test.go and format/time_test.go.
    #[test]
    fn as_ollama_formats_them() {
        for (n, want) in [
            (0, "0 B"),
            (999, "999 B"),
            (1000, "1 KB"),
            (1500, "1.5 KB"),
            (10_500, "10 KB"),
            (1_000_000, "1 MB"),
            (4_700_000_000, "4.7 GB"),
            (2_000_000_000_000, "2 TB"),
        ] {
            assert_eq!(human_bytes(n), want, "{n}");
        }
        let s = Duration::from_secs;
        for (d, want) in [
            (Duration::from_millis(500), "Less than a second"),
            (s(1), "1 second"),
            (s(30), "30 seconds"),
            (s(90), "About a minute"),
            (s(60 * 45), "45 minutes"),
            (s(3600), "About an hour"),
            (s(3600 * 30), "30 hours"),
            (s(3600 * 24 * 5), "5 days"),
            (s(3600 * 24 * 21), "3 weeks"),
            (s(3600 * 24 * 90), "3 months"),
            (s(3600 * 24 * 365 * 3), "3 years"),
        ] {
            assert_eq!(human_duration(d), want, "{d:?}");
        }
        assert_eq!(human_time(Ok(s(120))), "2 minutes ago");
        assert_eq!(human_time(Err(s(120))), "2 minutes from now");
    }
}
