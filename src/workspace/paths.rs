//! Which paths of the workspace the runner's git calls take in, as pathspecs and ignore
//! patterns: never the runner's own files (the config, the prompts, `checkpoints/`, given as
//! literal paths relative to the workspace), and never what the snapshot excludes name
//! (virtualenvs, `node_modules`, caches: gitignore-style patterns). Pathspec magic
//! (`:(exclude)`) and `git clean -e` patterns outrank every `.gitignore`, so an agent's
//! whitelist `.gitignore` (`*`, `!*.json`) cannot bring them in.

/// The pathspecs that leave out `protect` (literal paths) and `excludes` (gitignore-style
/// patterns), after `.` (the whole work tree).
pub(crate) fn pathspecs(protect: &[String], excludes: &[String]) -> Vec<String> {
    let mut out = vec![".".to_string()];
    out.extend(protect.iter().map(|p| format!(":(exclude,literal){p}")));
    for pattern in excludes {
        let dir_only = pattern.ends_with('/');
        let core = pattern.trim_end_matches('/');
        // As in a .gitignore: a slash at the start or in the middle anchors the pattern.
        let anchored = core.contains('/');
        let core = core.trim_start_matches('/');
        let prefix = if anchored { "" } else { "**/" };
        if !dir_only {
            out.push(format!(":(exclude,glob){prefix}{core}"));
        }
        out.push(format!(":(exclude,glob){prefix}{core}/**"));
    }
    out
}

/// `path` (relative to the work tree; a trailing `/` for a folder) as an anchored ignore
/// pattern that matches it alone.
pub(crate) fn anchored(path: &str) -> String {
    let mut out = String::with_capacity(path.len() + 2);
    out.push('/');
    let body = path.trim_end_matches('/');
    let trailing = body.len() - body.trim_end_matches(' ').len();
    for (i, c) in body.char_indices() {
        if matches!(c, '*' | '?' | '[' | '\\' | '!' | '#')
            || (c == ' ' && i >= body.len() - trailing)
        {
            out.push('\\');
        }
        out.push(c);
    }
    if path.ends_with('/') {
        out.push('/');
    }
    out
}

/// `git clean -e` arguments that keep `protect`, the `excludes` and `keep` (paths).
pub(crate) fn clean_keeps(protect: &[String], excludes: &[String], keep: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    for pattern in protect
        .iter()
        .map(|p| anchored(p))
        .chain(excludes.iter().cloned())
        .chain(keep.iter().map(|p| anchored(p)))
    {
        out.push("-e".to_string());
        out.push(pattern);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn excludes_become_pathspecs_that_match_at_any_depth_unless_anchored() {
        let specs = pathspecs(
            &["checkpoints".into()],
            &[
                "node_modules/".into(),
                "*.pyc".into(),
                "/data/cache/".into(),
            ],
        );
        assert_eq!(
            specs,
            [
                ".",
                ":(exclude,literal)checkpoints",
                ":(exclude,glob)**/node_modules/**",
                ":(exclude,glob)**/*.pyc",
                ":(exclude,glob)**/*.pyc/**",
                ":(exclude,glob)data/cache/**",
            ]
        );
    }

    #[test]
    fn paths_become_anchored_patterns_with_special_characters_escaped() {
        let cases = [
            ("logs/", "/logs/"),
            ("a b.txt", "/a b.txt"),
            ("trailing ", "/trailing\\ "),
            ("*star?[x].txt", "/\\*star\\?\\[x].txt"),
            ("#hash", "/\\#hash"),
            ("dir/!bang", "/dir/\\!bang"),
            ("ab€.txt", "/ab€.txt"),
        ];
        for (path, want) in cases {
            assert_eq!(anchored(path), want, "{path}");
        }
    }
}
