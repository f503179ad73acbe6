//! The commands, one file each and thin: each takes the [`crate::settings::Settings`], calls the layers
//! below, and says the result through the printer ([`crate::printer`]) and the report
//! ([`crate::tables`]). `Ok` is exit 0; an error carries its exit code.

mod estimate;
mod init;
mod plan;
mod progress;
mod report;
mod run;
mod status;
mod tokens;

pub(crate) use estimate::estimate;
pub(crate) use init::init;
pub(crate) use plan::plan;
pub(crate) use report::report;
pub(crate) use run::{RunRange, rerun, run};
pub(crate) use status::status;
pub(crate) use tokens::tokens;
