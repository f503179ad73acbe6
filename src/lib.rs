//! `orchestrator`: runs a chain of LLM prompt files unattended, inside hard token budgets,
//! with a checkpoint after every prompt. See README.md and the spec for the contract.
//!
//! Data flows one way: [`plan`] reads the build, [`request`] turns a prompt into what is
//! sent, [`providers`] send it, [`state`] records what came back; [`runner`] drives that
//! loop, [`budget`] decides what may be spent, [`report`] prints, [`cli`] is the edge.

pub mod budget;
pub mod checkpoint;
pub mod cli;
pub mod config;
pub mod error;
pub mod plan;
pub mod providers;
pub mod report;
pub mod request;
pub mod runner;
pub mod state;
pub mod template;
pub mod tokens;
