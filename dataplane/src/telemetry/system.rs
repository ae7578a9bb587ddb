//! CPU and memory, sampled in the background.
//!
//! sysinfo needs two CPU readings some time apart to compute a usage, and a
//! refresh reads several files under /proc: far too slow for a request. So one
//! task refreshes every few seconds and writes the gauges; `/api/metrics` and
//! `/api/health/detailed` only read them.

use std::{sync::Arc, time::Duration};

use crate::shutdown::Shutdown;
use sysinfo::{CpuRefreshKind, Disks, MemoryRefreshKind, RefreshKind, System};

use super::Metrics;

/// How often the sampler refreshes the gauges.
pub const SAMPLE_INTERVAL: Duration = Duration::from_secs(5);

/// Samples until `shutdown` resolves.
pub async fn run_sampler(
    metrics: Arc<Metrics>,
    interval: Duration,
    shutdown: Shutdown,
    data_dir: std::path::PathBuf,
) {
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
    // The data volume: the mounted file system holding DATA_DIR (where the
    // SQLite file grows). Resolved once; a pod's volumes do not move.
    let data_dir = std::fs::canonicalize(&data_dir).unwrap_or(data_dir);
    let mut disks = match Disks::new_with_refreshed_list() {
        Ok(disks) => Some(disks),
        Err(e) => {
            tracing::warn!(error = %e, "cannot read disk use; disk_usage_percent stays at 0");
            None
        }
    };
    tokio::time::sleep(sysinfo::MINIMUM_CPU_UPDATE_INTERVAL).await;
    let mut ticker = tokio::time::interval(interval);
    loop {
        tokio::select! {
            _ = ticker.tick() => {
                sample(&mut sys, &metrics);
                if let Some(disks) = &mut disks {
                    disks.refresh(false);
                    if let Some(percent) = disk_percent(disks, &data_dir) {
                        metrics.disk_usage_percent.set(percent);
                    }
                }
            }
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
/// Use of the file system mounted deepest above `dir`, in percent.
fn disk_percent(disks: &Disks, dir: &std::path::Path) -> Option<f64> {
    let disk = disks
        .iter()
        .filter(|d| dir.starts_with(d.mount_point()))
        .max_by_key(|d| d.mount_point().as_os_str().len())?;
    let total = disk.total_space();
    (total > 0).then(|| (total - disk.available_space().min(total)) as f64 * 100.0 / total as f64)
}

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
            std::env::temp_dir(),
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
        let disk = metrics.disk_usage_percent.get();
        assert!(disk > 0.0 && disk <= 100.0, "{disk}");
        let cpu = metrics.system_cpu_percent.get();
        assert!((0.0..=100.0).contains(&cpu), "{cpu}");
        trigger.trigger();
        tokio::time::timeout(Duration::from_secs(1), task)
            .await
            .unwrap()
            .unwrap();
    }
}
