//! The container's own CPU and memory, read from its cgroup.
//!
//! Inside a pod, `/proc/meminfo` and `/proc/stat` describe the node: a busy
//! node looks like a full pod, and a pod about to be killed at its own limit
//! looks idle. The kernel enforces the limits on the process's cgroup, so
//! that is where use is measured against them.
//!
//! Two layouts exist, and the real node of our tests runs the older one:
//! - cgroup v2: one tree; `memory.max`, `memory.current`, `memory.stat`,
//!   `cpu.max` and `cpu.stat` in the process's directory;
//! - cgroup v1: a tree per controller; `memory.limit_in_bytes`,
//!   `memory.usage_in_bytes`, `memory.stat`, `cpu.cfs_quota_us`,
//!   `cpu.cfs_period_us` and `cpuacct.usage`.
//!
//! `/proc/self/cgroup` names the process's directory in each tree. A
//! container runtime mounts the container's own directory at the tree's root,
//! so when the named path does not exist under the mount, the root is it.

use std::path::{Path, PathBuf};

/// Where the process's cgroup files are, found once at start.
#[derive(Debug, Clone, Default)]
pub struct Cgroup {
    memory: Option<Files>,
    cpu: Option<CpuFiles>,
}

/// The memory files of one layout.
#[derive(Debug, Clone)]
enum Files {
    V1(PathBuf),
    V2(PathBuf),
}

/// The CPU files: v2 keeps quota and use in one directory, v1 in two trees.
#[derive(Debug, Clone)]
enum CpuFiles {
    V1 { cpu: PathBuf, cpuacct: PathBuf },
    V2(PathBuf),
}

/// A reading of the container's memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Memory {
    /// The limit, in bytes.
    pub limit: u64,
    /// What the kernel cannot simply drop: use less the inactive file cache,
    /// the figure the kubelet evicts on (its "working set").
    pub working_set: u64,
}

/// A reading of the container's CPU: its limit and the CPU time used so far.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Cpu {
    /// The limit, in cores (quota / period).
    pub limit_cores: f64,
    /// CPU time used since the cgroup was made, in nanoseconds.
    pub used_ns: u64,
}

impl Cgroup {
    /// This process's cgroup, from `/proc/self/cgroup` and `/sys/fs/cgroup`.
    pub fn of_this_process() -> Self {
        match std::fs::read_to_string("/proc/self/cgroup") {
            Ok(table) => Self::discover(Path::new("/sys/fs/cgroup"), &table),
            Err(_) => Self::default(),
        }
    }

    /// The cgroup that `table` (the text of `/proc/<pid>/cgroup`) names,
    /// under the cgroup file systems mounted at `root`.
    pub fn discover(root: &Path, table: &str) -> Self {
        let mut v2 = None;
        let (mut memory, mut cpu, mut cpuacct) = (None, None, None);
        for line in table.lines() {
            let mut parts = line.splitn(3, ':');
            let (Some(_), Some(controllers), Some(path)) =
                (parts.next(), parts.next(), parts.next())
            else {
                continue;
            };
            if controllers.is_empty() {
                v2 = Some(dir_of(root, path));
                continue;
            }
            let mount = root.join(controllers);
            for c in controllers.split(',') {
                // `cpu,cpuacct` is mounted once, usually with a link per name.
                let mount = if root.join(c).is_dir() {
                    root.join(c)
                } else {
                    mount.clone()
                };
                let dir = dir_of(&mount, path);
                match c {
                    "memory" => memory = Some(dir),
                    "cpu" => cpu = Some(dir),
                    "cpuacct" => cpuacct = Some(dir),
                    _ => {}
                }
            }
        }
        // A v1 controller wins over the v2 tree: in the hybrid layout the
        // unified tree exists but holds no controller.
        let v2 = v2.filter(|d| d.join("memory.max").is_file() || d.join("cpu.max").is_file());
        let memory = match (memory, &v2) {
            (Some(d), _) if d.join("memory.limit_in_bytes").is_file() => Some(Files::V1(d)),
            (_, Some(d)) if d.join("memory.max").is_file() => Some(Files::V2(d.clone())),
            _ => None,
        };
        let cpu = match (cpu, cpuacct, &v2) {
            (Some(cpu), Some(cpuacct), _)
                if cpu.join("cpu.cfs_quota_us").is_file()
                    && cpuacct.join("cpuacct.usage").is_file() =>
            {
                Some(CpuFiles::V1 { cpu, cpuacct })
            }
            (_, _, Some(d)) if d.join("cpu.max").is_file() => Some(CpuFiles::V2(d.clone())),
            _ => None,
        };
        Self { memory, cpu }
    }

    /// The memory limit and working set, or `None` without a limit.
    pub fn memory(&self) -> Option<Memory> {
        let (limit, usage, inactive): (u64, u64, Option<u64>) = match self.memory.as_ref()? {
            // v1 counts the hierarchy's cache under `total_`; v2 has one figure.
            Files::V1(d) => (
                read(&d.join("memory.limit_in_bytes"))?,
                read(&d.join("memory.usage_in_bytes"))?,
                stat(
                    &d.join("memory.stat"),
                    &["total_inactive_file", "inactive_file"],
                ),
            ),
            Files::V2(d) => (
                read(&d.join("memory.max"))?,
                read(&d.join("memory.current"))?,
                stat(&d.join("memory.stat"), &["inactive_file"]),
            ),
        };
        // v1 writes "no limit" as the largest page-aligned i64.
        (limit < NO_LIMIT).then(|| Memory {
            limit,
            working_set: usage.saturating_sub(inactive.unwrap_or(0)),
        })
    }

    /// The CPU limit and the CPU time used, or `None` without a limit.
    pub fn cpu(&self) -> Option<Cpu> {
        let (quota, period, used_ns) = match self.cpu.as_ref()? {
            CpuFiles::V1 { cpu, cpuacct } => (
                read::<i64>(&cpu.join("cpu.cfs_quota_us"))?,
                read::<i64>(&cpu.join("cpu.cfs_period_us"))?,
                read(&cpuacct.join("cpuacct.usage"))?,
            ),
            CpuFiles::V2(d) => {
                // `max 100000` means no quota.
                let max = std::fs::read_to_string(d.join("cpu.max")).ok()?;
                let mut fields = max.split_whitespace();
                let quota = fields.next()?.parse().ok()?;
                let period = fields.next()?.parse().ok()?;
                let used_us = stat(&d.join("cpu.stat"), &["usage_usec"])?;
                (quota, period, used_us.saturating_mul(1000))
            }
        };
        (quota > 0 && period > 0).then(|| Cpu {
            limit_cores: quota as f64 / period as f64,
            used_ns,
        })
    }
}

/// At or above this, a v1 memory limit is "none" (it is `i64::MAX` rounded
/// down to a page).
const NO_LIMIT: u64 = 1 << 62;

/// `path` under `mount`, or `mount` itself when the container's directory is
/// mounted at its root.
fn dir_of(mount: &Path, path: &str) -> PathBuf {
    let nested = mount.join(path.trim_start_matches('/'));
    if nested.is_dir() {
        nested
    } else {
        mount.to_path_buf()
    }
}

/// A file holding one number.
fn read<T: std::str::FromStr>(path: &Path) -> Option<T> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// The value of the first of `keys` present in a `key value` stat file,
/// read once.
fn stat(path: &Path, keys: &[&str]) -> Option<u64> {
    let text = std::fs::read_to_string(path).ok()?;
    keys.iter().find_map(|key| {
        text.lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix(' ')?.trim().parse().ok())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, files: &[(&str, &str)]) {
        for (name, text) in files {
            let path = dir.join(name);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        }
    }

    fn temp(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("securevault-cgroup-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn a_v1_container_reads_its_own_directory_mounted_at_the_root() {
        // As runc mounts it: the table names the host's path, the mount
        // shows only the container's directory.
        let root = temp("v1");
        write(
            &root,
            &[
                ("memory/memory.limit_in_bytes", "134217728\n"),
                ("memory/memory.usage_in_bytes", "80000000\n"),
                (
                    "memory/memory.stat",
                    "cache 30000000\ninactive_file 1000\ntotal_inactive_file 16000000\n",
                ),
                ("cpu,cpuacct/cpu.cfs_quota_us", "50000\n"),
                ("cpu,cpuacct/cpu.cfs_period_us", "100000\n"),
                ("cpu,cpuacct/cpuacct.usage", "123456789\n"),
            ],
        );
        let table = "12:memory:/kubepods/burstable/pod1/abc\n\
                     4:cpu,cpuacct:/kubepods/burstable/pod1/abc\n\
                     0::/\n";
        let cgroup = Cgroup::discover(&root, table);
        assert_eq!(
            cgroup.memory(),
            Some(Memory {
                limit: 134_217_728,
                working_set: 64_000_000
            })
        );
        assert_eq!(
            cgroup.cpu(),
            Some(Cpu {
                limit_cores: 0.5,
                used_ns: 123_456_789
            })
        );
    }

    #[test]
    fn a_v1_process_on_a_host_reads_the_directory_its_table_names() {
        let root = temp("v1-host");
        write(
            &root,
            &[
                ("memory/memory.limit_in_bytes", "9223372036854771712\n"),
                ("memory/jobs/a/memory.limit_in_bytes", "1073741824\n"),
                ("memory/jobs/a/memory.usage_in_bytes", "2000\n"),
                ("memory/jobs/a/memory.stat", "total_inactive_file 500\n"),
                ("cpu/cpu.cfs_quota_us", "-1\n"),
                ("cpu/cpu.cfs_period_us", "100000\n"),
                ("cpuacct/cpuacct.usage", "1\n"),
            ],
        );
        let cgroup = Cgroup::discover(&root, "3:cpuacct:/\n2:cpu:/\n1:memory:/jobs/a\n");
        assert_eq!(
            cgroup.memory(),
            Some(Memory {
                limit: 1_073_741_824,
                working_set: 1500
            })
        );
        // A quota of -1 is no CPU limit: the host's figure is used instead.
        assert_eq!(cgroup.cpu(), None);
        // And the root's "no limit" is no memory limit.
        let unlimited = Cgroup::discover(&root, "1:memory:/\n");
        assert_eq!(unlimited.memory(), None);
    }

    #[test]
    fn a_v2_container_reads_max_current_and_stat() {
        let root = temp("v2");
        write(
            &root,
            &[
                ("memory.max", "268435456\n"),
                ("memory.current", "100000000\n"),
                (
                    "memory.stat",
                    "anon 60000000\nfile 40000000\ninactive_file 30000000\n",
                ),
                ("cpu.max", "200000 100000\n"),
                ("cpu.stat", "usage_usec 5000\nuser_usec 4000\n"),
            ],
        );
        let cgroup = Cgroup::discover(&root, "0::/\n");
        assert_eq!(
            cgroup.memory(),
            Some(Memory {
                limit: 268_435_456,
                working_set: 70_000_000
            })
        );
        assert_eq!(
            cgroup.cpu(),
            Some(Cpu {
                limit_cores: 2.0,
                used_ns: 5_000_000
            })
        );
        write(
            &root,
            &[("memory.max", "max\n"), ("cpu.max", "max 100000\n")],
        );
        assert_eq!(cgroup.memory(), None);
        assert_eq!(cgroup.cpu(), None);
    }

    #[test]
    fn no_cgroup_file_system_means_no_container_figures() {
        let root = temp("none");
        let cgroup = Cgroup::discover(&root, "0::/\n");
        assert_eq!(cgroup.memory(), None);
        assert_eq!(cgroup.cpu(), None);
    }
}
