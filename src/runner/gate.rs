//! How many requests may be in flight at once (`run --jobs`, `[llm] max_concurrency`),
//! adjusted as the endpoint answers: halved on a rate-limit refusal, raised by one after as
//! many successes as the limit (additive increase, multiplicative decrease), so that N
//! prompts do not all hit a server's wall and a server that takes two at a time sees a
//! few refusals, not a storm.

use std::cell::Cell;

use tokio::sync::Notify;

pub(crate) struct Gate {
    /// The most the limit may rise to.
    max: usize,
    limit: Cell<usize>,
    in_use: Cell<usize>,
    /// Successes since the limit last changed.
    streak: Cell<usize>,
    freed: Notify,
}

/// A request's place through the gate, given back when dropped.
pub(crate) struct Pass<'g> {
    gate: &'g Gate,
}

impl Drop for Pass<'_> {
    fn drop(&mut self) {
        self.gate
            .in_use
            .set(self.gate.in_use.get().saturating_sub(1));
        self.gate.freed.notify_waiters();
    }
}

impl Gate {
    /// A gate for at most `max` requests at once (at least one).
    pub(crate) fn new(max: usize) -> Gate {
        let max = max.max(1);
        Gate {
            max,
            limit: Cell::new(max),
            in_use: Cell::new(0),
            streak: Cell::new(0),
            freed: Notify::new(),
        }
    }

    /// The limit now.
    pub(crate) fn limit(&self) -> usize {
        self.limit.get()
    }

    /// Requests through the gate now.
    pub(crate) fn in_use(&self) -> usize {
        self.in_use.get()
    }

    /// Waits for a place under the limit.
    pub(crate) async fn pass(&self) -> Pass<'_> {
        loop {
            let freed = self.freed.notified();
            if self.in_use.get() < self.limit.get() {
                self.in_use.set(self.in_use.get() + 1);
                return Pass { gate: self };
            }
            freed.await;
        }
    }

    /// A request settled, refused for the endpoint's rate or not; what to tell the user
    /// when the limit went down.
    pub(crate) fn settled(&self, rate_limited: bool) -> Option<String> {
        if !rate_limited {
            self.answered();
            return None;
        }
        let before = self.limit();
        self.refused();
        (self.limit() < before).then(|| {
            format!(
                "the endpoint refused a request for its rate: {} at once from now, more again as it answers",
                self.limit()
            )
        })
    }

    /// The endpoint refused a request for its rate: the limit halves (not below one).
    pub(crate) fn refused(&self) {
        self.limit.set((self.limit.get() / 2).max(1));
        self.streak.set(0);
    }

    /// The endpoint answered: after as many answers as the limit, it rises by one.
    pub(crate) fn answered(&self) {
        let streak = self.streak.get() + 1;
        if streak >= self.limit.get() && self.limit.get() < self.max {
            self.limit.set(self.limit.get() + 1);
            self.streak.set(0);
            self.freed.notify_waiters();
        } else {
            self.streak.set(streak);
        }
    }
}

#[cfg(test)]
mod tests {
    use futures_util::FutureExt;

    use super::*;

    #[test]
    fn the_limit_halves_on_a_refusal_and_climbs_back_by_one() {
        let g = Gate::new(8);
        // (what happens, the limit after)
        let steps: [(&str, usize); 9] = [
            ("refused", 4),
            ("refused", 2),
            ("refused", 1),
            ("refused", 1),
            ("answered", 2),
            ("answered", 2),
            ("answered", 3),
            ("answered", 3),
            ("refused", 1),
        ];
        for (i, (what, limit)) in steps.iter().enumerate() {
            match *what {
                "refused" => g.refused(),
                _ => g.answered(),
            }
            assert_eq!(g.limit(), *limit, "step {i}: {what}");
        }
    }

    #[test]
    fn passes_wait_for_a_place_under_the_limit() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        rt.block_on(async {
            let g = Gate::new(2);
            let a = g.pass().await;
            let _b = g.pass().await;
            assert_eq!(g.in_use(), 2);
            let third = g.pass();
            tokio::pin!(third);
            assert!(third.as_mut().now_or_never().is_none(), "a third waits");
            drop(a);
            let c = third.as_mut().now_or_never();
            assert!(c.is_some(), "then goes");
            assert_eq!(g.in_use(), 2);
        });
    }
}
