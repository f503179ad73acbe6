//! `config.toml`: the build's settings (docs, "Configuration reference"), read: its types
//! in [`model`], what TOML allows but the settings may not say in [`validate`].
//!
//! Every key has a default, so an empty file is valid, and every table rejects unknown keys
//! so that a misspelt key is an error naming it rather than a setting silently ignored.
//! Errors carry the file and line, taken from the TOML parser's span.

use std::collections::BTreeMap;
use std::path::Path;

use crate::error::{Error, Result, line_of};

mod llm;
mod model;
mod validate;
mod values;

pub(crate) use model::*;

/// Parses config text; `path` is only used in messages.
pub(crate) fn parse(text: &str, path: &Path) -> Result<Config> {
    let config: Config = toml::from_str(text).map_err(|e| Error::Config {
        path: path.to_path_buf(),
        line: e.span().map(|s| line_of(text, s.start)),
        message: format!(
            "{}; see the configuration reference in docs/src/configuration.md",
            e.message().trim_end()
        ),
    })?;
    validate::validate(&config, path)?;
    Ok(config)
}

/// Loads `path`. A missing file is an error only when the user named it (`explicit`);
/// otherwise every key takes its default.
pub(crate) fn load(path: &Path, explicit: bool) -> Result<Config> {
    match std::fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8(bytes).map_err(|e| Error::Config {
                path: path.to_path_buf(),
                line: Some(line_of(
                    &String::from_utf8_lossy(e.as_bytes()),
                    e.utf8_error().valid_up_to(),
                )),
                message: "the file is not UTF-8 text".into(),
            })?;
            let mut config = parse(&text, path)?;
            anchor(&mut config, path)?;
            Ok(config)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !explicit => Ok(Config::default()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(Error::Config {
            path: path.to_path_buf(),
            line: None,
            message: "no such file; pass an existing file to --config".into(),
        }),
        Err(e) => Err(Error::io(path, e)),
    }
}

/// Makes paths given relative to the config file absolute (or relative to where the
/// command runs): `project.prompts`, `[context] files`, `[workspace].dir` (and
/// defines the built-in variable `{{workspace}}` as it), and an agent program given as
/// a relative path (`./agent.sh`), which runs in the workspace.
fn anchor(config: &mut Config, path: &Path) -> Result<()> {
    let base = path.parent().unwrap_or(Path::new(""));
    if let Some(prompts) = &config.project.prompts {
        config.project.prompts = Some(base.join(prompts));
    }
    for file in &mut config.context.files {
        *file = base.join(&*file);
    }
    if let Some(program) = config.llm.command.first_mut()
        && program.contains('/')
        && Path::new(program.as_str()).is_relative()
        && let Ok(abs) = std::path::absolute(base.join(program.as_str()))
    {
        *program = abs.display().to_string();
    }
    let Some(dir) = &config.workspace.dir else {
        return Ok(());
    };
    let dir = std::path::absolute(base.join(dir)).map_err(|e| Error::Config {
        path: path.to_path_buf(),
        line: None,
        message: format!("`workspace.dir`: {e}"),
    })?;
    if config.variables.contains_key(WORKSPACE) {
        return Err(Error::Config {
            path: path.to_path_buf(),
            line: None,
            message: "`variables.workspace`: `{{workspace}}` is the workspace's path, built in once [workspace].dir is set; rename the variable".into(),
        });
    }
    config.variables.insert(
        WORKSPACE.into(),
        serde_json::Value::from(dir.display().to_string()),
    );
    config.workspace.dir = Some(dir);
    Ok(())
}

/// The built-in variable that names the workspace once `[workspace].dir` is set.
const WORKSPACE: &str = "workspace";

/// `vars` with `{{workspace}}` naming `dir` rather than the workspace, where there is a
/// workspace: a tree that stands in for it (a parallel attempt's worktree, a merged tree,
/// a copy of a base commit), so that what a prompt or check does through the variable
/// lands there.
pub(crate) fn workspace_at(vars: &mut BTreeMap<String, serde_json::Value>, dir: &Path) {
    if let Some(value) = vars.get_mut(WORKSPACE) {
        *value = serde_json::Value::from(dir.display().to_string());
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::values::check_url;
    use super::*;

    fn parse(text: &str) -> Result<Config> {
        super::parse(text, Path::new("config.toml"))
    }

    #[test]
    fn empty_file_takes_every_default() {
        let c = parse("").expect("empty config is valid");
        assert_eq!(c.budget.total, 100_000);
        assert_eq!(c.budget.per_prompt, 3000);
        assert_eq!(c.budget.min_output, 256);
        assert_eq!(c.llm.max_tokens, 2000);
        assert_eq!(c.run.max_duration, Duration::from_secs(8 * 3600));
        assert_eq!(c.retry.max_attempts, 3);
    }

    #[test]
    fn misspelt_key_is_named_with_its_line() {
        let err = parse("[llm]\nmodel = \"x\"\nmax_tokns = 5\n").expect_err("unknown key");
        let msg = err.to_string();
        assert!(msg.contains("max_tokns"), "{msg}");
        assert!(msg.starts_with("config.toml:3:"), "{msg}");
    }

    #[test]
    fn bad_duration_is_explained() {
        let err = parse("[run]\nmax_duration = \"8 hourz\"\n").expect_err("bad duration");
        let msg = err.to_string();
        assert!(msg.contains("config.toml:2"), "{msg}");
        assert!(msg.contains("invalid duration \"8 hourz\""), "{msg}");
    }

    #[test]
    fn durations_parse() {
        let c = parse("[llm]\ntimeout = \"90s\"\nidle_timeout = \"1h 30m\"\n").expect("valid");
        assert_eq!(c.llm.timeout, Duration::from_secs(90));
        assert_eq!(c.llm.idle_timeout, Duration::from_secs(5400));
    }

    #[test]
    fn base_urls() {
        for (url, ok) in [
            ("http://127.0.0.1:4000/v1", true),
            ("https://api.openai.com/v1", true),
            (
                "https://h/openai/deployments/x?api-version=2024-10-21",
                true,
            ),
            ("127.0.0.1:4341/v1", false),
            ("", false),
            ("ftp://h/v1", false),
            ("http://user:pw@h/v1", false),
            ("http://user@h/v1", false),
        ] {
            let got = check_url(url);
            assert_eq!(got.is_ok(), ok, "{url:?}: {got:?}");
            if let Err(e) = got {
                assert!(!e.contains("pw"), "{e}");
            }
        }
    }

    #[test]
    fn duplicate_phase_dir_is_an_error() {
        let err = parse("[[phases]]\ndir = \"a\"\n[[phases]]\ndir = \"a\"\n").expect_err("dup");
        assert!(err.to_string().contains("phases[1].dir"), "{err}");
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #[test]
            fn any_text_gives_a_config_or_a_named_error(text in "(\\PC|\n|\\[|\\]|=|\")*") {
                if let Err(e) = crate::config::parse(&text, Path::new("config.toml")) {
                    prop_assert!(e.to_string().starts_with("config.toml"));
                }
            }
        }
    }
}
