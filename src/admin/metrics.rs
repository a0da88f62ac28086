//! The Prometheus recorder. Every metric is named `sessiongate_*`:
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `sessiongate_requests_total` | counter | `status` |
//! | `sessiongate_upstream_duration_seconds` | histogram | |
//! | `sessiongate_store_operation_duration_seconds` | histogram | `store`, `operation` |
//! | `sessiongate_store_errors_total` | counter | `store`, `operation`, `kind` |
//! | `sessiongate_sessions_created_total` | counter | |
//! | `sessiongate_sessions_rejected_total` | counter | |
//! | `sessiongate_sessions_destroyed_total` | counter | |

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// How often histogram samples are folded into their buckets.
const UPKEEP_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// Installs the process-wide recorder and returns the handle that renders
/// it. The counters are registered at zero so dashboards see them at once.
///
/// The recorder keeps histogram samples until upkeep folds them into
/// buckets; without it memory would grow with every request between
/// scrapes, so an upkeep task runs for the life of the runtime.
pub fn install() -> Result<PrometheusHandle, String> {
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS)
        .map_err(|e| e.to_string())?
        .install_recorder()
        .map_err(|e| e.to_string())?;
    for name in [
        "sessiongate_sessions_created_total",
        "sessiongate_sessions_rejected_total",
        "sessiongate_sessions_destroyed_total",
    ] {
        metrics::counter!(name).absolute(0);
    }
    let upkeep = handle.clone();
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(UPKEEP_EVERY);
        loop {
            ticks.tick().await;
            upkeep.run_upkeep();
        }
    });
    Ok(handle)
}
