//! SIGINT, SIGTERM and SIGHUP as a flag that futures can wait on: the run loop checks it
//! between steps and races it against a request in flight, so that state is saved and the
//! exit is 130 whatever the runner was doing.

use crate::error::{Error, Result};

#[derive(Clone)]
pub(crate) struct Interrupt {
    rx: tokio::sync::watch::Receiver<bool>,
}

impl Interrupt {
    /// Installs the handlers (inside the runtime).
    pub(crate) fn install() -> Result<Interrupt> {
        use tokio::signal::unix::{SignalKind, signal};
        let (tx, rx) = tokio::sync::watch::channel(false);
        let mut streams = Vec::new();
        for kind in [
            SignalKind::interrupt(),
            SignalKind::terminate(),
            SignalKind::hangup(),
        ] {
            streams.push(
                signal(kind).map_err(|e| Error::Usage(format!("cannot handle signals: {e}")))?,
            );
        }
        tokio::spawn(async move {
            let [mut a, mut b, mut c]: [_; 3] = match streams.try_into() {
                Ok(s) => s,
                Err(_) => return,
            };
            tokio::select! {
                _ = a.recv() => {}
                _ = b.recv() => {}
                _ = c.recv() => {}
            }
            let _ = tx.send(true);
        });
        Ok(Interrupt { rx })
    }

    pub(crate) fn is_set(&self) -> bool {
        *self.rx.borrow()
    }

    pub(crate) async fn wait(&self) {
        let mut rx = self.rx.clone();
        let _ = rx.wait_for(|set| *set).await;
    }
}
