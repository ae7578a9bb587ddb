//! CPU and memory, sampled in the background.
//!
//! sysinfo needs two CPU readings some time apart to compute a usage, and a
//! refresh reads several files under /proc: far too slow for a request. So one
//! task refreshes every few seconds and writes the gauges; `/api/metrics` and
//! `/api/health/detailed` only read them.

use std::{sync::Arc, time::Duration};

use crate::shutdown::Shutdown;
use sysinfo::{CpuRefreshKind, MemoryRefreshKind, RefreshKind, System};

use super::Metrics;

/// How often the sampler refreshes the gauges.
pub const SAMPLE_INTERVAL: Duration = Duration::from_secs(5);

/// Samples until `shutdown` resolves.
pub async fn run_sampler(metrics: Arc<Metrics>, interval: Duration, shutdown: Shutdown) {
    let mut sys = match System::new_with_specifics(
        RefreshKind::nothing()
            .with_cpu(CpuRefreshKind::nothing().with_usage())
            .with_memory(MemoryRefreshKind::nothing().with_ram()),
    ) {
        Ok(sys) => sys,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read CPU and memory use; their metrics stay at 0");
            return;
        }
    };
    // The first CPU reading is only a baseline; take the second after the
    // minimum interval so the very first sample is already meaningful.
    tokio::time::sleep(sysinfo::MINIMUM_CPU_UPDATE_INTERVAL).await;
    let mut ticker = tokio::time::interval(interval);
    loop {
        tokio::select! {
            _ = ticker.tick() => sample(&mut sys, &metrics),
            () = shutdown.wait() => return,
        }
    }
}

fn sample(sys: &mut System, metrics: &Metrics) {
    sys.refresh_cpu_usage();
    sys.refresh_memory();
    metrics
        .system_cpu_percent
        .set(f64::from(sys.global_cpu_usage()));
    metrics.system_memory_percent.set(memory_percent(sys));
}

/// Inside a container the cgroup limit, not the host, is what runs out.
fn memory_percent(sys: &System) -> f64 {
    let (total, used) = match sys.cgroup_limits() {
        Some(limits) if limits.total_memory > 0 && limits.total_memory < sys.total_memory() => (
            limits.total_memory,
            limits.total_memory.saturating_sub(limits.free_memory),
        ),
        _ => (sys.total_memory(), sys.used_memory()),
    };
    if total == 0 {
        0.0
    } else {
        used as f64 * 100.0 / total as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn sampler_fills_the_gauges_and_stops_on_shutdown() {
        let metrics = Arc::new(Metrics::new().unwrap());
        let (trigger, shutdown) = Shutdown::new();
        let task = tokio::spawn(run_sampler(
            metrics.clone(),
            Duration::from_millis(50),
            shutdown,
        ));
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while metrics.system_memory_percent.get() == 0.0 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "no sample within 5 s"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let memory = metrics.system_memory_percent.get();
        assert!(memory > 0.0 && memory <= 100.0, "{memory}");
        let cpu = metrics.system_cpu_percent.get();
        assert!((0.0..=100.0).contains(&cpu), "{cpu}");
        trigger.trigger();
        tokio::time::timeout(Duration::from_secs(1), task)
            .await
            .unwrap()
            .unwrap();
    }
}
