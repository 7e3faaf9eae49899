//! Domain blocklist files (`rules/domains/*.txt`, installed in
//! `/etc/swarmguard/domains.d`): one domain per line, `#` starts a comment, and hosts-file
//! lines (`0.0.0.0 evil.example`, several names allowed) are accepted too, so that
//! published hosts-format lists can be used as they are. A bad line is reported as
//! `FILE:LINE: message` and skipped; the rest of the file still loads.

use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use crate::subject::{Domain, Subject};

/// One line (or file) that could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct BlocklistError {
    pub path: PathBuf,
    /// 1-based; 0 when the whole file could not be read.
    pub line: usize,
    pub message: String,
}

impl fmt::Display for BlocklistError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}", self.path.display(), self.message)
        } else {
            write!(f, "{}:{}: {}", self.path.display(), self.line, self.message)
        }
    }
}

/// What loading the configured paths gave.
#[derive(Debug, Default)]
pub struct Blocklist {
    /// The domains, deduplicated, in file order.
    pub domains: Vec<Domain>,
    /// Every line or file skipped, in order.
    pub errors: Vec<BlocklistError>,
    /// Files read.
    pub files: usize,
}

/// Names every hosts file carries for the machine itself; they are not blocklist entries.
const HOSTS_FILE_LOCAL_NAMES: &[&str] = &[
    "localhost",
    "localhost.localdomain",
    "local",
    "broadcasthost",
    "ip6-localhost",
    "ip6-loopback",
    "ip6-localnet",
    "ip6-mcastprefix",
    "ip6-allnodes",
    "ip6-allrouters",
    "ip6-allhosts",
    "0.0.0.0",
];

/// Reads `paths` (files, or folders whose `*.txt` files are read in name order), keeping at
/// most `limit` domains; entries past the limit are reported once per file.
pub fn load(paths: &[PathBuf], limit: usize) -> Blocklist {
    let mut out = Blocklist::default();
    let mut seen = std::collections::HashSet::new();
    for path in paths {
        let files = match files_under(path) {
            Ok(files) => files,
            Err(err) => {
                out.errors.push(BlocklistError {
                    path: path.clone(),
                    line: 0,
                    message: format!("cannot read: {err}"),
                });
                continue;
            }
        };
        for file in files {
            let text = match std::fs::read_to_string(&file) {
                Ok(text) => text,
                Err(err) => {
                    out.errors.push(BlocklistError {
                        path: file,
                        line: 0,
                        message: format!("cannot read: {err}"),
                    });
                    continue;
                }
            };
            out.files += 1;
            let mut full_reported = false;
            for (index, result) in parse(&text) {
                match result {
                    Ok(domain) => {
                        if seen.contains(&domain) {
                            continue;
                        }
                        if out.domains.len() >= limit {
                            if !full_reported {
                                full_reported = true;
                                out.errors.push(BlocklistError {
                                    path: file.clone(),
                                    line: index,
                                    message: format!(
                                        "limit of {limit} domains reached (dns.max_domains); the rest is skipped"
                                    ),
                                });
                            }
                            continue;
                        }
                        seen.insert(domain.clone());
                        out.domains.push(domain);
                    }
                    Err(message) => out.errors.push(BlocklistError {
                        path: file.clone(),
                        line: index,
                        message,
                    }),
                }
            }
        }
    }
    out
}

fn files_under(path: &Path) -> std::io::Result<Vec<PathBuf>> {
    if !std::fs::metadata(path)?.is_dir() {
        return Ok(vec![path.to_owned()]);
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(path)?
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .filter(|file| file.extension().is_some_and(|ext| ext == "txt") && file.is_file())
        .collect();
    files.sort();
    Ok(files)
}

/// The entries of one file with their 1-based line numbers; blank and comment lines give
/// nothing.
pub fn parse(text: &str) -> impl Iterator<Item = (usize, Result<Domain, String>)> + '_ {
    text.lines().enumerate().flat_map(|(index, line)| {
        let line = match line.find('#') {
            Some(hash) => &line[..hash],
            None => line,
        };
        let mut fields = line.split_whitespace().peekable();
        let mut entries = Vec::new();
        let Some(first) = fields.next() else {
            return entries.into_iter();
        };
        if first.parse::<IpAddr>().is_ok() {
            // hosts-file form: the address, then one or more names.
            if fields.peek().is_none() {
                entries.push((index + 1, Err(format!("\"{first}\" has no name after it"))));
            }
            for name in fields {
                if HOSTS_FILE_LOCAL_NAMES.contains(&name.to_ascii_lowercase().as_str()) {
                    continue;
                }
                entries.push((index + 1, domain(name)));
            }
        } else if let Some(extra) = fields.next() {
            entries.push((
                index + 1,
                Err(format!(
                    "expected one domain per line, found \"{first}\" followed by \"{extra}\""
                )),
            ));
        } else {
            entries.push((index + 1, domain(first)));
        }
        entries.into_iter()
    })
}

fn domain(text: &str) -> Result<Domain, String> {
    match text.parse::<Subject>() {
        Ok(Subject::Domain(domain)) => Ok(domain),
        Ok(_) => Err(format!("\"{text}\" is an address, not a domain")),
        Err(_) => Err(format!("\"{text}\" is not a domain name")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_and_hosts_lines_load_and_bad_lines_name_their_line() {
        let text = "# a list\n\nevil.example\n0.0.0.0 ads.example tracker.example # two\n\
                    127.0.0.1 localhost\nnot a domain\nbad_-.\n192.0.2.1\nEvil.Example.\n";
        let entries: Vec<_> = parse(text).collect();
        let ok: Vec<String> = entries
            .iter()
            .filter_map(|(_, r)| r.as_ref().ok().map(|d| d.as_str().to_owned()))
            .collect();
        assert_eq!(
            ok,
            [
                "evil.example",
                "ads.example",
                "tracker.example",
                "evil.example"
            ]
        );
        let errors: Vec<(usize, &str)> = entries
            .iter()
            .filter_map(|(line, r)| r.as_ref().err().map(|e| (*line, e.as_str())))
            .collect();
        assert_eq!(
            errors,
            [
                (
                    6,
                    "expected one domain per line, found \"not\" followed by \"a\""
                ),
                (7, "\"bad_-.\" is not a domain name"),
                (8, "\"192.0.2.1\" has no name after it"),
            ]
        );
    }

    #[test]
    fn folders_files_limits_and_errors() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("a.txt"),
            "one.example\nwrong one\ntwo.example\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("b.txt"), "one.example\nthree.example\n").unwrap();
        std::fs::write(dir.path().join("notes.md"), "ignored.example\n").unwrap();
        let missing = dir.path().join("missing.txt");
        let list = load(&[dir.path().to_owned(), missing.clone()], 100);
        let names: Vec<String> = list.domains.iter().map(|d| d.as_str().to_owned()).collect();
        assert_eq!(names, ["one.example", "two.example", "three.example"]);
        assert_eq!(list.files, 2);
        let errors: Vec<String> = list.errors.iter().map(|e| e.to_string()).collect();
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert_eq!(
            errors[0],
            format!(
                "{}:2: expected one domain per line, found \"wrong\" followed by \"one\"",
                dir.path().join("a.txt").display()
            )
        );
        assert!(errors[1].starts_with(&format!("{}: cannot read", missing.display())));

        let limited = load(&[dir.path().to_owned()], 2);
        assert_eq!(limited.domains.len(), 2);
        assert!(
            limited
                .errors
                .iter()
                .any(|e| e.message.contains("limit of 2 domains"))
        );
    }
}
