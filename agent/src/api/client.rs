//! The `swarmctl` side of the admin API: one HTTP/1.0 request per connection on the unix
//! socket, synchronous.
//!
//! Written here rather than taken from hyper's client: the admin API needs exactly one
//! request per connection with a close-delimited answer (HTTP/1.0), which is a few lines
//! over `std::os::unix::net::UnixStream`, while hyper's client would add three crates and
//! an async runtime to a CLI that does one call.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

/// Why a request to the agent failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Nobody answers on the socket (the agent is not running, or runs elsewhere).
    #[error("cannot reach the agent at {path}: {source}")]
    Connect {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The connection broke mid-way.
    #[error("talking to the agent: {0}")]
    Io(#[from] std::io::Error),
    /// The answer is not HTTP.
    #[error("the agent's answer is not HTTP: {0}")]
    Protocol(String),
    /// The agent answered with an error status; `message` is its `error` text.
    #[error("{message}")]
    Status { status: u16, message: String },
}

/// An answer with a success status.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub body: String,
}

/// Sends one request and reads the whole answer.
pub fn request(
    socket: &Path,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> Result<Answer, ClientError> {
    let mut reader = send(socket, method, path, body)?;
    let status = read_head(&mut reader)?;
    let mut body = String::new();
    reader.read_to_string(&mut body)?;
    finish(status, body)
}

/// Sends one request and calls `line` for each line of the answer as it arrives (for
/// `alerts --follow`), until the agent closes the connection or `line` returns false.
pub fn stream_lines(
    socket: &Path,
    path: &str,
    mut line: impl FnMut(&str) -> bool,
) -> Result<(), ClientError> {
    let mut reader = send(socket, "GET", path, None)?;
    let status = read_head(&mut reader)?;
    if !(200..300).contains(&status) {
        let mut body = String::new();
        reader.read_to_string(&mut body)?;
        return finish(status, body).map(drop);
    }
    let mut text = String::new();
    loop {
        text.clear();
        if reader.read_line(&mut text)? == 0 {
            return Ok(());
        }
        if !line(text.trim_end()) {
            return Ok(());
        }
    }
}

fn send(
    socket: &Path,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> Result<BufReader<UnixStream>, ClientError> {
    let mut stream = UnixStream::connect(socket).map_err(|source| ClientError::Connect {
        path: socket.to_owned(),
        source,
    })?;
    let body = body.unwrap_or("");
    let head = format!(
        "{method} {path} HTTP/1.0\r\nHost: swarmd\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes())?;
    stream.write_all(body.as_bytes())?;
    Ok(BufReader::new(stream))
}

/// Reads the status line and headers; returns the status.
fn read_head(reader: &mut BufReader<UnixStream>) -> Result<u16, ClientError> {
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let status = line
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| ClientError::Protocol(line.trim().to_owned()))?;
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 || line == "\r\n" || line == "\n" {
            return Ok(status);
        }
    }
}

fn finish(status: u16, body: String) -> Result<Answer, ClientError> {
    if (200..300).contains(&status) {
        return Ok(Answer { status, body });
    }
    let message = serde_json::from_str::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v.get("error")?.as_str().map(str::to_owned))
        .unwrap_or_else(|| format!("the agent answered {status}: {}", body.trim()));
    Err(ClientError::Status { status, message })
}
