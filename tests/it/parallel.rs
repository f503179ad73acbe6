//! `run --jobs N`: prompts whose dependencies are accepted run at once; a prompt never goes
//! before the prompts whose variables it uses; the budgets hold with N in flight; a server
//! that takes fewer at once sees few refusals; a kill -9 loses nothing.

use std::collections::BTreeMap;
use std::time::Duration;

use proptest::prelude::*;

use crate::support::builder::TestBuild;
use crate::support::fake_llm::{
    Action, FakeLlm, Gate, Piece, Seen, checkpoint_text, default_reply, openai_events,
    requested_outputs, sse, sse_bytes,
};
use crate::support::{Build, Running, events, kill_pid, status_doc};

/// A base, three prompts that use it, and one that joins them.
fn fan(server: &FakeLlm) -> Build {
    TestBuild::against(server)
        .phase("01-a", "A", Some(200_000))
        .prompt("01.1-base", "Lay the base.", &["base"])
        .prompt("01.2-left", "Build {{base}} on the left.", &["left"])
        .prompt("01.3-middle", "Build {{base}} in the middle.", &["middle"])
        .prompt("01.4-right", "Build {{base}} on the right.", &["right"])
        .prompt(
            "01.5-join",
            "Join {{left}}, {{middle}} and {{right}}.",
            &["joined"],
        )
        .build()
}

/// The default reply, held at `gate` until the test opens it.
fn held(gate: &Gate, seen: &Seen, usage: (u64, u64)) -> Action {
    let text = checkpoint_text(&seen.prompt_name(), &requested_outputs(seen));
    sse(vec![
        Piece::Gate(gate.clone()),
        Piece::Data(sse_bytes(&openai_events(&text, "stop", Some(usage)))),
    ])
}

/// How many `completed` events each prompt has in the journal.
fn completions(b: &Build) -> BTreeMap<String, usize> {
    let mut by_id = BTreeMap::new();
    for e in events(b, "completed") {
        *by_id
            .entry(e["id"].as_str().unwrap_or("").to_string())
            .or_insert(0) += 1;
    }
    by_id
}

#[test]
fn independent_prompts_are_in_flight_at_once_and_a_prompt_waits_for_the_variables_it_uses() {
    let server = FakeLlm::start();
    let gates: Vec<Gate> = (0..3).map(|_| Gate::new()).collect();
    let g = gates.clone();
    server.responder(move |seen| match seen.prompt_name().as_str() {
        "01.2-left" => held(&g[0], seen, (100, 50)),
        "01.3-middle" => held(&g[1], seen, (100, 50)),
        "01.4-right" => held(&g[2], seen, (100, 50)),
        _ => default_reply(seen),
    });
    let b = fan(&server);
    let run = Running::spawn(&b, &["run", "--jobs", "3"]);
    // The base, then the three that use it, each held: they are in flight together.
    assert!(
        server.wait_for(4, Duration::from_secs(30)),
        "the three prompts that use the base were not sent at once"
    );
    let names: Vec<String> = server.seen().iter().map(Seen::prompt_name).collect();
    assert_eq!(names[0], "01.1-base");
    let mut middle = names[1..4].to_vec();
    middle.sort();
    assert_eq!(middle, ["01.2-left", "01.3-middle", "01.4-right"]);
    assert_eq!(server.count(), 4, "the join waits for all three: {names:?}");
    for g in &gates {
        g.open();
    }
    run.wait().code(0);
    let seen = server.seen();
    assert_eq!(seen.len(), 5);
    assert_eq!(seen[4].prompt_name(), "01.5-join");
    let user = seen[4].user();
    for v in ["left-value", "middle-value", "right-value"] {
        assert!(user.contains(v), "the join carries {v}: {user}");
    }
    assert!(
        completions(&b).values().all(|&n| n == 1),
        "{:?}",
        completions(&b)
    );
    assert_eq!(status_doc(&b).completed.len(), 5);
}

#[test]
fn one_job_sends_the_prompts_one_after_another_in_plan_order() {
    let server = FakeLlm::start();
    let b = fan(&server);
    let run = b.run(&["run"]);
    run.code(0);
    let names: Vec<String> = server.seen().iter().map(Seen::prompt_name).collect();
    assert_eq!(
        names,
        [
            "01.1-base",
            "01.2-left",
            "01.3-middle",
            "01.4-right",
            "01.5-join"
        ]
    );
    assert_eq!(server.peak_in_flight(), 1);
}

/// `n` prompts that depend on nothing but their phase.
fn independent(server: &FakeLlm, n: usize) -> TestBuild {
    (1..=n).fold(
        TestBuild::against(server).phase("01-a", "A", Some(500_000)),
        |t, i| t.prompt(&format!("01.{i}-task"), &format!("Do task {i}."), &[]),
    )
}

#[test]
fn a_server_that_takes_two_at_a_time_sees_few_refusals_and_they_do_not_use_up_attempts() {
    let server = FakeLlm::start();
    server.at_once(2).latency(Duration::from_millis(40));
    // Two attempts each: a refusal for the run's concurrency must not count as one.
    let b = independent(&server, 12)
        .set("retry.max_attempts", 2)
        .build();
    let run = b.run(&["run", "--jobs", "6"]);
    run.code(0);
    assert_eq!(status_doc(&b).completed.len(), 12);
    assert!(completions(&b).values().all(|&n| n == 1));
    let refused = server.refused();
    // Six at once against two: the first burst is refused, then the run halves how many
    // it sends at a time and climbs back slowly, rather than six hitting the wall again.
    assert!(refused <= 10, "{refused} requests refused");
    run.stderr_has("at once from now");
}

#[test]
fn kill_9_during_a_parallel_run_loses_nothing_and_completes_each_prompt_once() {
    let server = FakeLlm::start();
    server.latency(Duration::from_millis(30));
    let b = independent(&server, 16).build();
    let mut kills = 0;
    for round in 0..6 {
        let before = server.count();
        let mut run = Running::spawn_quiet(&b, &["run", "--jobs", "4"]);
        // Killed once a few requests of this round are in flight or answered.
        if !server.wait_for(before + 3, Duration::from_secs(30)) {
            panic!("round {round}: no requests");
        }
        let pid = run.pid();
        if run.exited().is_some() {
            break;
        }
        kill_pid(pid);
        kills += 1;
        let _ = run.wait();
        if status_doc(&b).completed.len() == 16 {
            break;
        }
    }
    b.run(&["run", "--jobs", "4"]).code(0);
    assert_eq!(status_doc(&b).completed.len(), 16);
    let by_id = completions(&b);
    assert_eq!(by_id.len(), 16);
    assert!(by_id.values().all(|&n| n == 1), "{by_id:?}");
    // A resumed run sends again at most what was in flight when it was killed.
    assert!(
        server.count() <= 16 + kills * 4,
        "{} requests for 16 prompts and {kills} kills",
        server.count()
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 6, .. ProptestConfig::default() })]

    /// Random graphs, latencies and budgets; a model that writes to its cap every time:
    /// with five in flight no phase and no total is ever spent past its budget.
    #[test]
    fn budgets_hold_with_five_in_flight(
        n in 6usize..14,
        uses in proptest::collection::vec(any::<u16>(), 14),
        waits in proptest::collection::vec(0u64..40, 14),
        phase_budget in 4_000i64..16_000,
        total in 5_000i64..20_000,
    ) {
        let server = FakeLlm::start();
        let waits_for = waits.clone();
        server.responder(move |seen| {
            let name = seen.prompt_name();
            let i: usize = name
                .split(['.', '-'])
                .nth(1)
                .and_then(|i| i.parse().ok())
                .unwrap_or(1);
            let text = checkpoint_text(&name, &requested_outputs(seen));
            // Every reply is as long as the cap allows, and takes its time.
            sse(vec![
                Piece::Wait(Duration::from_millis(waits_for[i % waits_for.len()])),
                Piece::Data(sse_bytes(&openai_events(&text, "stop", Some((150, seen.max_tokens()))))),
            ])
        });
        let mut t = TestBuild::against(&server)
            .set("budget.total", total)
            .set("budget.per_prompt", 3000)
            .set("llm.max_tokens", 900)
            .phase("01-a", "A", Some(phase_budget));
        for i in 1..=n {
            // Prompt i uses the output of an earlier one, picked at random, or none.
            let body = match uses[i - 1] as usize % (i + 1) {
                0 | 1 => format!("Do step {i}."),
                j if j < i => format!("Do step {i} after {{{{v{j}}}}}."),
                _ => format!("Do step {i}."),
            };
            t = t.prompt(&format!("01.{i}-step"), &body, &[&format!("v{i}")]);
        }
        let b = t.build();
        let run = b.run(&["run", "--jobs", "5"]);
        prop_assert!(matches!(run.code, 0 | 1 | 3), "exit {}: {}", run.code, run.stderr);
        let status = status_doc(&b);
        prop_assert!(status.phases[0].used <= phase_budget as u64, "phase used {} of {phase_budget}", status.phases[0].used);
        prop_assert!(status.total.used <= total as u64, "total used {} of {total}", status.total.used);
        prop_assert!(!status.total.over_budget && !status.phases[0].over_budget);
    }
}
