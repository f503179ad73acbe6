//! A prompt's id: the numeric prefix of its file name (`01.1`, `02.10`, `07`), compared
//! part by part as numbers, so that `02.10` runs after `02.9` and `1.1` is `01.1`.

/// A prompt id: the numeric prefix of a file name, compared part by part as numbers.
#[derive(Debug, Clone)]
pub(crate) struct PromptId {
    text: String,
    parts: Vec<u64>,
}

impl PromptId {
    /// Parses `01.2`, `7`, `02.10` (digits and dots, nothing else).
    pub(crate) fn parse(text: &str) -> Option<PromptId> {
        let (id, rest) = PromptId::split_prefix(text)?;
        rest.is_empty().then_some(id)
    }

    /// Splits a numeric prefix off a file or folder stem: `01.2-dependencies` gives
    /// (`01.2`, `-dependencies`). The prefix must be followed by nothing, `-`, `_` or a space.
    pub(crate) fn split_prefix(stem: &str) -> Option<(PromptId, &str)> {
        let bytes = stem.as_bytes();
        let mut end = 0;
        let mut parts = Vec::new();
        loop {
            let start = end;
            while end < bytes.len() && bytes[end].is_ascii_digit() {
                end += 1;
            }
            if end == start {
                return None;
            }
            parts.push(stem[start..end].parse::<u64>().ok()?);
            if end + 1 < bytes.len() && bytes[end] == b'.' && bytes[end + 1].is_ascii_digit() {
                end += 1;
            } else {
                break;
            }
        }
        let rest = &stem[end..];
        if rest.is_empty() || rest.starts_with(['-', '_', ' ']) {
            Some((
                PromptId {
                    text: stem[..end].to_string(),
                    parts,
                },
                rest,
            ))
        } else {
            None
        }
    }

    pub(crate) fn as_str(&self) -> &str {
        &self.text
    }
}

impl PartialEq for PromptId {
    fn eq(&self, other: &Self) -> bool {
        self.parts == other.parts
    }
}
impl Eq for PromptId {}
impl PartialOrd for PromptId {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for PromptId {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.parts.cmp(&other.parts)
    }
}
impl std::fmt::Display for PromptId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_order_part_by_part_as_numbers() {
        let mut ids: Vec<_> = ["02.10", "02.9", "01.1", "07", "02.1"]
            .iter()
            .map(|s| PromptId::parse(s).expect("id"))
            .collect();
        ids.sort();
        let order: Vec<_> = ids.iter().map(PromptId::as_str).collect();
        assert_eq!(order, ["01.1", "02.1", "02.9", "02.10", "07"]);
        assert_eq!(PromptId::parse("2.1"), PromptId::parse("02.1"));
    }

    #[test]
    fn prefixes() {
        let (id, rest) = PromptId::split_prefix("01.2-dependencies").expect("prefix");
        assert_eq!((id.as_str(), rest), ("01.2", "-dependencies"));
        assert_eq!(
            PromptId::split_prefix("07").map(|(i, _)| i.as_str().to_string()),
            Some("07".into())
        );
        assert!(PromptId::split_prefix("README").is_none());
        assert!(PromptId::split_prefix("2024notes").is_none());
        assert!(PromptId::split_prefix("1.x").is_none());
    }
}
