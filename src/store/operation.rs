//! The server-store operations the core times and counts, and their
//! duration histograms.

use std::sync::OnceLock;

use metrics::Histogram;

/// One call into a server store, as the `operation` label of
/// `sessiongate_store_operation_duration_seconds` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    Load,
    Update,
    Insert,
    Regenerate,
    Delete,
    Touch,
    SessionsOf,
    Ping,
}

impl Operation {
    const COUNT: usize = 8;

    /// The `operation` label.
    pub fn label(self) -> &'static str {
        match self {
            Operation::Load => "load",
            Operation::Update => "update",
            Operation::Insert => "insert",
            Operation::Regenerate => "regenerate",
            Operation::Delete => "delete",
            Operation::Touch => "touch",
            Operation::SessionsOf => "sessions_of",
            Operation::Ping => "ping",
        }
    }
}

/// Each operation's duration histogram, registered on its first use and
/// kept: looking a histogram up by its labels on every call costs about a
/// thousand instructions, more than the rest of the timing together.
#[derive(Debug)]
pub struct Timers {
    store: &'static str,
    histograms: [OnceLock<Histogram>; Operation::COUNT],
}

impl Timers {
    /// The timers of the store `store` (`store.type`).
    pub fn new(store: &'static str) -> Self {
        Self {
            store,
            histograms: Default::default(),
        }
    }

    /// Records that one `operation` took `seconds`.
    pub fn record(&self, operation: Operation, seconds: f64) {
        let register = || {
            metrics::histogram!(
                "sessiongate_store_operation_duration_seconds",
                "store" => self.store,
                "operation" => operation.label()
            )
        };
        match self.histograms.get(operation as usize) {
            Some(slot) => slot.get_or_init(register).record(seconds),
            // An operation added without raising `COUNT`: looked up each time.
            None => register().record(seconds),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_operation_has_its_own_histogram() {
        let all = [
            Operation::Load,
            Operation::Update,
            Operation::Insert,
            Operation::Regenerate,
            Operation::Delete,
            Operation::Touch,
            Operation::SessionsOf,
            Operation::Ping,
        ];
        let mut slots: Vec<usize> = all.iter().map(|op| *op as usize).collect();
        slots.sort_unstable();
        slots.dedup();
        assert_eq!(slots, (0..Operation::COUNT).collect::<Vec<_>>());
        let mut labels: Vec<&str> = all.iter().map(|op| op.label()).collect();
        labels.sort_unstable();
        labels.dedup();
        assert_eq!(labels.len(), Operation::COUNT);
    }
}
