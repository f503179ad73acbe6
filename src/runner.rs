//! The unattended run. (Being written: see issue 5.)

use crate::cli::{RunArgs, Settings};
use crate::error::{Error, Result};

pub fn run_command(_settings: &Settings, _args: &RunArgs) -> Result<i32> {
    Err(Error::Usage(
        "`run` is not available yet; use `estimate`".into(),
    ))
}

pub fn rerun_command(_settings: &Settings, _id: &str, _and_after: bool) -> Result<i32> {
    Err(Error::Usage("`rerun` is not available yet".into()))
}

pub fn status_command(_settings: &Settings) -> Result<i32> {
    Err(Error::Usage("`status` is not available yet".into()))
}
