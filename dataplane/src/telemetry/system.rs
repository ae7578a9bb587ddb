//! CPU, memory and the data volume, sampled in the background.
//!
//! A CPU percentage needs two readings some time apart, and a refresh reads
//! several files under /proc and /sys: far too slow for a request. So one
//! task refreshes every few seconds and writes the gauges; `/api/metrics` and
//! `/api/health/detailed` only read them.
//!
//! CPU and memory are measured against the container's own limits (its
//! cgroup), which is what throttles it and kills it; the host's figures from
//! sysinfo stand in only where the container has no limit.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use crate::shutdown::Shutdown;
use sysinfo::{CpuRefreshKind, Disks, MemoryRefreshKind, RefreshKind, System};

use super::{Metrics, cgroup::Cgroup};

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
    let mut container = Container {
        cgroup: Cgroup::of_this_process(),
        last_cpu: None,
    };
    container.sample_cpu();
    tokio::time::sleep(sysinfo::MINIMUM_CPU_UPDATE_INTERVAL).await;
    let mut ticker = tokio::time::interval(interval);
    loop {
        tokio::select! {
            _ = ticker.tick() => {
                sample(&mut sys, &mut container, &metrics);
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

/// The container's cgroup and its previous CPU reading.
struct Container {
    cgroup: Cgroup,
    last_cpu: Option<(Instant, u64)>,
}

impl Container {
    /// CPU use since the previous call in percent of the limit, and the
    /// limit in cores; `None` without a limit or before a second reading.
    fn sample_cpu(&mut self) -> Option<(f64, f64)> {
        let cpu = self.cgroup.cpu()?;
        let now = Instant::now();
        let previous = self.last_cpu.replace((now, cpu.used_ns));
        let (then, used_then) = previous?;
        let elapsed = now.duration_since(then).as_nanos() as f64;
        (elapsed > 0.0).then(|| {
            let used = cpu.used_ns.saturating_sub(used_then) as f64;
            (used * 100.0 / (elapsed * cpu.limit_cores), cpu.limit_cores)
        })
    }
}

fn sample(sys: &mut System, container: &mut Container, metrics: &Metrics) {
    match container.sample_cpu() {
        Some((percent, cores)) => {
            metrics.system_cpu_percent.set(percent);
            metrics.container_cpu_limit_cores.set(cores);
        }
        None => {
            sys.refresh_cpu_usage();
            metrics
                .system_cpu_percent
                .set(f64::from(sys.global_cpu_usage()));
            metrics.container_cpu_limit_cores.set(0.0);
        }
    }
    match container.cgroup.memory() {
        Some(memory) => {
            metrics
                .system_memory_percent
                .set(memory.working_set as f64 * 100.0 / memory.limit as f64);
            metrics
                .container_memory_limit_bytes
                .set(memory.limit as f64);
        }
        None => {
            sys.refresh_memory();
            metrics.system_memory_percent.set(host_memory_percent(sys));
            metrics.container_memory_limit_bytes.set(0.0);
        }
    }
}

/// Use of the file system mounted deepest above `dir`, in percent.
fn disk_percent(disks: &Disks, dir: &std::path::Path) -> Option<f64> {
    let disk = disks
        .iter()
        .filter(|d| dir.starts_with(d.mount_point()))
        .max_by_key(|d| d.mount_point().as_os_str().len())?;
    let total = disk.total_space();
    (total > 0).then(|| (total - disk.available_space().min(total)) as f64 * 100.0 / total as f64)
}

fn host_memory_percent(sys: &System) -> f64 {
    let total = sys.total_memory();
    if total == 0 {
        0.0
    } else {
        sys.used_memory() as f64 * 100.0 / total as f64
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
