//! The loop both queue workers (email delivery, webhook delivery) run: work in
//! rounds; after a round that found less than a full batch, wait until woken
//! (something was queued), a poll interval passes (retries fall due) or
//! shutdown. A round in progress always finishes, so nothing claimed is left
//! half done by an orderly stop.

use std::time::Duration;

use tokio::sync::Notify;

use crate::shutdown::Shutdown;

/// Runs `round` until `shutdown`; `round` returns whether more work is
/// waiting (a full batch was claimed), in which case the next round starts
/// at once.
pub async fn run<F, Fut>(shutdown: &Shutdown, wake: &Notify, poll: Duration, mut round: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    while !shutdown.is_fired() {
        if !round().await {
            tokio::select! {
                () = wake.notified() => {}
                () = tokio::time::sleep(poll) => {}
                () = shutdown.wait() => {}
            }
        }
    }
}

/// Says when a period has passed since it last said so; the first call is
/// due. For the gauges a worker refreshes between rounds (a Mutex, not a
/// Cell, because the worker's future must be `Send`).
pub struct Every {
    period: Duration,
    last: std::sync::Mutex<Option<std::time::Instant>>,
}

impl Every {
    /// Due now, then once per `period`.
    pub fn new(period: Duration) -> Self {
        Self {
            period,
            last: std::sync::Mutex::new(None),
        }
    }

    /// Whether the period has passed; if so, the next one starts now.
    pub fn due(&self) -> bool {
        let Ok(mut last) = self.last.lock() else {
            return true;
        };
        let due = last.is_none_or(|at| at.elapsed() >= self.period);
        if due {
            *last = Some(std::time::Instant::now());
        }
        due
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_is_due_first_then_once_per_period() {
        let every = Every::new(Duration::from_millis(50));
        assert!(every.due());
        assert!(!every.due());
        std::thread::sleep(Duration::from_millis(60));
        assert!(every.due());
        assert!(!every.due());
    }
}
