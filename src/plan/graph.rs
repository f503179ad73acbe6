//! The order a build's prompts may run in: a prompt waits for what it `depends_on`, for
//! the prompts that produce the variables it uses, for every prompt of the phases before
//! its own (phases are gates, as in the seed), and, with `[context] history` on, for the
//! prompt before it (whose turns it carries). What is left can run at once (`run --jobs`):
//! the graph's longest chain is the least wall time any number of jobs can give.

use super::prompt::{Phase, Prompt};
use crate::config::History;

/// Each prompt's direct dependencies (indices into the plan, all before it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Graph {
    pub(crate) deps: Vec<Vec<usize>>,
}

/// A schedule's length, and the chain that sets it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Path {
    pub(crate) prompts: Vec<usize>,
    /// The sum of the chain's weights.
    pub(crate) length: f64,
}

impl Graph {
    /// The graph of `prompts` in `phases`, with `history` as `[context] history` says.
    pub(crate) fn of(prompts: &[Prompt], phases: &[Phase], history: History) -> Graph {
        let deps = (0..prompts.len())
            .map(|i| {
                let mut d: Vec<usize> = prompts[i]
                    .depends_on
                    .iter()
                    .copied()
                    .filter(|&d| d < i)
                    .collect();
                let phase = prompts[i].phase;
                if let Some(before) = phases[..phase].iter().rev().find(|p| !p.prompts.is_empty()) {
                    d.extend(before.prompts.clone());
                }
                if history != History::None && i > 0 {
                    d.push(i - 1);
                }
                d.sort_unstable();
                d.dedup();
                d
            })
            .collect();
        Graph { deps }
    }

    /// The longest chain, each prompt weighing `weight(i)`.
    pub(crate) fn critical_path(&self, weight: impl Fn(usize) -> f64) -> Path {
        let n = self.deps.len();
        let (mut finish, mut via): (Vec<f64>, Vec<Option<usize>>) = (vec![0.0; n], vec![None; n]);
        for i in 0..n {
            let before = self.deps[i]
                .iter()
                .copied()
                .max_by(|&a, &b| finish[a].total_cmp(&finish[b]));
            finish[i] = weight(i) + before.map_or(0.0, |b| finish[b]);
            via[i] = before;
        }
        let Some(mut at) = (0..n).max_by(|&a, &b| finish[a].total_cmp(&finish[b])) else {
            return Path {
                prompts: Vec::new(),
                length: 0.0,
            };
        };
        let length = finish[at];
        let mut prompts = vec![at];
        while let Some(b) = via[at] {
            prompts.push(b);
            at = b;
        }
        prompts.reverse();
        Path { prompts, length }
    }

    /// How long the whole graph takes with `jobs` at once, ready prompts started in plan
    /// order (as `run --jobs` starts them), each taking `weight(i)`.
    pub(crate) fn makespan(&self, jobs: usize, weight: impl Fn(usize) -> f64) -> f64 {
        let n = self.deps.len();
        let jobs = jobs.max(1);
        let mut end: Vec<Option<f64>> = vec![None; n];
        let mut started = vec![false; n];
        let mut running: Vec<(f64, usize)> = Vec::new();
        let mut now = 0.0_f64;
        let mut done = 0;
        while done < n {
            for (i, deps) in self.deps.iter().enumerate() {
                if running.len() >= jobs {
                    break;
                }
                if !started[i] && deps.iter().all(|&d| end[d].is_some_and(|e| e <= now)) {
                    started[i] = true;
                    running.push((now + weight(i), i));
                }
            }
            // The next to end; nothing running would mean a cycle, which plans cannot have.
            let Some(k) = (0..running.len()).min_by(|&a, &b| running[a].0.total_cmp(&running[b].0))
            else {
                break;
            };
            let (t, i) = running.swap_remove(k);
            now = t;
            end[i] = Some(t);
            done += 1;
        }
        now
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn graph(deps: &[&[usize]]) -> Graph {
        Graph {
            deps: deps.iter().map(|d| d.to_vec()).collect(),
        }
    }

    #[test]
    fn the_critical_path_and_what_jobs_give() {
        // 0 → {1, 2, 3, 4, 5} → 6: a fan of five between two.
        let g = graph(&[&[], &[0], &[0], &[0], &[0], &[0], &[1, 2, 3, 4, 5]]);
        let one = |_| 1.0;
        let path = g.critical_path(one);
        assert_eq!(path.length, 3.0);
        assert_eq!(path.prompts.len(), 3);
        // (jobs, makespan)
        for (jobs, length) in [(1, 7.0), (2, 5.0), (3, 4.0), (5, 3.0), (8, 3.0)] {
            assert_eq!(g.makespan(jobs, one), length, "--jobs {jobs}");
        }
        // Weights: the slow one of the fan sets the path.
        let slow = |i| if i == 3 { 10.0 } else { 1.0 };
        assert_eq!(g.critical_path(slow).prompts, [0, 3, 6]);
        assert_eq!(g.critical_path(slow).length, 12.0);
        assert_eq!(g.makespan(5, slow), 12.0);
    }

    #[test]
    fn an_empty_graph_takes_no_time() {
        let g = graph(&[]);
        assert_eq!(g.critical_path(|_| 1.0).length, 0.0);
        assert_eq!(g.makespan(4, |_| 1.0), 0.0);
    }
}
