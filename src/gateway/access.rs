//! The access log: one line per request, in the shape the rest of the log
//! has (`log.format`): a text line with the target `sessiongate::access`, or
//! a JSON object whose `fields` hold the values.
//!
//! | field | value |
//! |---|---|
//! | `method`, `path` | the request's; the path without its query string, which may carry secrets |
//! | `status` | the status sent to the client |
//! | `bytes` | the response body's length when known up front (`Content-Length`, or a body of known size); absent for a streamed body of unknown length |
//! | `duration_ms` | from the request's arrival to its response head (the body streams after the line is written) |
//! | `upstream_ms` | waiting for the backend's response head; absent when the backend was not called |
//! | `store_ms` | resolving and committing the session: store calls, or for the cookie store opening and sealing the cookie |
//! | `route` | the route that matched: its `name`, or its host and prefix; `default` when none did; `-` when the request failed before one was chosen |
//! | `session` | the session's public id (`X-Session-Id`); absent when no session was resolved |
//! | `client` | the peer's IP address (a load balancer's, when there is one) |
//!
//! # Cost
//!
//! Going through `tracing`'s formatter and one `write(2)` per line cost
//! 10-20% of a cookie-store gateway's requests per CPU-second. So the line
//! is written by hand into a reused buffer, appended to a shared buffer
//! under a short lock, and a background thread writes that buffer to stderr
//! when it fills or every [`FLUSH_EVERY`]: one `write(2)` per batch. A line
//! reaches stderr at most that much later than the request ended; at
//! shutdown [`flush`] writes what is left.

use std::cell::RefCell;
use std::future::Future;
use std::io::Write as _;
use std::sync::{Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use http::{Method, Response, Uri};
use http_body::Body;

use crate::config::LogFormat;
use crate::proxy::{Connection, ProxyBody};

/// How long a line may wait in the buffer.
const FLUSH_EVERY: Duration = Duration::from_millis(100);
/// A buffer this full is written at once.
const FLUSH_AT_BYTES: usize = 64 * 1024;

/// What one request's phases measured, for its access line.
#[derive(Debug, Default)]
pub(super) struct Trace<'g> {
    /// The route the request took, once chosen.
    pub(super) route: Option<&'g str>,
    /// Waiting for the upstream's response head.
    pub(super) upstream: Option<Duration>,
    /// Store work: loading and committing the session.
    pub(super) store: Duration,
    /// The session's public id, once resolved.
    pub(super) session: Option<String>,
}

impl Trace<'_> {
    /// Runs `work` and adds its time to the store's.
    pub(super) async fn store<T>(&mut self, work: impl Future<Output = T>) -> T {
        let started = Instant::now();
        let output = work.await;
        self.store += started.elapsed();
        output
    }
}

/// One request as its access line shows it.
pub(super) struct Line<'a> {
    pub(super) method: &'a Method,
    pub(super) uri: &'a Uri,
    pub(super) response: &'a Response<ProxyBody>,
    pub(super) connection: &'a Connection,
    pub(super) trace: &'a Trace<'a>,
    pub(super) started: Instant,
}

/// Writes the request's access line in `format`.
pub(super) fn log(format: LogFormat, line: &Line<'_>) {
    thread_local! {
        static SCRATCH: RefCell<String> = RefCell::new(String::with_capacity(512));
    }
    SCRATCH.with(|scratch| {
        let Ok(mut text) = scratch.try_borrow_mut() else {
            return;
        };
        text.clear();
        match format {
            LogFormat::Text => line.text(&mut text),
            LogFormat::Json => line.json(&mut text),
        }
        sink().append(text.as_bytes());
    });
}

impl Line<'_> {
    fn bytes(&self) -> Option<u64> {
        self.response
            .headers()
            .get(http::header::CONTENT_LENGTH)
            .and_then(|length| length.to_str().ok()?.parse::<u64>().ok())
            .or_else(|| self.response.body().size_hint().exact())
    }

    /// `2026-12-02T01:34:12.528194Z  INFO sessiongate::access: method=GET ...`,
    /// as `tracing`'s text formatter writes an event.
    fn text(&self, out: &mut String) {
        timestamp(out);
        out.push_str("  INFO sessiongate::access: ");
        out.push_str("method=");
        out.push_str(self.method.as_str());
        out.push_str(" path=");
        out.push_str(self.uri.path());
        out.push_str(" status=");
        number(out, u64::from(self.response.status().as_u16()));
        if let Some(bytes) = self.bytes() {
            out.push_str(" bytes=");
            number(out, bytes);
        }
        out.push_str(" duration_ms=");
        millis(out, self.started.elapsed());
        if let Some(upstream) = self.trace.upstream {
            out.push_str(" upstream_ms=");
            millis(out, upstream);
        }
        out.push_str(" store_ms=");
        millis(out, self.trace.store);
        out.push_str(" route=");
        out.push_str(self.trace.route.unwrap_or("-"));
        if let Some(session) = &self.trace.session {
            out.push_str(" session=");
            out.push_str(session);
        }
        out.push_str(" client=");
        out.push_str(self.connection.peer_ip());
        out.push('\n');
    }

    /// `{"timestamp":...,"level":"INFO","fields":{...},"target":"sessiongate::access"}`,
    /// as `tracing`'s JSON formatter writes an event.
    fn json(&self, out: &mut String) {
        out.push_str("{\"timestamp\":\"");
        timestamp(out);
        out.push_str("\",\"level\":\"INFO\",\"fields\":{\"method\":");
        json_string(out, self.method.as_str());
        out.push_str(",\"path\":");
        json_string(out, self.uri.path());
        out.push_str(",\"status\":");
        number(out, u64::from(self.response.status().as_u16()));
        if let Some(bytes) = self.bytes() {
            out.push_str(",\"bytes\":");
            number(out, bytes);
        }
        out.push_str(",\"duration_ms\":");
        millis(out, self.started.elapsed());
        if let Some(upstream) = self.trace.upstream {
            out.push_str(",\"upstream_ms\":");
            millis(out, upstream);
        }
        out.push_str(",\"store_ms\":");
        millis(out, self.trace.store);
        out.push_str(",\"route\":");
        json_string(out, self.trace.route.unwrap_or("-"));
        if let Some(session) = &self.trace.session {
            out.push_str(",\"session\":");
            json_string(out, session);
        }
        out.push_str(",\"client\":\"");
        out.push_str(self.connection.peer_ip());
        out.push_str("\"},\"target\":\"sessiongate::access\"}\n");
    }
}

/// Milliseconds with microsecond precision: `2.160`.
fn millis(out: &mut String, duration: Duration) {
    let micros = u64::try_from(duration.as_micros()).unwrap_or(u64::MAX);
    number(out, micros / 1000);
    out.push('.');
    padded(out, micros % 1000, 3);
}

/// A JSON string, escaped (a path may hold `"` or `\`).
fn json_string(out: &mut String, text: &str) {
    match serde_json::to_string(text) {
        Ok(quoted) => out.push_str(&quoted),
        Err(_) => out.push_str("\"\""),
    }
}

/// Now, as RFC 3339 UTC with microseconds: `2026-12-02T01:34:12.528194Z`.
/// The part up to the second is formatted once per second per thread.
fn timestamp(out: &mut String) {
    thread_local! {
        static SECOND: RefCell<(u64, String)> = const { RefCell::new((u64::MAX, String::new())) };
    }
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let seconds = since.as_secs();
    SECOND.with(|cached| {
        let Ok(mut cached) = cached.try_borrow_mut() else {
            return;
        };
        if cached.0 != seconds {
            let (year, month, day) = civil_from_days(seconds / 86_400);
            let of_day = seconds % 86_400;
            let prefix = &mut cached.1;
            prefix.clear();
            for (value, width, separator) in [
                (year, 4, '-'),
                (month, 2, '-'),
                (day, 2, 'T'),
                (of_day / 3600, 2, ':'),
                (of_day / 60 % 60, 2, ':'),
                (of_day % 60, 2, '.'),
            ] {
                padded(prefix, value, width);
                prefix.push(separator);
            }
            cached.0 = seconds;
        }
        out.push_str(&cached.1);
    });
    padded(out, u64::from(since.subsec_micros()), 6);
    out.push('Z');
}

/// `value` in decimal, zero-padded to `width` digits.
fn padded(out: &mut String, value: u64, width: usize) {
    let mut digits = itoa::Buffer::new();
    let text = digits.format(value);
    for _ in text.len()..width {
        out.push('0');
    }
    out.push_str(text);
}

/// `value` in decimal.
fn number(out: &mut String, value: u64) {
    out.push_str(itoa::Buffer::new().format(value));
}

/// The Gregorian date of a day counted from 1970-01-01 (Howard Hinnant's
/// `civil_from_days`, for days on or after the epoch).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let day_of_era = z % 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * shifted_month + 2) / 5 + 1;
    let month = if shifted_month < 10 {
        shifted_month + 3
    } else {
        shifted_month - 9
    };
    let year = year_of_era + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

/// Lines waiting for the writer thread.
struct Sink {
    pending: Mutex<Vec<u8>>,
    full: Condvar,
}

/// The process's one sink, its writer thread started on first use.
fn sink() -> &'static Sink {
    static SINK: OnceLock<Sink> = OnceLock::new();
    SINK.get_or_init(|| {
        let spawned = std::thread::Builder::new()
            .name("access-log".into())
            .spawn(|| loop {
                sink().write_pending(true);
            });
        if let Err(error) = spawned {
            tracing::error!(%error, "cannot start the access log writer: lines are written as they come");
        }
        Sink {
            pending: Mutex::new(Vec::with_capacity(FLUSH_AT_BYTES * 2)),
            full: Condvar::new(),
        }
    })
}

impl Sink {
    fn append(&self, line: &[u8]) {
        // A panic elsewhere never leaves the buffer half-written: use it.
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        pending.extend_from_slice(line);
        if pending.len() >= FLUSH_AT_BYTES {
            self.full.notify_one();
        }
    }

    /// Writes what is pending; with `wait`, first waits until the buffer
    /// fills or [`FLUSH_EVERY`] passes.
    fn write_pending(&self, wait: bool) {
        // A panic elsewhere never leaves the buffer half-written: use it.
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        if wait {
            pending = match self.full.wait_timeout(pending, FLUSH_EVERY) {
                Ok((pending, _)) => pending,
                Err(poisoned) => poisoned.into_inner().0,
            };
        }
        if pending.is_empty() {
            return;
        }
        let batch = std::mem::take(&mut *pending);
        drop(pending);
        let mut stderr = std::io::stderr().lock();
        let _ = stderr.write_all(&batch);
        let _ = stderr.flush();
    }
}

/// Writes the lines still waiting: at shutdown, before the process exits.
pub fn flush() {
    sink().write_pending(false);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_gregorian() {
        for (days, date) in [
            (0, (1970, 1, 1)),
            (59, (1970, 3, 1)),
            (11_016, (2000, 2, 29)),
            (20_789, (2026, 12, 2)),
            (24_837, (2038, 1, 1)),
        ] {
            assert_eq!(civil_from_days(days), date, "day {days}");
        }
    }

    #[test]
    fn timestamps_are_rfc_3339_with_microseconds() {
        let mut out = String::new();
        timestamp(&mut out);
        timestamp(&mut out);
        assert_eq!(out.len(), 2 * "2026-12-02T01:34:12.528194Z".len(), "{out}");
        let first = &out[..27];
        assert!(
            first.ends_with('Z') && first.as_bytes()[10] == b'T',
            "{first}"
        );
        assert_eq!(&first[4..5], "-");
        assert_eq!(&first[19..20], ".");
    }

    #[test]
    fn milliseconds_keep_three_decimals() {
        let mut out = String::new();
        millis(&mut out, Duration::from_micros(2_160));
        out.push(' ');
        millis(&mut out, Duration::from_micros(7));
        assert_eq!(out, "2.160 0.007");
    }
}
