//! `git status --porcelain=v1 -z` read as git writes it: one record per path, `XY path`,
//! and for a rename or a copy a second record holding the original path (which has no
//! status of its own). Paths are bytes; they are shown lossily as UTF-8, never cut inside a
//! character.

/// One path `git status` reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry {
    /// The two status letters (`??` untracked, `!!` ignored, ` M`, `A `, `R `…).
    pub(crate) code: [u8; 2],
    pub(crate) path: String,
}

impl Entry {
    pub(crate) fn ignored(&self) -> bool {
        &self.code == b"!!"
    }
}

/// The entries of `status --porcelain=v1 -z` output; a rename's or copy's original path is
/// an entry of its own (it, too, changed), with the same status.
pub(crate) fn parse(out: &[u8]) -> Vec<Entry> {
    let mut entries = Vec::new();
    let mut records = out.split(|&b| b == 0).filter(|r| !r.is_empty());
    while let Some(record) = records.next() {
        let (Some(code), Some(path)) = (record.get(..2), record.get(3..)) else {
            continue;
        };
        let code = [code[0], code[1]];
        if path.is_empty() {
            continue;
        }
        entries.push(Entry {
            code,
            path: String::from_utf8_lossy(path).into_owned(),
        });
        if (code.contains(&b'R') || code.contains(&b'C'))
            && let Some(original) = records.next()
        {
            entries.push(Entry {
                code,
                path: String::from_utf8_lossy(original).into_owned(),
            });
        }
    }
    entries
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_are_read_whole_renames_included() {
        let cases: &[(&[u8], &[&str])] = &[
            (b"?? a.txt\0 M b.txt\0", &["a.txt", "b.txt"]),
            (
                "R  ab€.txt\0old.txt\0R  important-notes.txt\0notes.txt\0".as_bytes(),
                &["ab€.txt", "old.txt", "important-notes.txt", "notes.txt"],
            ),
            (
                b"C  copy.txt\0orig.txt\0!! logs/\0",
                &["copy.txt", "orig.txt", "logs/"],
            ),
            (b"", &[]),
            (b"?? \0", &[]),
            (b"??\0", &[]),
        ];
        for (out, want) in cases {
            let paths: Vec<String> = parse(out).into_iter().map(|e| e.path).collect();
            assert_eq!(paths, *want, "{:?}", String::from_utf8_lossy(out));
        }
        assert!(parse(b"!! logs/\0")[0].ignored());
    }
}
