//! The folder an agent builds in (docs, "Agent builds" and "The workspace boundary"): its
//! working directory, where checks run, and, with `[workspace].git` (the default once `dir`
//! is set), a git repository the runner snapshots: a commit per accepted prompt, and every
//! attempt started from the last accepted commit.
//!
//! The boundary, which this module keeps:
//! - The runner owns the repository whose `.git` is the workspace's own (created if there is
//!   none; never one found by walking up), pinned for every call ([`git`]); the session's
//!   branch (the one checked out when the session began), its commits and the refs under
//!   `refs/orchestrator/`. A `.git` that is gone, or replaced by another repository (the
//!   session's baseline is not in it), stops the run; nothing ever falls through to an
//!   enclosing repository.
//! - The runner's own files inside the workspace (the config, the prompts, `checkpoints/`)
//!   and what the snapshot excludes name (virtualenvs, `node_modules`, caches) are left out
//!   of every `add`, `clean` and commit by pathspecs and `-e` patterns that no `.gitignore`
//!   overrides ([`paths`]), and the staged paths are checked before each commit.
//! - A restore acts on the session's branch alone (HEAD is put back on it first), and leaves
//!   exactly the accepted tree, plus what git cannot hold and the tree already had: its
//!   ignored entries and empty folders ([`Extras`], recorded when it was committed), the
//!   runner's files and the excludes. A failed attempt's nested repositories, `.gitignore`s
//!   and ignored debris go.
//! - Whatever differs from what the runner last left is the user's ([`Workspace::user_changes`]):
//!   the runner refuses to start over it (the caller lists it), or takes it into the base
//!   with `--allow-dirty` ([`Workspace::take_in`]); it never deletes it.
//! - One session per workspace: a lock (in the temporary folder, keyed by the workspace's
//!   path, so that neither a deleted `.git` nor a second checkpoints folder escapes it).

mod files;
mod git;
mod model;
mod paths;
mod repo;
mod stale;
mod status;
pub(crate) mod worktree;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::config::Config;
use crate::error::{Error, Result};
use git::{Git, GitError};
pub(crate) use model::{Changes, Committed, Extras, Head, Pin, Scan};
use repo::{Repo, Unstageable, strs};

/// Where replaced commits are kept reachable.
pub(crate) const KEPT_REFS: &str = "refs/orchestrator";

/// The private index snapshots are made with (kept between snapshots, so that each one
/// rehashes only what changed).
const SCAN_INDEX: &str = "orchestrator-index";
/// Throwaway indexes for exporting a commit's files elsewhere (one per copy).
const EXPORT_INDEX: &str = "orchestrator-export-index";
/// A throwaway index for taking the user's changes into a base.
const TAKE_IN_INDEX: &str = "orchestrator-take-in-index";

pub(crate) struct Workspace {
    dir: PathBuf,
    snapshots: bool,
    /// The runner's own files and folders inside the workspace, relative to it.
    protect: Vec<String>,
    /// Snapshot excludes (gitignore-style patterns).
    excludes: Vec<String>,
    /// Set by [`Workspace::attach`].
    repo: Option<Repo>,
    pin: Option<Pin>,
    /// The session's lock (a worktree's [`Workspace`] holds none: the workspace's does).
    _lock: Option<File>,
}

impl Workspace {
    /// The workspace `config` describes, created if missing and locked for this session;
    /// `None` when there is none. `protect`: the runner's own files and folders; `holder`
    /// says who this session is, for a second one that is refused.
    pub(crate) fn open(
        config: &Config,
        protect: &[&Path],
        holder: &str,
    ) -> Result<Option<Workspace>> {
        let Some(dir) = &config.workspace.dir else {
            return Ok(None);
        };
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let dir = dir.canonicalize().map_err(|e| Error::io(dir, e))?;
        let lock = files::take_lock(&dir, holder)?;
        let protect = protect
            .iter()
            .filter_map(|p| {
                let p = files::resolve(p)?;
                let rel = p.strip_prefix(&dir).ok()?;
                (!rel.as_os_str().is_empty()).then(|| rel.to_string_lossy().replace('\\', "/"))
            })
            .collect();
        Ok(Some(Workspace {
            dir,
            snapshots: config.workspace.snapshots(),
            protect,
            excludes: config.workspace.excludes(),
            repo: None,
            pin: None,
            _lock: Some(lock),
        }))
    }

    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    /// Whether attempts are snapshotted and restored with git.
    pub(crate) fn snapshots(&self) -> bool {
        self.snapshots
    }

    /// Finds the workspace's repository (or creates it, for a session that has none yet)
    /// and checks it is the one `pin` describes; the runner's files and the excludes go
    /// into its `info/exclude` (so that `git status` does not list them), and a
    /// repository that tracks a runner's file is refused.
    pub(crate) async fn attach(&mut self, pin: Option<Pin>) -> Result<()> {
        if !self.snapshots {
            return Ok(());
        }
        if !git::available().await {
            return Err(self.refuse("`workspace.git` is on (the default once workspace.dir is set) but the `git` program cannot be run; install git, or set workspace.git = false"));
        }
        let found = git::find(&self.dir).await.map_err(|e| {
            self.refuse(&format!(
                "has a `.git` that git cannot read ({}); repair or remove it",
                e.message
            ))
        })?;
        let git_dir = match found {
            Some(git_dir) => git_dir,
            None if pin.is_some() => return Err(self.missing()),
            None => git::init(&self.dir).await.map_err(|e| self.git_error(&e))?,
        };
        let mut git = Git::new(git_dir, self.dir.clone());
        let email = git
            .maybe(&["config", "user.email"])
            .await
            .unwrap_or_default();
        if email.trim().is_empty() {
            git.use_own_identity();
        }
        let repo = Repo::new(
            git,
            self.dir.clone(),
            self.protect.clone(),
            self.excludes.clone(),
        );
        self.pin = match pin {
            Some(mut pin) => {
                if pin.head.is_none() {
                    pin.head = Some(repo.current_head().await);
                }
                Some(pin)
            }
            None => None,
        };
        self.repo = Some(repo);
        self.check().await?;
        self.exclude_protected().await
    }

    fn repo(&self) -> Result<&Repo> {
        self.repo.as_ref().ok_or_else(|| Error::Git {
            dir: self.dir.clone(),
            message: "the workspace's repository was used before it was opened".into(),
        })
    }

    fn refuse(&self, message: &str) -> Error {
        Error::Workspace {
            dir: self.dir.clone(),
            message: message.to_string(),
        }
    }

    fn missing(&self) -> Error {
        self.refuse("its `.git` is gone (an agent may have deleted it): the session's commits were in it, and the runner never looks for another repository, so nothing was written outside the workspace. Put the repository back, or start a new session with `orchestrator run --restart`")
    }

    /// A git failure, told apart when the repository itself has gone.
    fn git_error(&self, e: &GitError) -> Error {
        if let Some(repo) = &self.repo
            && !repo.git.git_dir().exists()
        {
            return self.missing();
        }
        Error::Git {
            dir: self.dir.clone(),
            message: e.to_string(),
        }
    }

    /// The repository is still the session's: its `.git` is there and holds the baseline.
    async fn check(&self) -> Result<()> {
        let repo = self.repo()?;
        if !repo.git.git_dir().exists() {
            return Err(self.missing());
        }
        if let Some(pin) = &self.pin {
            let object = format!("{}^{{commit}}", pin.baseline);
            if repo.git.maybe(&["cat-file", "-e", &object]).await.is_none() {
                return Err(self.refuse(&format!(
                    "its repository is not the one this session started with: the session's baseline commit {} is not in it (an agent may have deleted `.git` and run `git init`). Nothing was written outside the workspace. Put the repository back, or start a new session with `orchestrator run --restart`",
                    &pin.baseline[..pin.baseline.len().min(10)]
                )));
            }
        }
        Ok(())
    }

    /// Puts the runner's files that lie inside the workspace, and the excludes, into
    /// `info/exclude`; refuses a repository whose HEAD tracks a runner's file (a restore
    /// would change it).
    async fn exclude_protected(&self) -> Result<()> {
        let repo = self.repo()?;
        for rel in &self.protect {
            let spec = format!(":(literal){rel}");
            let tracked = repo
                .git
                .maybe(&["ls-tree", "-r", "--name-only", "HEAD", "--", &spec])
                .await
                .is_some_and(|out| !out.trim().is_empty());
            if tracked {
                return Err(self.refuse(&format!(
                    "`{rel}` is the runner's own and is tracked by the workspace's git repository: every attempt would reset it. Give [workspace].dir a folder of its own (such as \"build\"), or untrack it (`git rm --cached {rel}`)"
                )));
            }
        }
        let exclude = repo.git.git_dir().join("info/exclude");
        let lines: Vec<String> = self
            .protect
            .iter()
            .map(|p| paths::anchored(p))
            .chain(self.excludes.iter().cloned())
            .collect();
        files::add_lines(
            &exclude,
            &lines,
            "# orchestrator: its own files and what snapshots leave out",
        )
        .map_err(|e| Error::io(&exclude, e))
    }

    /// Removes git's lock files that nothing holds (older than `before`, no live git in
    /// the repository); the ones removed. A lock that may still be held stops the run.
    pub(crate) fn remove_stale_locks(&self, before: SystemTime) -> Result<Vec<String>> {
        let Some(repo) = &self.repo else {
            return Ok(Vec::new());
        };
        stale::remove(&self.dir, repo.git.git_dir(), before).map_err(|why| self.refuse(&why))
    }

    /// Files that differ from HEAD (changed, added, deleted, untracked), as `git status`
    /// names them; ignored files, the runner's files and the excludes are not changes.
    pub(crate) async fn changes(&self) -> Result<Vec<String>> {
        self.repo()?.changes().await.map_err(|e| self.git_error(&e))
    }

    /// The session's first commit: everything in the workspace (`--allow-dirty`, or
    /// nothing changed), on the branch HEAD is on, which becomes the session's.
    pub(crate) async fn baseline(&mut self, message: &str) -> Result<(Committed, Head)> {
        let repo = self.repo()?;
        let fail = |e: GitError| self.git_error(&e);
        if let Err(Unstageable::NoCommit(path)) = repo.stage(None, false).await.map_err(fail)? {
            return Err(self.refuse(&format!(
                "`{path}` is a git repository with no commit, which git cannot snapshot; commit in it, or remove it"
            )));
        }
        repo.git
            .run(&[
                "commit",
                "--quiet",
                "--allow-empty",
                "--no-verify",
                "-m",
                message,
            ])
            .await
            .map_err(fail)?;
        let commit = repo.head().await.ok_or_else(|| Error::Git {
            dir: self.dir.clone(),
            message: "git commit left no HEAD".into(),
        })?;
        let head = repo.current_head().await;
        let extras = repo.extras().await.map_err(fail)?;
        self.pin = Some(Pin {
            baseline: commit.clone(),
            head: Some(head.clone()),
        });
        Ok((Committed { commit, extras }, head))
    }

    /// The workspace as it is, as a commit on no branch whose parent is `parent` (HEAD when
    /// `None`), made with a private index (HEAD, the index and the branch untouched): what
    /// an attempt left, kept before a restore discards it. Nested repositories with no
    /// commit are left out; the agent's own commits are not kept (the tree is).
    pub(crate) async fn scan(&self, message: &str, parent: Option<&str>) -> Result<Scan> {
        self.check().await?;
        let repo = self.repo()?;
        let fail = |e: GitError| self.git_error(&e);
        let index = repo.git.git_dir().join(SCAN_INDEX);
        let main = repo.git.git_dir().join("index");
        if !index.exists() && main.exists() {
            // Its stat data lets `add -A` rehash only what changed.
            std::fs::copy(&main, &index).map_err(|e| Error::io(&index, e))?;
        }
        if let Err(e) = repo.stage(Some(&index), true).await {
            let _ = std::fs::remove_file(&index);
            return Err(fail(e));
        }
        let tree = repo.write_tree(Some(&index)).await.map_err(fail)?;
        let head = repo.head().await;
        let parent = parent.map(str::to_string).or_else(|| head.clone());
        let parent_tree = match &parent {
            Some(p) => {
                repo.git
                    .maybe(&["rev-parse", &format!("{p}^{{tree}}")])
                    .await
            }
            None => None,
        };
        let commit = repo
            .commit_tree(&tree, parent.as_deref(), message)
            .await
            .map_err(fail)?;
        Ok(Scan {
            commit,
            extras: repo.extras().await.map_err(fail)?,
            unchanged: parent_tree.is_some_and(|t| t.trim() == tree),
            head,
        })
    }

    /// What differs between `expected` (a commit the runner made or restored, or a scan of
    /// what an attempt left, with its extras if known) and `now`: the user's.
    pub(crate) async fn user_changes(
        &self,
        expected: &str,
        expected_extras: Option<&Extras>,
        now: &Scan,
    ) -> Result<Changes> {
        let files = self
            .repo()?
            .differing(expected, &now.commit)
            .await
            .map_err(|e| self.git_error(&e))?;
        let extras = match expected_extras {
            None => Extras::default(),
            Some(had) => Extras {
                ignored: new_entries(&now.extras.ignored, &had.ignored),
                empty_dirs: new_entries(&now.extras.empty_dirs, &had.empty_dirs),
            },
        };
        Ok(Changes { files, extras })
    }

    /// After an attempt: its work committed on the session's branch as `message`, if it
    /// may be: HEAD still on the session's branch (or the runner's detached HEAD), `base`
    /// (the last accepted commit) still in its history, no merge or rebase left half done,
    /// nothing git cannot stage. `Ok(Err)` says why not: the attempt's content failure.
    /// The commit is also kept as `session_ref`.
    pub(crate) async fn accept(
        &self,
        message: &str,
        base: &str,
        session_ref: &str,
    ) -> Result<std::result::Result<Committed, String>> {
        self.check().await?;
        let repo = self.repo()?;
        let fail = |e: GitError| self.git_error(&e);
        let want = self
            .pin
            .as_ref()
            .and_then(|p| p.head.clone())
            .unwrap_or(Head::Detached);
        if let Some(why) = repo.moved_away(&want, base).await {
            return Ok(Err(why));
        }
        // One commit per prompt on the session's branch: the agent's own commits since
        // the base are folded into it (their work is in the tree, and nothing of theirs,
        // such as a runner's file an agent committed, stays in the branch's history).
        repo.git
            .run(&["reset", "--quiet", "--soft", base])
            .await
            .map_err(fail)?;
        if let Err(Unstageable::NoCommit(path)) = repo.stage(None, false).await.map_err(fail)? {
            return Ok(Err(format!(
                "the agent left a git repository with no commit in `{path}`, which git cannot snapshot; commit in it or remove it"
            )));
        }
        if !repo.staged_protected().await.map_err(fail)?.is_empty() {
            return Err(Error::Git {
                dir: self.dir.clone(),
                message: "the runner's own files are staged and would be committed; nothing was committed".into(),
            });
        }
        if let Err(e) = repo
            .git
            .run(&[
                "commit",
                "--quiet",
                "--allow-empty",
                "--no-verify",
                "-m",
                message,
            ])
            .await
        {
            return Ok(Err(format!(
                "git could not commit the agent's work: {}",
                e.message
            )));
        }
        let commit = repo.head().await.ok_or_else(|| Error::Git {
            dir: self.dir.clone(),
            message: "git commit left no HEAD".into(),
        })?;
        self.keep(&commit, session_ref).await?;
        Ok(Ok(Committed {
            commit,
            extras: repo.extras().await.map_err(fail)?,
        }))
    }

    /// After an attempt that was not accepted: the session's branch put back at `base`
    /// if the attempt moved it (a reset, a commit), its ref alone (the files stay as the
    /// attempt left them, to look at), so that whenever the runner stops, the branch holds
    /// exactly the accepted commits.
    pub(crate) async fn park_branch(&self, base: &str) -> Result<()> {
        let Some(Head::Branch(branch)) = self.pin.as_ref().and_then(|p| p.head.clone()) else {
            return Ok(());
        };
        let repo = self.repo()?;
        let tip = repo
            .git
            .maybe(&[
                "rev-parse",
                "--verify",
                "--quiet",
                &format!("{branch}^{{commit}}"),
            ])
            .await;
        if tip.as_deref().map(str::trim) != Some(base) {
            repo.git
                .run(&["update-ref", &branch, base])
                .await
                .map_err(|e| self.git_error(&e))?;
        }
        Ok(())
    }

    /// Puts the workspace back to `commit`: HEAD back on the session's branch (no other
    /// ref moves), the branch and index at `commit`, its tracked files as committed,
    /// everything else removed but the runner's files, the excludes, `extras.ignored`
    /// and `also_keep`; `extras.empty_dirs` made again. The files that were discarded:
    /// those that differ between `commit` and `held` (a commit of what the workspace
    /// holds, when the caller has one), else as `git status` finds them.
    pub(crate) async fn restore(
        &self,
        commit: &str,
        extras: &Extras,
        also_keep: &[String],
        held: Option<&str>,
    ) -> Result<Vec<String>> {
        self.check().await?;
        let repo = self.repo()?;
        let fail = |e: GitError| self.git_error(&e);
        let discarded = match held {
            Some(held) => repo.differing(commit, held).await.map_err(fail)?,
            None => repo.changes().await.map_err(fail)?,
        };
        match self.pin.as_ref().and_then(|p| p.head.clone()) {
            Some(Head::Branch(branch)) => {
                repo.git
                    .run(&["symbolic-ref", "HEAD", &branch])
                    .await
                    .map_err(fail)?;
            }
            _ => {
                repo.git
                    .run(&["update-ref", "--no-deref", "HEAD", commit])
                    .await
                    .map_err(fail)?;
            }
        }
        repo.git
            .run(&["reset", "--quiet", "--mixed", commit])
            .await
            .map_err(fail)?;
        for state in ["rebase-merge", "rebase-apply"] {
            if repo.git.git_dir().join(state).exists() {
                let _ = repo.git.run(&["rebase", "--quit"]).await;
            }
        }
        let keep: Vec<String> = extras.ignored.iter().chain(also_keep).cloned().collect();
        let mut args: Vec<String> = ["clean", "-ffdxq"].map(String::from).to_vec();
        args.extend(repo.clean_keeps(&keep));
        args.push("--".into());
        args.extend(repo.pathspecs());
        repo.git.run(&strs(&args)).await.map_err(fail)?;
        // Writes only the files that differ from the index.
        repo.git
            .run(&["checkout-index", "--all", "--force", "--quiet"])
            .await
            .map_err(fail)?;
        for dir in &extras.empty_dirs {
            let path = self.dir.join(dir.trim_end_matches('/'));
            std::fs::create_dir_all(&path).map_err(|e| Error::io(&path, e))?;
        }
        Ok(discarded)
    }

    /// `base` with the user's `changes` (as `now` holds them) on top, as a new commit with
    /// `message`, and the workspace restored to it, the user's new ignored entries and
    /// empty folders kept: `--allow-dirty`.
    pub(crate) async fn take_in(
        &self,
        base: &Committed,
        now: &Scan,
        changes: &Changes,
        message: &str,
    ) -> Result<Committed> {
        self.check().await?;
        let repo = self.repo()?;
        let fail = |e: GitError| self.git_error(&e);
        let index = repo.git.git_dir().join(TAKE_IN_INDEX);
        let _ = std::fs::remove_file(&index);
        repo.git
            .run_with(&["read-tree", &base.commit], Some(&index), b"")
            .await
            .map_err(fail)?;
        let input = repo
            .index_info(&now.commit, &changes.files)
            .await
            .map_err(fail)?;
        if !input.is_empty() {
            repo.git
                .run_with(
                    &["update-index", "-z", "--index-info"],
                    Some(&index),
                    &input,
                )
                .await
                .map_err(fail)?;
        }
        let tree = repo.write_tree(Some(&index)).await;
        let _ = std::fs::remove_file(&index);
        let commit = repo
            .commit_tree(&tree.map_err(fail)?, Some(&base.commit), message)
            .await
            .map_err(fail)?;
        let extras = base.extras.with(&changes.extras);
        self.restore(&commit, &extras, &changes.extras.ignored, Some(&commit))
            .await?;
        Ok(Committed { commit, extras })
    }

    /// `commit`'s tracked files written into `dir`; HEAD, index and work tree untouched.
    pub(crate) async fn export(&self, commit: &str, dir: &Path) -> Result<()> {
        let repo = self.repo()?;
        // One index per copy: prompts in flight at once export at once.
        let name = dir.file_name().unwrap_or_default().to_string_lossy();
        let index = repo.git.git_dir().join(format!("{EXPORT_INDEX}-{name}"));
        let exported = repo.export(commit, dir, &index).await;
        let _ = std::fs::remove_file(&index);
        exported.map_err(|e| self.git_error(&e))
    }

    /// Keeps `commit` reachable as `refs/orchestrator/<name>`; the ref's name.
    pub(crate) async fn keep(&self, commit: &str, name: &str) -> Result<String> {
        let name = format!("{KEPT_REFS}/{name}");
        self.repo()?
            .git
            .run(&["update-ref", &name, commit])
            .await
            .map_err(|e| self.git_error(&e))?;
        Ok(name)
    }

    /// Whether `ancestor` is `descendant` or in its history.
    pub(crate) async fn contains(&self, descendant: &str, ancestor: &str) -> bool {
        match &self.repo {
            Some(repo) => repo
                .git
                .maybe(&["merge-base", "--is-ancestor", ancestor, descendant])
                .await
                .is_some(),
            None => false,
        }
    }
}

fn new_entries(now: &[String], had: &[String]) -> Vec<String> {
    let had: std::collections::HashSet<&String> = had.iter().collect();
    now.iter().filter(|p| !had.contains(p)).cloned().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block_on<T>(f: impl Future<Output = T>) -> T {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
            .block_on(f)
    }

    fn open(dir: &Path, protect: &[&Path]) -> Workspace {
        let config = crate::config::parse(
            &format!("[workspace]\ndir = {:?}\n", dir.display().to_string()),
            Path::new("config.toml"),
        )
        .expect("config");
        let mut ws = Workspace::open(&config, protect, "test")
            .expect("opens")
            .expect("a workspace");
        block_on(ws.attach(None)).expect("attaches");
        ws
    }

    fn write(path: &Path, text: &str) {
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, text).expect("write");
    }

    fn files(dir: &Path) -> Vec<String> {
        fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
            for e in std::fs::read_dir(dir).expect("read").flatten() {
                let p = e.path();
                let rel = p.strip_prefix(root).expect("inside").display().to_string();
                if rel == ".git" {
                    continue;
                }
                if p.is_dir() {
                    out.push(format!("{rel}/"));
                    walk(root, &p, out);
                } else {
                    out.push(rel);
                }
            }
        }
        let mut out = Vec::new();
        walk(dir, dir, &mut out);
        out.sort();
        out
    }

    #[test]
    fn commits_restore_and_keep() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("build");
        let mut ws = open(&dir, &[]);
        let (base, _) = block_on(ws.baseline("baseline")).expect("baseline");
        write(&dir.join("a.txt"), "a");
        assert_eq!(block_on(ws.changes()).expect("changes"), ["a.txt"]);
        let first = block_on(ws.accept("01 first", &base.commit, "sessions/t"))
            .expect("accept")
            .expect("accepted");
        assert!(block_on(ws.contains(&first.commit, &base.commit)));
        write(&dir.join("debris.txt"), "x");
        write(&dir.join("a.txt"), "changed");
        let discarded =
            block_on(ws.restore(&first.commit, &first.extras, &[], None)).expect("restore");
        assert_eq!(discarded.len(), 2, "{discarded:?}");
        assert_eq!(files(&dir), ["a.txt"]);
        assert_eq!(
            std::fs::read_to_string(dir.join("a.txt")).expect("read"),
            "a"
        );
        let kept = block_on(ws.keep(&first.commit, "replaced/1")).expect("keep");
        assert_eq!(kept, "refs/orchestrator/replaced/1");
        block_on(ws.restore(&base.commit, &base.extras, &[], None)).expect("restore");
        assert!(!dir.join("a.txt").exists());
    }

    #[test]
    fn a_restore_leaves_exactly_the_accepted_tree_with_its_ignored_files_and_empty_folders() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path();
        write(&dir.join("config.toml"), "");
        write(&dir.join("checkpoints/journal.jsonl"), "{}");
        let mut ws = open(dir, &[&dir.join("config.toml"), &dir.join("checkpoints")]);
        let (base, _) = block_on(ws.baseline("baseline")).expect("baseline");
        write(&dir.join(".gitignore"), "logs/\n");
        write(&dir.join("logs/a.log"), "kept");
        write(&dir.join("src/app.py"), "app");
        std::fs::create_dir_all(dir.join("data/db")).expect("mkdir");
        write(&dir.join(".venv/lib/site.py"), "venv");
        let accepted = block_on(ws.accept("01", &base.commit, "sessions/t"))
            .expect("accept")
            .expect("accepted");
        assert_eq!(accepted.extras.ignored, ["logs/"]);
        assert_eq!(accepted.extras.empty_dirs, ["data/db/"]);
        // A hostile attempt: a whitelist .gitignore, a nested repository, ignore-all
        // debris, a deleted empty folder, the runner's file staged by force.
        write(&dir.join(".gitignore"), "*\n!*.json*\n!*.toml\n!*/\n");
        write(&dir.join("deep/.gitignore"), "*\n");
        write(&dir.join("deep/x/debris"), "d");
        std::fs::create_dir_all(dir.join("sub")).expect("mkdir");
        let git = |args: &[&str]| {
            std::process::Command::new("git")
                .current_dir(dir)
                .args(args)
                .output()
                .expect("git")
        };
        assert!(
            std::process::Command::new("git")
                .args(["init", "-q"])
                .current_dir(dir.join("sub"))
                .status()
                .expect("git")
                .success()
        );
        std::fs::remove_dir_all(dir.join("data")).expect("rm");
        write(&dir.join("src/app.py"), "changed");
        git(&["add", "-f", "checkpoints"]);
        block_on(ws.restore(&accepted.commit, &accepted.extras, &[], None)).expect("restore");
        assert_eq!(
            files(dir),
            [
                ".gitignore",
                ".venv/",
                ".venv/lib/",
                ".venv/lib/site.py",
                "checkpoints/",
                "checkpoints/journal.jsonl",
                "config.toml",
                "data/",
                "data/db/",
                "logs/",
                "logs/a.log",
                "src/",
                "src/app.py",
            ]
        );
        assert_eq!(
            std::fs::read_to_string(dir.join(".gitignore")).expect("read"),
            "logs/\n"
        );
        assert_eq!(
            std::fs::read_to_string(dir.join("src/app.py")).expect("read"),
            "app"
        );
        let tracked = String::from_utf8_lossy(&git(&["ls-files"]).stdout).into_owned();
        assert_eq!(tracked, ".gitignore\nsrc/app.py\n");
    }

    #[test]
    fn the_runners_files_are_never_committed_whatever_the_gitignore_says() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path();
        write(&dir.join("config.toml"), "");
        write(&dir.join("checkpoints/journal.jsonl"), "{}");
        let mut ws = open(dir, &[&dir.join("config.toml"), &dir.join("checkpoints")]);
        let (base, _) = block_on(ws.baseline("baseline")).expect("baseline");
        write(&dir.join(".gitignore"), "*\n!*.json*\n!*.toml\n!*/\n");
        write(&dir.join("out.json"), "{}");
        let c = block_on(ws.accept("01", &base.commit, "sessions/t"))
            .expect("accept")
            .expect("accepted");
        let tree = std::process::Command::new("git")
            .current_dir(dir)
            .args(["ls-tree", "-r", "--name-only", &c.commit])
            .output()
            .expect("git");
        // `*` ignores the .gitignore itself too.
        assert_eq!(String::from_utf8_lossy(&tree.stdout), "out.json\n");
    }

    #[test]
    fn the_users_changes_are_found_and_taken_into_a_base() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path();
        let mut ws = open(dir, &[]);
        write(&dir.join("keep.txt"), "1");
        write(&dir.join(".gitignore"), "*.log\n");
        let (base, _) = block_on(ws.baseline("baseline")).expect("baseline");
        let left = block_on(ws.scan("left", None)).expect("scan");
        assert!(left.unchanged);
        assert!(
            block_on(ws.user_changes(&left.commit, Some(&left.extras), &left))
                .expect("diff")
                .is_empty()
        );
        write(&dir.join("fix.py"), "fix");
        write(&dir.join("keep.txt"), "2");
        write(&dir.join("notes.log"), "mine");
        std::fs::create_dir_all(dir.join("empty")).expect("mkdir");
        let now = block_on(ws.scan("now", None)).expect("scan");
        let changes =
            block_on(ws.user_changes(&left.commit, Some(&left.extras), &now)).expect("diff");
        assert_eq!(changes.files, ["fix.py", "keep.txt"]);
        assert_eq!(changes.extras.ignored, ["notes.log"]);
        assert_eq!(changes.extras.empty_dirs, ["empty/"]);
        let taken = block_on(ws.take_in(&base, &now, &changes, "taken")).expect("take in");
        assert_eq!(
            std::fs::read_to_string(dir.join("fix.py")).expect("read"),
            "fix"
        );
        assert_eq!(
            std::fs::read_to_string(dir.join("keep.txt")).expect("read"),
            "2"
        );
        assert!(dir.join("notes.log").exists() && dir.join("empty").is_dir());
        assert_eq!(
            block_on(ws.repo().expect("repo").head()).as_deref(),
            Some(taken.commit.as_str())
        );
        assert!(block_on(ws.changes()).expect("changes").is_empty());
    }

    #[test]
    fn a_repository_that_tracks_a_runner_file_is_refused() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path();
        write(&dir.join("config.toml"), "");
        let mut ws = open(dir, &[]);
        block_on(ws.baseline("tracks config.toml")).expect("commit");
        drop(ws);
        let config = crate::config::parse(
            &format!("[workspace]\ndir = {:?}\n", dir.display().to_string()),
            Path::new("config.toml"),
        )
        .expect("config");
        // The first one's lock may still be held an instant by a git another test thread
        // forked before its exec closed the descriptor: wait for it.
        let mut opened = None;
        for _ in 0..100 {
            if let Ok(ws) = Workspace::open(&config, &[&dir.join("config.toml")], "test") {
                opened = ws;
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let mut ws = opened.expect("a workspace");
        let err = block_on(ws.attach(None)).expect_err("refused");
        assert!(err.to_string().contains("config.toml"), "{err}");
        assert_eq!(err.exit_code(), 2);
    }

    #[test]
    fn a_second_session_on_a_workspace_is_refused_naming_the_first() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let config = crate::config::parse(
            &format!(
                "[workspace]\ndir = {:?}\n",
                tmp.path().display().to_string()
            ),
            Path::new("config.toml"),
        )
        .expect("config");
        let _first = Workspace::open(&config, &[], "pid 1, checkpoints /a").expect("opens");
        let Err(err) = Workspace::open(&config, &[], "pid 2, checkpoints /b") else {
            panic!("a second session was let in");
        };
        assert!(err.to_string().contains("pid 1, checkpoints /a"), "{err}");
        assert_eq!(err.exit_code(), 2);
    }
}
