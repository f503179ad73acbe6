//! `journal.jsonl`, the truth: one JSON event per line, each with a schema version and a
//! time, appended and fsynced (by the store) before the step it records counts as
//! done. A torn last line, which a crash mid-write leaves, is dropped with a warning; any
//! other unreadable line is an error that names it, and the file is never overwritten.

use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::layout::SCHEMA_VERSION;
use crate::documents::{AttemptOutcome, CheckSource};
use crate::error::{Error, Result};
use crate::process::ProcessGroup;
use crate::workspace::Extras;

/// How an attempt ended, with what it cost.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct AttemptResult {
    pub(crate) id: String,
    pub(crate) attempt: u32,
    pub(crate) outcome: AttemptOutcome,
    /// All input, cache reads and writes included.
    pub(crate) input_tokens: u64,
    pub(crate) output_tokens: u64,
    /// Of `input_tokens`: read from and written to the provider's prompt cache.
    #[serde(default, skip_serializing_if = "is_zero_u64")]
    pub(crate) cache_read_tokens: u64,
    #[serde(default, skip_serializing_if = "is_zero_u64")]
    pub(crate) cache_write_tokens: u64,
    /// Of `output_tokens`: reasoning (billed as output, never seen).
    #[serde(default, skip_serializing_if = "is_zero_u64")]
    pub(crate) reasoning_tokens: u64,
    /// Counted by the tokenizer, not reported by the endpoint.
    pub(crate) estimated: bool,
    /// A usage report that could not be trusted (kept as sent; the counts above are
    /// the tokenizer's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) reported_usage: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) finish_reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) request_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) error: Option<String>,
    pub(crate) duration_ms: u64,
    #[serde(default)]
    pub(crate) cost_usd: f64,
    /// An agent's call: its usage includes the agent's own prompts and tools, so it
    /// never calibrates the tokenizer.
    #[serde(default, skip_serializing_if = "is_false")]
    pub(crate) by_agent: bool,
    /// Refused for the endpoint's rate while other requests of the run were in flight (the
    /// run's concurrency's doing), or for a rate or usage limit the run paused for (the
    /// account's): not the prompt's, so it does not count against `retry.max_attempts`.
    #[serde(default, skip_serializing_if = "is_false")]
    pub(crate) throttled: bool,
    /// No cost is known for it: it may have been billed, the endpoint reported none and
    /// there is no `[pricing]` (its `cost_usd` of 0 is not a price).
    #[serde(default, skip_serializing_if = "is_false")]
    pub(crate) unpriced: bool,
    /// What the agent itself reported failing on its way (commands, tools).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) agent_errors: Vec<String>,
}

impl AttemptResult {
    /// What it spent against the token budgets: input and output, an agent's cache reads
    /// apart (they are shown and priced, not budgeted: its own prompts and tools, read
    /// again on every turn, would spend a budget on nothing the build asked). The one rule
    /// the ledger, the fold and the report's burn-down all count by.
    pub(crate) fn budgeted(&self) -> u64 {
        let cache_reads = if self.by_agent {
            self.cache_read_tokens
        } else {
            0
        };
        self.input_tokens
            .saturating_sub(cache_reads)
            .saturating_add(self.output_tokens)
    }
}

/// One line of the journal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub(crate) enum Event {
    SessionStarted {
        session_id: String,
        started: String,
        /// Run against the embedded mock model: kept apart from real sessions.
        #[serde(default, skip_serializing_if = "is_false")]
        mock: bool,
    },
    /// A run (or rerun) began in this session, by process `pid`.
    RunStarted {
        pid: u32,
        command: String,
        /// The version of orchestrator that ran (and wrote what follows), so that a later
        /// record this version cannot read can say who wrote it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        version: Option<String>,
    },
    /// Written before the request is sent.
    AttemptStarted {
        id: String,
        file: String,
        /// Numbered per prompt across the session.
        attempt: u32,
        /// The input the budget check reserved: the endpoint's count, the tokenizer's
        /// count scaled by calibration or a margin, or the tokenizer's count.
        input_tokens: u64,
        max_tokens: u32,
        /// The tokenizer's count, where `input_tokens` is another figure.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tokenizer_tokens: Option<u64>,
        /// Which `[[llm.fallback]]` answers it (none: `[llm]` itself).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        by: Option<String>,
        /// The mark in the environment of every process the attempt starts: a run resumed
        /// after a crash kills what still carries it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        mark: Option<String>,
        /// The worktree it works in (a parallel agent build), which leaves the workspace
        /// itself as it was.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        worktree: Option<String>,
    },
    /// An agent's process group exists (written while the agent runs): a run resumed
    /// after a crash kills it if it is still alive.
    AgentStarted {
        id: String,
        attempt: u32,
        group: ProcessGroup,
    },
    AttemptFinished(AttemptResult),
    Retry {
        id: String,
        attempt: u32,
        delay_ms: u64,
        reason: String,
    },
    /// An iteration of a prompt with an `until` check: accepted and committed, but the
    /// check still fails (`output`), so the prompt is sent again on top of `commit`.
    Iterated {
        id: String,
        iteration: u32,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        commit: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        extras: Option<crate::workspace::Extras>,
        check: String,
        output: String,
    },
    /// A rate or usage limit: nothing is sent until `until` (Unix milliseconds), and a
    /// run started before then waits for it first.
    Paused {
        id: String,
        until_ms: u64,
        reason: String,
    },
    Completed {
        id: String,
        name: String,
        file: String,
        hash: String,
        variables: Map<String, Value>,
        #[serde(default)]
        files_created: Vec<String>,
        /// `outputs/<id>.md`, a copy of `reply` for people and tools.
        output: String,
        /// The accepted reply: durable with this event, so the output file needs no
        /// fsync of its own and is rewritten from here if it is missing.
        #[serde(default)]
        reply: String,
        /// The workspace's commit of this prompt's work (agent builds with snapshots).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        commit: Option<String>,
        /// What git does not keep of that commit's tree (ignored entries, empty folders).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        extras: Option<Extras>,
    },
    /// The workspace's starting point (`id` none: the session's baseline), or the user's
    /// changes taken in with `--allow-dirty` on top of prompt `id`'s commit (or of the
    /// baseline, which it then replaces).
    WorkspaceCommitted {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
        commit: String,
        message: String,
        /// The baseline's: the session's branch (`refs/heads/…`), or `detached`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        head: Option<String>,
        #[serde(default, skip_serializing_if = "is_false")]
        detached: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        extras: Option<Extras>,
    },
    /// What an attempt that was not accepted left in the workspace, as a commit on no
    /// branch (kept as `kept` when it holds anything), and its extras: what the runner
    /// will discard; anything else found later is the user's.
    WorkspaceLeft {
        id: String,
        attempt: u32,
        commit: String,
        #[serde(default)]
        extras: Extras,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        kept: Option<String>,
    },
    /// The workspace was put back to `commit` before an attempt; what was discarded, and
    /// where the commits it left are kept.
    WorkspaceRestored {
        commit: String,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        discarded: Vec<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        kept: Option<String>,
    },
    /// A check ran after attempt `attempt` of prompt `id`.
    Verified {
        id: String,
        attempt: u32,
        /// Where the check comes from.
        from: CheckSource,
        check: String,
        passed: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        exit_code: Option<i32>,
        duration_ms: u64,
        /// The end of its output (4 KiB).
        output: String,
    },
    /// A parallel agent build's merge of attempt `attempt` at prompt `id` is about to move
    /// the workspace from commit `from` to `to` (journaled first, so that a crash in the
    /// move is told from the user's changes).
    Merging {
        id: String,
        attempt: u32,
        from: String,
        to: String,
        /// What git does not hold of each end (ignored entries, empty folders), so that
        /// one the user adds after a crash in the move is told apart.
        #[serde(default)]
        from_extras: Extras,
        #[serde(default)]
        to_extras: Extras,
    },
    /// Completed prompts whose work is no longer in the workspace (an earlier prompt was
    /// built again under them): to be run again.
    Reopened {
        ids: Vec<String>,
        reason: String,
    },
    Failed {
        id: String,
        file: String,
        error: String,
    },
    /// The endpoint refused a setting and the runner changed it for the rest of the
    /// session (`llm.max_tokens_param` to `max_completion_tokens`, `llm.temperature` to
    /// "not sent"), with the endpoint's words.
    Learned {
        setting: String,
        value: String,
        reason: String,
    },
    Skipped {
        id: String,
        reason: String,
    },
    Warning {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
        message: String,
    },
    Halted {
        reason: String,
        code: i32,
    },
    Finished {},
}

/// A journal line: schema version, time, event.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Record {
    pub(crate) v: u32,
    pub(crate) at: String,
    #[serde(flatten)]
    pub(crate) event: Event,
}

pub(crate) fn now() -> String {
    humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string()
}

pub(super) fn is_false(b: &bool) -> bool {
    !*b
}

pub(super) fn is_zero_u64(n: &u64) -> bool {
    *n == 0
}

/// Reads `journal.jsonl`: the records, and a warning if a torn last line was dropped.
pub(crate) fn read_journal(path: &Path) -> Result<(Vec<Record>, Option<String>)> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((Vec::new(), None)),
        Err(e) => return Err(Error::io(path, e)),
    };
    parse_journal(&bytes, path)
}

/// Parses journal bytes (see [`read_journal`]); `path` names the file in messages.
pub(crate) fn parse_journal(bytes: &[u8], path: &Path) -> Result<(Vec<Record>, Option<String>)> {
    let mut records = Vec::new();
    let mut warning = None;
    let lines: Vec<&[u8]> = bytes.split_inclusive(|&b| b == b'\n').collect();
    let mut writer = None;
    for (i, line) in lines.iter().enumerate() {
        match parse_line(line, i + 1, path, &mut writer)? {
            Line::Record(r) => records.push(*r),
            Line::Torn(w) => warning = Some(w),
        }
    }
    Ok((records, warning))
}

/// Reads `journal.jsonl` one line at a time, handing each record to `each` (for a reader
/// that keeps what it needs, not every record); the warning if a torn last line was
/// dropped. No journal is no records.
pub(crate) fn each_record(path: &Path, mut each: impl FnMut(Record)) -> Result<Option<String>> {
    use std::io::BufRead as _;
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io(path, e)),
    };
    let mut reader = std::io::BufReader::new(file);
    let (mut line, mut number, mut warning, mut writer) = (Vec::new(), 0, None, None);
    loop {
        line.clear();
        if reader
            .read_until(b'\n', &mut line)
            .map_err(|e| Error::io(path, e))?
            == 0
        {
            return Ok(warning);
        }
        number += 1;
        match parse_line(&line, number, path, &mut writer)? {
            Line::Record(r) => each(*r),
            Line::Torn(w) => warning = Some(w),
        }
    }
}

enum Line {
    Record(Box<Record>),
    /// A last line a crash cut short: the warning.
    Torn(String),
}

/// One line of the journal, with its newline unless it is the last: a record, a torn
/// last line (no newline, not JSON), or an error naming the line. `writer`: the version
/// of orchestrator that wrote the lines so far (its last `run_started` says).
fn parse_line(
    line: &[u8],
    number: usize,
    path: &Path,
    writer: &mut Option<String>,
) -> Result<Line> {
    let terminated = line.last() == Some(&b'\n');
    let text = line.strip_suffix(b"\n").unwrap_or(line);
    let parsed = std::str::from_utf8(text)
        .map_err(|e| e.to_string())
        .and_then(|s| serde_json::from_str::<Record>(s).map_err(|e| e.to_string()));
    match parsed {
        Ok(r) if r.v > SCHEMA_VERSION => Err(Error::state(
            path,
            format!(
                "line {number} has schema version {}, newer than this orchestrator ({SCHEMA_VERSION}); upgrade orchestrator",
                r.v
            ),
        )),
        Ok(r) => {
            if let Event::RunStarted { version, .. } = &r.event {
                writer.clone_from(version);
            }
            Ok(Line::Record(Box::new(r)))
        }
        Err(_) if !terminated => Ok(Line::Torn(format!(
            "{}: the last line ({} bytes) was cut short by a crash mid-write; it is ignored",
            path.display(),
            text.len()
        ))),
        Err(e) => Err(Error::state(
            path,
            unreadable(text, number, &e, writer.as_deref()),
        )),
    }
}

/// Why line `number` cannot be read: an event of a version that knows more (named when
/// the journal says which wrote it), or a journal changed by hand or damaged.
fn unreadable(text: &[u8], number: usize, why: &str, writer: Option<&str>) -> String {
    let this = env!("CARGO_PKG_VERSION");
    let event = serde_json::from_slice::<serde_json::Value>(text)
        .ok()
        .and_then(|v| v.get("event")?.as_str().map(str::to_string));
    match (event, writer) {
        (Some(event), Some(writer)) if writer != this => format!(
            "line {number} is a `{event}` event this orchestrator ({this}) cannot read ({why}); orchestrator {writer} wrote it: run that version (or a later one) on this session"
        ),
        (Some(event), _) => format!(
            "line {number} is a `{event}` event this orchestrator ({this}) cannot read ({why}); a version that knows it wrote it, or the journal was changed by hand: run that version on this session, or `orchestrator run --restart` archives the session as it is (under checkpoints/archive/) and starts anew"
        ),
        (None, _) => format!(
            "line {number} is not a journal event ({why}); the journal was changed by hand or damaged: `orchestrator run --restart` archives the session as it is (under checkpoints/archive/) and starts anew"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::JOURNAL;

    fn rec(event: Event) -> Record {
        Record {
            v: SCHEMA_VERSION,
            at: "2026-01-01T00:00:00.000Z".into(),
            event,
        }
    }

    #[test]
    fn records_round_trip_as_one_line_each() {
        let r = rec(Event::AttemptStarted {
            by: None,
            id: "01.1".into(),
            file: "01.1-a.md".into(),
            attempt: 1,
            input_tokens: 10,
            max_tokens: 20,
            tokenizer_tokens: None,
            mark: None,
            worktree: None,
        });
        let line = serde_json::to_string(&r).expect("encode");
        assert!(line.starts_with("{\"v\":1,"), "{line}");
        assert!(line.contains("\"event\":\"attempt_started\""), "{line}");
        let back: Record = serde_json::from_str(&line).expect("decode");
        assert_eq!(back.event, r.event);
    }

    #[test]
    fn a_line_this_version_cannot_read_says_who_wrote_it() {
        let started = |version: Option<&str>| {
            let r = rec(Event::RunStarted {
                pid: 1,
                command: "run".into(),
                version: version.map(str::to_string),
            });
            serde_json::to_string(&r).expect("encode")
        };
        let later = r#"{"v":1,"at":"t","event":"parallel_started","lanes":2}"#;
        // (the lines, what the error must say)
        let cases = [
            (
                vec![started(Some("9.1.0")), later.to_string()],
                "orchestrator 9.1.0 wrote it: run that version",
            ),
            (
                vec![started(None), later.to_string()],
                "a version that knows it wrote it, or the journal was changed by hand",
            ),
            (
                vec![
                    started(Some("9.1.0")),
                    "{not json".to_string(),
                    started(None),
                ],
                "line 2 is not a journal event",
            ),
        ];
        for (lines, says) in cases {
            let text = lines.join("\n") + "\n";
            let err = parse_journal(text.as_bytes(), Path::new("journal.jsonl"))
                .expect_err("unreadable")
                .to_string();
            assert!(err.contains(says), "{err}");
            assert!(err.contains("journal.jsonl"), "{err}");
        }
    }

    #[test]
    fn a_torn_last_line_is_dropped_and_others_are_errors() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(JOURNAL);
        let good = serde_json::to_string(&rec(Event::Finished {})).expect("encode");
        std::fs::write(&path, format!("{good}\n{{\"v\":1,\"at\":\"x\",\"ev")).expect("write");
        let (records, warning) = read_journal(&path).expect("torn tail is tolerated");
        assert_eq!(records.len(), 1);
        assert!(warning.expect("warned").contains("cut short"));

        std::fs::write(&path, format!("garbage\n{good}\n")).expect("write");
        let err = read_journal(&path).expect_err("a bad middle line is an error");
        assert!(err.to_string().contains("line 1"), "{err}");
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        fn event(i: u32) -> Event {
            match i % 3 {
                0 => Event::Retry {
                    id: format!("01.{i}"),
                    attempt: i,
                    delay_ms: 5,
                    reason: "é ✓ \"quoted\"\nline".into(),
                },
                1 => Event::Warning {
                    id: None,
                    message: format!("warning {i}"),
                },
                _ => Event::Skipped {
                    id: format!("02.{i}"),
                    reason: "x".into(),
                },
            }
        }

        proptest! {
            #[test]
            fn any_bytes_give_records_or_a_named_error(bytes in proptest::collection::vec(any::<u8>(), 0..1024)) {
                if let Err(e) = parse_journal(&bytes, Path::new("journal.jsonl")) {
                    prop_assert!(e.to_string().contains("journal.jsonl"));
                }
            }

            #[test]
            fn a_journal_cut_anywhere_keeps_every_whole_line(n in 1u32..12, cut in any::<prop::sample::Index>()) {
                let mut bytes = Vec::new();
                let mut ends = Vec::new();
                for i in 0..n {
                    let r = Record { v: SCHEMA_VERSION, at: "t".into(), event: event(i) };
                    bytes.extend(serde_json::to_vec(&r).expect("encode"));
                    bytes.push(b'\n');
                    ends.push(bytes.len());
                }
                let at = cut.index(bytes.len() + 1);
                let (records, warning) = parse_journal(&bytes[..at], Path::new("j")).expect("a cut journal reads");
                // A line is whole once its JSON is complete, newline or not.
                let whole = ends.iter().filter(|&&e| e - 1 <= at).count();
                prop_assert_eq!(records.len(), whole);
                for (i, r) in records.iter().enumerate() {
                    prop_assert_eq!(&r.event, &event(i as u32));
                }
                let torn = at > 0 && !ends.iter().any(|&e| e == at || e - 1 == at);
                prop_assert_eq!(warning.is_some(), torn);
            }
        }
    }
}
