//! What the process tells the outside about itself: JSON logs, the Prometheus
//! registry, and the background sampler of CPU, memory
//! (the container's, from its cgroup) and the data volume.

pub mod cgroup;
pub mod logging;
pub mod metrics;
pub mod system;

pub use metrics::Metrics;
