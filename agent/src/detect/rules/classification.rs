//! `classification.config`: maps a rule's `classtype` to a description (the eve.json
//! `category`) and a priority (the `severity`).

use std::collections::HashMap;

/// The classification file the agent ships and uses unless told otherwise.
pub const BUILTIN: &str = include_str!("../../../../rules/suricata/classification.config");

/// One classtype's description and priority.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Class {
    pub description: String,
    pub priority: u32,
}

/// The classtypes rules may name.
#[derive(Debug, Clone, Default)]
pub struct Classification {
    classes: HashMap<String, Class>,
}

impl Classification {
    /// The shipped `rules/suricata/classification.config`.
    pub fn builtin() -> Classification {
        Classification::parse(BUILTIN).0
    }

    /// Parses `config classification: name,description,priority` lines. Lines that do not
    /// parse are returned as `(line, message)` and skipped.
    pub fn parse(text: &str) -> (Classification, Vec<(usize, String)>) {
        let mut classes = HashMap::new();
        let mut errors = Vec::new();
        for (index, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let Some(rest) = line.strip_prefix("config classification:") else {
                errors.push((index + 1, "expected \"config classification:\"".to_owned()));
                continue;
            };
            let mut fields = rest.splitn(3, ',').map(str::trim);
            let (Some(name), Some(description), Some(priority)) =
                (fields.next(), fields.next(), fields.next())
            else {
                errors.push((index + 1, "expected name,description,priority".to_owned()));
                continue;
            };
            let Ok(priority) = priority.parse::<u32>() else {
                errors.push((index + 1, format!("invalid priority \"{priority}\"")));
                continue;
            };
            classes.insert(
                name.to_owned(),
                Class {
                    description: description.to_owned(),
                    priority,
                },
            );
        }
        (Classification { classes }, errors)
    }

    pub fn get(&self, name: &str) -> Option<&Class> {
        self.classes.get(name)
    }

    pub fn len(&self) -> usize {
        self.classes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.classes.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_file_parses_and_knows_the_usual_classtypes() {
        let (classes, errors) = Classification::parse(BUILTIN);
        assert!(errors.is_empty(), "{errors:?}");
        let scan = classes.get("attempted-recon").unwrap();
        assert_eq!(scan.priority, 2);
        assert_eq!(classes.get("trojan-activity").unwrap().priority, 1);
        assert!(classes.len() > 30);
    }

    #[test]
    fn bad_lines_are_reported_and_skipped() {
        let (classes, errors) = Classification::parse(
            "config classification: a,An A,1\nnonsense\nconfig classification: b,B,x\n",
        );
        assert_eq!(classes.len(), 1);
        assert_eq!(errors.len(), 2);
        assert_eq!(errors[0].0, 2);
    }
}
