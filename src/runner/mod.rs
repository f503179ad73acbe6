//! The unattended run: for each prompt left ([`session`]), attempts until one is accepted
//! or they are used up, each attempt in four steps ([`attempt`]): **prepare** (build and
//! count the request, reserve what the budgets allow: [`endpoint`], [`reserve`]), **send**
//! (journal the attempt, then send it), **judge** (what the reply means: [`verdict`],
//! [`accounting`], [`verification`], the workspace's commit: [`snapshot`]) and **settle**
//! (journal the result, save the outputs, or schedule the retry: [`retry`]). The steps
//! return what happened ([`events::Said`]); the session and the attempt record it through
//! one function ([`tally::Book::record`]), and only the session stops a run. Every state
//! change is a journal event, appended and fsynced before it counts; the views
//! (`status.json`, `memory.json`) are rebuilt from the folded journal at most once a
//! second between prompts and always at a failure, a halt and the end.
//!
//! The runner knows nothing of the command line: it takes a [`Context`] and [`Options`] and
//! tells an [`Observer`] what happens ([`events`]). The single-threaded runtime only ever
//! has one request in flight; state is written between requests (and, for an agent's
//! process group, while it runs), in small fsynced appends.

mod accounting;
mod attempt;
mod context;
mod endpoint;
mod events;
mod gate;
mod interrupt;
mod lanes;
mod notify;
mod opening;
mod pause;
mod queue;
mod reserve;
mod retry;
mod session;
mod snapshot;
mod steps;
mod tally;
mod turns;
mod verdict;
mod verification;

pub(crate) use context::{Context, Options, Selection};
pub(crate) use events::{Observer, RunEvent};
pub(crate) use session::run;
