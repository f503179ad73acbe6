//! SIGINT, SIGTERM and SIGHUP as a flag that futures can wait on: the run loop checks it
//! between steps and races it against a request in flight, so that state is saved and the
//! exit is 130 whatever the runner was doing.

use std::time::Duration;

use tokio::time::Instant;

use super::events::{Observer, RunEvent};
use crate::error::{Error, Result};

/// A step that takes longer than this is said (a large tree's first snapshot).
const SAY_AFTER: Duration = Duration::from_secs(1);

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
            streams.push(signal(kind).map_err(|e| Error::internal("cannot handle signals", e))?);
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

    /// `work`'s result, unless an interrupt comes first (`Error::Interrupted`; `work` is
    /// dropped: a sleep ends, a check's process group is killed).
    pub(crate) async fn unless<T>(&self, work: impl Future<Output = T>) -> Result<T> {
        // The interrupt first: work that is ready at the same moment (a prompt's turn to
        // merge, come because the interrupt ended the prompt before it) does not go on.
        tokio::select! {
            biased;
            () = self.wait() => Err(Error::Interrupted),
            out = work => Ok(out),
        }
    }
}

/// What a long step needs: the interrupt that gives it up, and whom to tell it is slow.
#[derive(Clone, Copy)]
pub(crate) struct Wait<'w> {
    pub(crate) interrupt: &'w Interrupt,
    pub(crate) observer: &'w dyn Observer,
}

impl Wait<'_> {
    /// `step` (`what` it does), told to the user if it takes more than a second, and given
    /// up (`Error::Interrupted`) on Ctrl-C.
    pub(crate) async fn step<T>(
        &self,
        what: &str,
        step: impl Future<Output = Result<T>>,
    ) -> Result<T> {
        tokio::pin!(step);
        let deadline = Instant::now() + SAY_AFTER;
        let mut said = false;
        loop {
            tokio::select! {
                out = &mut step => return out,
                () = tokio::time::sleep_until(deadline), if !said => {
                    said = true;
                    self.observer.event(RunEvent::Note(&format!("{what} (git)…")));
                }
                () = self.interrupt.wait() => return Err(Error::Interrupted),
            }
        }
    }
}
