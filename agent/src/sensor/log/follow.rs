//! [`FileFollower`]: follows one path like `tail -F`. It is synchronous and does no waiting
//! of its own: the caller calls [`FileFollower::poll`] when a file may have changed (an
//! inotify event or a poll tick) and gets every complete line written since the last call.
//!
//! What it survives:
//! - **rotation by rename** (logrotate's default): the path now names another inode. The
//!   old handle is read to its end first, so no line written before the rename is lost,
//!   then the new file is read from its beginning.
//! - **copytruncate**: the file shrank below what was read, so it is read again from 0.
//!   A truncation followed, before the next poll, by more writes than were read before is
//!   indistinguishable from appending (as for `tail -F`); inotify wakeups make that window
//!   short.
//! - **a file that appears later**: read from its beginning, since all of it is new.
//! - **partial lines**: kept until their newline arrives; at most `max_line` bytes are kept,
//!   longer lines are cut, handed on marked `truncated`, and the rest of them skipped.

use std::fs::{self, File};
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Where to start in a file that already exists when following begins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartAt {
    /// Only what is written from now on (the daemon's default, like `tail -F`).
    End,
    /// Everything already in the file (replay, tests).
    Beginning,
}

/// How a follower reads.
#[derive(Debug, Clone, Copy)]
pub struct FollowOptions {
    pub start: StartAt,
    /// Lines longer than this many bytes are cut to it and counted.
    pub max_line: usize,
    /// At most this many bytes are read per file per poll, so that one busy file cannot
    /// starve the others and a batch of lines stays bounded.
    pub max_read: usize,
}

impl Default for FollowOptions {
    fn default() -> Self {
        FollowOptions {
            start: StartAt::End,
            max_line: 16 * 1024,
            max_read: 1024 * 1024,
        }
    }
}

/// One line of a followed file, without its newline (and without a trailing `\r`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FollowedLine {
    pub text: String,
    /// The line was longer than `max_line` and was cut.
    pub truncated: bool,
}

/// What a follower has seen, for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FollowStats {
    pub lines: u64,
    pub bytes: u64,
    pub truncated_lines: u64,
    pub rotations: u64,
    pub truncations: u64,
    pub read_errors: u64,
}

/// The outcome of one [`FileFollower::poll`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Polled {
    /// Everything available was read.
    Idle,
    /// `max_read` bytes were read and more may be waiting: poll again soon.
    More,
}

#[derive(Debug)]
struct OpenFile {
    file: File,
    /// Device and inode: a different pair under the same path means the file was rotated.
    id: (u64, u64),
    offset: u64,
}

/// Follows one path. See the module documentation.
#[derive(Debug)]
pub struct FileFollower {
    path: PathBuf,
    options: FollowOptions,
    open: Option<OpenFile>,
    /// Bytes of a line whose newline has not arrived yet (at most `max_line`).
    partial: Vec<u8>,
    /// The current line was already cut and handed on: skip to its newline.
    skipping: bool,
    stats: FollowStats,
}

impl FileFollower {
    /// Starts following `path`. When the file exists it is opened now, at its end or its
    /// beginning as `options.start` says, so that everything written after this returns
    /// is seen; when it does not, it is read from its beginning once it appears.
    pub fn new(path: impl Into<PathBuf>, options: FollowOptions) -> FileFollower {
        let mut follower = FileFollower {
            path: path.into(),
            options,
            open: None,
            partial: Vec::new(),
            skipping: false,
            stats: FollowStats::default(),
        };
        if let Ok(mut open) = open_file(&follower.path) {
            if options.start == StartAt::End {
                match open.file.seek(SeekFrom::End(0)) {
                    Ok(end) => open.offset = end,
                    Err(_) => follower.stats.read_errors += 1,
                }
            }
            follower.open = Some(open);
        }
        follower
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn stats(&self) -> FollowStats {
        self.stats
    }

    /// Reads whatever was written since the last call and hands each complete line to
    /// `out`. I/O errors are counted, never fatal: the next poll tries again.
    pub fn poll(&mut self, out: &mut dyn FnMut(FollowedLine)) -> Polled {
        let current = fs::metadata(&self.path);
        let mut budget = self.options.max_read;
        if let Some(open) = &mut self.open {
            match &current {
                Ok(meta) if (meta.dev(), meta.ino()) != open.id => {
                    // Rotated by rename: finish the old file, then switch.
                    if drain(
                        open,
                        &mut budget,
                        &mut self.partial,
                        &mut self.skipping,
                        &mut self.stats,
                        self.options.max_line,
                        out,
                    ) == Polled::More
                    {
                        return Polled::More;
                    }
                    // The last line of a finished file needs no newline to be complete.
                    self.flush_partial(out);
                    self.open = None;
                    self.stats.rotations += 1;
                }
                Ok(meta) if meta.len() < open.offset => {
                    // Copytruncate: everything now in the file is new.
                    match open.file.seek(SeekFrom::Start(0)) {
                        Ok(_) => {
                            open.offset = 0;
                            self.partial.clear();
                            self.skipping = false;
                            self.stats.truncations += 1;
                        }
                        Err(_) => {
                            self.stats.read_errors += 1;
                            return Polled::Idle;
                        }
                    }
                }
                // Unchanged, or gone (renamed and not recreated yet): keep reading the
                // handle, which the writer may still be using.
                _ => {}
            }
        }
        if self.open.is_none() {
            if current.is_err() {
                return Polled::Idle;
            }
            match open_file(&self.path) {
                Ok(open) => self.open = Some(open),
                Err(_) => {
                    self.stats.read_errors += 1;
                    return Polled::Idle;
                }
            }
        }
        match &mut self.open {
            Some(open) => drain(
                open,
                &mut budget,
                &mut self.partial,
                &mut self.skipping,
                &mut self.stats,
                self.options.max_line,
                out,
            ),
            None => Polled::Idle,
        }
    }

    fn flush_partial(&mut self, out: &mut dyn FnMut(FollowedLine)) {
        if !self.partial.is_empty() && !self.skipping {
            let text = line_text(&self.partial);
            self.stats.lines += 1;
            out(FollowedLine {
                text,
                truncated: false,
            });
        }
        self.partial.clear();
        self.skipping = false;
    }
}

fn open_file(path: &Path) -> io::Result<OpenFile> {
    let file = File::open(path)?;
    let meta = file.metadata()?;
    Ok(OpenFile {
        file,
        id: (meta.dev(), meta.ino()),
        offset: 0,
    })
}

/// Reads `open` to its end (or until `budget` is spent), splitting lines.
fn drain(
    open: &mut OpenFile,
    budget: &mut usize,
    partial: &mut Vec<u8>,
    skipping: &mut bool,
    stats: &mut FollowStats,
    max_line: usize,
    out: &mut dyn FnMut(FollowedLine),
) -> Polled {
    let mut buf = vec![0u8; (*budget).clamp(1, 64 * 1024)];
    loop {
        if *budget == 0 {
            return Polled::More;
        }
        let want = buf.len().min(*budget);
        let n = match open.file.read(&mut buf[..want]) {
            Ok(0) => return Polled::Idle,
            Ok(n) => n,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => {
                stats.read_errors += 1;
                return Polled::Idle;
            }
        };
        *budget -= n;
        open.offset += n as u64;
        stats.bytes += n as u64;
        split_lines(&buf[..n], partial, skipping, stats, max_line, out);
    }
}

fn split_lines(
    mut data: &[u8],
    partial: &mut Vec<u8>,
    skipping: &mut bool,
    stats: &mut FollowStats,
    max_line: usize,
    out: &mut dyn FnMut(FollowedLine),
) {
    while !data.is_empty() {
        let newline = data.iter().position(|&b| b == b'\n');
        let (chunk, rest, complete) = match newline {
            Some(at) => (&data[..at], &data[at + 1..], true),
            None => (data, &data[data.len()..], false),
        };
        data = rest;
        if *skipping {
            if complete {
                *skipping = false;
            }
            continue;
        }
        let room = max_line.saturating_sub(partial.len());
        if chunk.len() > room {
            partial.extend_from_slice(&chunk[..room]);
            stats.lines += 1;
            stats.truncated_lines += 1;
            out(FollowedLine {
                text: line_text(partial),
                truncated: true,
            });
            partial.clear();
            *skipping = !complete;
            continue;
        }
        partial.extend_from_slice(chunk);
        if complete {
            stats.lines += 1;
            out(FollowedLine {
                text: line_text(partial),
                truncated: false,
            });
            partial.clear();
        }
    }
}

/// Lines are text in any encoding; invalid UTF-8 is replaced rather than dropped, since
/// the address in the line is ASCII anyway.
fn line_text(bytes: &[u8]) -> String {
    let bytes = bytes.strip_suffix(b"\r").unwrap_or(bytes);
    String::from_utf8_lossy(bytes).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn lines(follower: &mut FileFollower) -> Vec<String> {
        let mut got = Vec::new();
        while follower.poll(&mut |line| got.push(line.text)) == Polled::More {}
        got
    }

    fn append(path: &Path, text: &str) {
        let mut file = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .unwrap();
        file.write_all(text.as_bytes()).unwrap();
    }

    #[test]
    fn starts_at_the_end_and_sees_only_new_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("auth.log");
        append(&path, "old 1\nold 2\n");
        let mut follower = FileFollower::new(&path, FollowOptions::default());
        assert!(lines(&mut follower).is_empty());
        append(&path, "new 1\n");
        assert_eq!(lines(&mut follower), ["new 1"]);
    }

    #[test]
    fn start_at_beginning_replays_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("auth.log");
        append(&path, "old 1\r\nold 2\n");
        let options = FollowOptions {
            start: StartAt::Beginning,
            ..FollowOptions::default()
        };
        let mut follower = FileFollower::new(&path, options);
        assert_eq!(lines(&mut follower), ["old 1", "old 2"]);
    }

    #[test]
    fn partial_lines_wait_for_their_newline() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("auth.log");
        append(&path, "");
        let mut follower = FileFollower::new(&path, FollowOptions::default());
        append(&path, "half a ");
        assert!(lines(&mut follower).is_empty());
        append(&path, "line\nnext");
        assert_eq!(lines(&mut follower), ["half a line"]);
        append(&path, "\n");
        assert_eq!(lines(&mut follower), ["next"]);
    }

    #[test]
    fn rename_rotation_loses_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("auth.log");
        append(&path, "");
        let mut follower = FileFollower::new(&path, FollowOptions::default());
        append(&path, "before\n");
        // Written after our last read but before the rotation: must still be read.
        assert_eq!(lines(&mut follower), ["before"]);
        append(&path, "last of old\nunterminated");
        fs::rename(&path, dir.path().join("auth.log.1")).unwrap();
        append(&path, "first of new\n");
        assert_eq!(
            lines(&mut follower),
            ["last of old", "unterminated", "first of new"]
        );
        assert_eq!(follower.stats().rotations, 1);
    }

    #[test]
    fn copytruncate_rereads_from_the_start() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("access.log");
        append(&path, "");
        let mut follower = FileFollower::new(&path, FollowOptions::default());
        append(&path, "a fairly long line before truncation\n");
        assert_eq!(lines(&mut follower).len(), 1);
        fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(0)
            .unwrap();
        append(&path, "short\n");
        assert_eq!(lines(&mut follower), ["short"]);
        assert_eq!(follower.stats().truncations, 1);
    }

    #[test]
    fn a_file_that_appears_later_is_read_from_its_start() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("late.log");
        let mut follower = FileFollower::new(&path, FollowOptions::default());
        assert!(lines(&mut follower).is_empty());
        append(&path, "one\ntwo\n");
        assert_eq!(lines(&mut follower), ["one", "two"]);
    }

    #[test]
    fn long_lines_are_cut_and_counted() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("auth.log");
        append(&path, "");
        let options = FollowOptions {
            max_line: 8,
            ..FollowOptions::default()
        };
        let mut follower = FileFollower::new(&path, options);
        append(&path, "0123456789abcdef\nok\n0123");
        append(&path, "456789");
        let mut got = Vec::new();
        follower.poll(&mut |line| got.push(line));
        append(&path, "xyz\nafter\n");
        follower.poll(&mut |line| got.push(line));
        let texts: Vec<_> = got.iter().map(|l| (l.text.as_str(), l.truncated)).collect();
        assert_eq!(
            texts,
            [
                ("01234567", true),
                ("ok", false),
                ("01234567", true),
                ("after", false)
            ]
        );
        assert_eq!(follower.stats().truncated_lines, 2);
    }

    #[test]
    fn reads_are_bounded_per_poll() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("auth.log");
        append(&path, "");
        let options = FollowOptions {
            max_read: 10,
            ..FollowOptions::default()
        };
        let mut follower = FileFollower::new(&path, options);
        append(&path, "line one\nline two\nline three\n");
        let mut got = Vec::new();
        assert_eq!(follower.poll(&mut |l| got.push(l.text)), Polled::More);
        assert_eq!(got, ["line one"]);
        assert_eq!(lines(&mut follower), ["line two", "line three"]);
    }
}
