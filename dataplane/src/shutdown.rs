//! A shutdown signal that many tasks can wait on: the HTTP server, the system
//! sampler, and later the email worker. One [`ShutdownTrigger`] fires it once;
//! every clone of [`Shutdown`] sees it, including clones made afterwards.

use tokio::sync::watch;

/// Fires the shutdown signal.
pub struct ShutdownTrigger(watch::Sender<bool>);

/// Waits for the shutdown signal; cheap to clone.
#[derive(Clone)]
pub struct Shutdown(watch::Receiver<bool>);

impl Shutdown {
    /// A new signal, not yet fired.
    pub fn new() -> (ShutdownTrigger, Shutdown) {
        let (tx, rx) = watch::channel(false);
        (ShutdownTrigger(tx), Shutdown(rx))
    }

    /// Resolves once the signal fired (or its trigger was dropped, which
    /// means nobody can ask for an orderly stop any more).
    pub async fn wait(&self) {
        let mut rx = self.0.clone();
        let _ = rx.wait_for(|fired| *fired).await;
    }

    /// Whether the signal has fired.
    pub fn is_fired(&self) -> bool {
        *self.0.borrow()
    }
}

impl ShutdownTrigger {
    /// Fires the signal; later calls do nothing.
    pub fn trigger(&self) {
        self.0.send_replace(true);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn every_clone_sees_the_signal() {
        let (trigger, shutdown) = Shutdown::new();
        let early = shutdown.clone();
        let waiter = tokio::spawn(async move { early.wait().await });
        assert!(!shutdown.is_fired());
        trigger.trigger();
        tokio::time::timeout(Duration::from_secs(1), waiter)
            .await
            .unwrap()
            .unwrap();
        let late = shutdown.clone();
        tokio::time::timeout(Duration::from_secs(1), late.wait())
            .await
            .unwrap();
        assert!(shutdown.is_fired());
    }

    #[tokio::test]
    async fn a_dropped_trigger_counts_as_shutdown() {
        let (trigger, shutdown) = Shutdown::new();
        drop(trigger);
        tokio::time::timeout(Duration::from_secs(1), shutdown.wait())
            .await
            .unwrap();
    }
}
