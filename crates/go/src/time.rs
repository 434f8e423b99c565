//! `Timestamp`: Go's `time.Time` as it appears in JSON (RFC 3339 with nanoseconds), without a date crate.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

/// Seconds from 0001-01-01T00:00:00Z (Go's zero `time.Time`) to the Unix epoch.
const GO_ZERO_UNIX: i64 = -62_135_596_800;
/// First second of year 10000: Go refuses to marshal years outside 0..=9999.
const YEAR_10000_UNIX: i64 = 253_402_300_800;
/// First second of year 0.
const YEAR_0_UNIX: i64 = -62_167_219_200;

/// An instant plus the UTC offset it is rendered in, mirroring Go's `time.Time` on the wire.
///
/// Ollama renders `modified_at`/`expires_at` in the server's local zone (`…-07:00`); kiln has no zone
/// database, so values built from [`SystemTime`] are UTC (`…Z`, exactly what Ollama prints under
/// `TZ=UTC`) unless the caller supplies an offset with [`Timestamp::with_offset_minutes`].
/// [`Default`] is Go's zero time, `0001-01-01T00:00:00Z`, which Go emits for an unset field.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Timestamp {
    unix_seconds: i64,
    nanos: u32,
    offset_minutes: i16,
}

/// Why a string is not an RFC 3339 timestamp Go would accept.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid RFC 3339 timestamp {input:?}: {reason}")]
pub struct TimestampError {
    input: String,
    reason: &'static str,
}

impl Default for Timestamp {
    fn default() -> Self {
        Self::GO_ZERO
    }
}

impl Timestamp {
    /// Go's zero `time.Time` (`0001-01-01T00:00:00Z`).
    pub const GO_ZERO: Timestamp = Timestamp {
        unix_seconds: GO_ZERO_UNIX,
        nanos: 0,
        offset_minutes: 0,
    };

    /// The instant of a file's mtime or `now()`, rendered in UTC. Times before year 0 or after 9999
    /// (which Go cannot marshal either) are clamped.
    pub fn from_system_time(t: SystemTime) -> Self {
        let (secs, nanos) = match t.duration_since(UNIX_EPOCH) {
            Ok(d) => (
                i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
                d.subsec_nanos(),
            ),
            Err(e) => {
                let d = e.duration();
                let secs = i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
                if d.subsec_nanos() == 0 {
                    (-secs, 0)
                } else {
                    (-secs - 1, 1_000_000_000 - d.subsec_nanos())
                }
            }
        };
        Self::from_unix(secs, nanos).unwrap_or(if secs < 0 {
            Timestamp {
                unix_seconds: YEAR_0_UNIX,
                nanos: 0,
                offset_minutes: 0,
            }
        } else {
            Timestamp {
                unix_seconds: YEAR_10000_UNIX - 1,
                nanos: 999_999_999,
                offset_minutes: 0,
            }
        })
    }

    /// A UTC timestamp from Unix seconds and nanoseconds; `None` if `nanos >= 1e9` or the UTC date
    /// falls outside years 0..=9999.
    pub fn from_unix(unix_seconds: i64, nanos: u32) -> Option<Self> {
        if nanos >= 1_000_000_000 || !(YEAR_0_UNIX..YEAR_10000_UNIX).contains(&unix_seconds) {
            return None;
        }
        Some(Timestamp {
            unix_seconds,
            nanos,
            offset_minutes: 0,
        })
    }

    /// The same instant rendered at a UTC offset (e.g. `-420` for `-07:00`); `None` unless the offset
    /// is within ±23:59 and the local date stays within years 0..=9999.
    pub fn with_offset_minutes(self, offset_minutes: i16) -> Option<Self> {
        if offset_minutes.unsigned_abs() >= 24 * 60 {
            return None;
        }
        let local = self.unix_seconds + i64::from(offset_minutes) * 60;
        if !(YEAR_0_UNIX..YEAR_10000_UNIX).contains(&local) {
            return None;
        }
        Some(Timestamp {
            offset_minutes,
            ..self
        })
    }

    /// Seconds since the Unix epoch (what Ollama sorts `ps` entries by).
    pub fn unix_seconds(&self) -> i64 {
        self.unix_seconds
    }

    /// Nanoseconds within the second.
    pub fn subsec_nanos(&self) -> u32 {
        self.nanos
    }

    /// The rendering offset from UTC, in minutes.
    pub fn offset_minutes(&self) -> i16 {
        self.offset_minutes
    }

    /// The instant as a [`SystemTime`], or `None` if the platform cannot represent it.
    pub fn to_system_time(&self) -> Option<SystemTime> {
        if self.unix_seconds >= 0 {
            UNIX_EPOCH.checked_add(Duration::new(self.unix_seconds as u64, self.nanos))
        } else {
            let back = Duration::from_secs(self.unix_seconds.unsigned_abs());
            UNIX_EPOCH
                .checked_sub(back)?
                .checked_add(Duration::from_nanos(u64::from(self.nanos)))
        }
    }

    /// Parses RFC 3339 as Go's `time.Time.UnmarshalJSON` accepts it:
    /// `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)`, at most 9 fraction digits kept (more are truncated).
    pub fn parse_rfc3339(input: &str) -> Result<Self, TimestampError> {
        let fail = |reason| TimestampError {
            input: input.to_owned(),
            reason,
        };
        let b = input.as_bytes();
        if b.len() < 20 {
            return Err(fail("too short"));
        }
        let num = |range: std::ops::Range<usize>| -> Result<i64, TimestampError> {
            let part = &b[range];
            if part.iter().all(u8::is_ascii_digit) {
                Ok(part
                    .iter()
                    .fold(0i64, |acc, d| acc * 10 + i64::from(d - b'0')))
            } else {
                Err(fail("expected digits"))
            }
        };
        if b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[13] != b':' || b[16] != b':' {
            return Err(fail("bad separators"));
        }
        let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
        let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
        if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
            return Err(fail("day out of range"));
        }
        if hour > 23 || minute > 59 || second > 59 {
            return Err(fail("time out of range"));
        }
        let mut i = 19;
        let mut nanos: u32 = 0;
        if b[i] == b'.' || b[i] == b',' {
            i += 1;
            let start = i;
            while i < b.len() && b[i].is_ascii_digit() {
                if i - start < 9 {
                    nanos = nanos * 10 + u32::from(b[i] - b'0');
                }
                i += 1;
            }
            let n = i - start;
            if n == 0 {
                return Err(fail("empty fraction"));
            }
            for _ in n..9 {
                nanos *= 10;
            }
        }
        let offset_minutes: i16 = match &b[i..] {
            [b'Z'] => 0,
            [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
                let digits = [*h1, *h2, *m1, *m2];
                if !digits.iter().all(u8::is_ascii_digit) {
                    return Err(fail("bad offset"));
                }
                let h = i16::from(h1 - b'0') * 10 + i16::from(h2 - b'0');
                let m = i16::from(m1 - b'0') * 10 + i16::from(m2 - b'0');
                if h > 23 || m > 59 {
                    return Err(fail("offset out of range"));
                }
                let total = h * 60 + m;
                if *sign == b'-' { -total } else { total }
            }
            _ => return Err(fail("bad zone")),
        };
        let local = days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second;
        Ok(Timestamp {
            unix_seconds: local - i64::from(offset_minutes) * 60,
            nanos,
            offset_minutes,
        })
    }
}

impl fmt::Display for Timestamp {
    /// Go's `time.RFC3339Nano` layout: trailing fraction zeros dropped, `Z` for UTC.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let local = self.unix_seconds + i64::from(self.offset_minutes) * 60;
        let days = local.div_euclid(86_400);
        let secs = local.rem_euclid(86_400);
        let (y, m, d) = civil_from_days(days);
        write!(
            f,
            "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}",
            secs / 3600,
            secs / 60 % 60,
            secs % 60
        )?;
        if self.nanos != 0 {
            let frac = format!("{:09}", self.nanos);
            write!(f, ".{}", frac.trim_end_matches('0'))?;
        }
        if self.offset_minutes == 0 {
            f.write_str("Z")
        } else {
            let sign = if self.offset_minutes < 0 { '-' } else { '+' };
            let abs = self.offset_minutes.unsigned_abs();
            write!(f, "{sign}{:02}:{:02}", abs / 60, abs % 60)
        }
    }
}

impl std::str::FromStr for Timestamp {
    type Err = TimestampError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse_rfc3339(s)
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Timestamp;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an RFC 3339 timestamp string")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Timestamp, E> {
                Timestamp::parse_rfc3339(s).map_err(E::custom)
            }
            // Go leaves a time.Time unchanged on `null`.
            fn visit_unit<E: de::Error>(self) -> Result<Timestamp, E> {
                Ok(Timestamp::GO_ZERO)
            }
        }
        deserializer.deserialize_any(V)
    }
}

fn is_leap(y: i64) -> bool {
    y % 4 == 0 && (y % 100 != 0 || y % 400 == 0)
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if is_leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Inverse of [`days_from_civil`].
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_zero_time() {
        assert_eq!(Timestamp::GO_ZERO.to_string(), "0001-01-01T00:00:00Z");
        assert_eq!(
            Timestamp::parse_rfc3339("0001-01-01T00:00:00Z").unwrap(),
            Timestamp::GO_ZERO
        );
    }

    #[test]
    fn civil_round_trip_over_range() {
        for days in (-719_528..2_932_897).step_by(997) {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
    }
}
