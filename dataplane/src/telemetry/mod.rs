//! What the process tells the outside about itself: JSON logs, the Prometheus
//! registry, and the background sampler of CPU and memory.

pub mod logging;
pub mod metrics;
pub mod system;

pub use metrics::Metrics;
