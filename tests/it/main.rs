//! Integration tests: the real binary against temporary builds (and the fake LLM server).

#[path = "../support/mod.rs"]
mod support;

mod agent_build;
mod apis;
mod architecture;
mod boundary;
mod boundary_props;
mod chains;
mod claude_code;
mod fake;
mod foundation;
mod hardening;
mod hostile;
mod newcomer;
mod overnight;
mod parallel;
mod parallel_agents;
mod providers;
mod recovery;
mod report;
mod run;
mod snapshots;
mod tokens;
