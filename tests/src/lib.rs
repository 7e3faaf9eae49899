//! Helpers for end-to-end tests that run the real binaries.
//!
//! Cargo gives an integration test `CARGO_BIN_EXE_*` only for its own package's binaries,
//! and this crate has none. [`bin`] builds the workspace's binaries once per test process
//! (as part of the workspace's test build), with the profile the tests were built with, and
//! finds them in the shared target folder.

pub mod netns;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

/// The path of a workspace binary (`swarmd`, `swarmctl`, `identityd`), built on first use.
pub fn bin(name: &str) -> PathBuf {
    let dir = binaries_dir();
    let path = dir.join(name);
    assert!(
        path.is_file(),
        "{} was not built in {}",
        name,
        dir.display()
    );
    path
}

/// A [`Command`] for a workspace binary.
pub fn command(name: &str) -> Command {
    Command::new(bin(name))
}

/// Runs a workspace binary with `args` and returns what it did.
pub fn run(name: &str, args: &[&str]) -> Output {
    command(name)
        .args(args)
        .output()
        .unwrap_or_else(|err| panic!("cannot run {name}: {err}"))
}

/// The repository's root folder.
pub fn workspace_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate sits in the workspace root")
}

fn binaries_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        // The test executable lives in `<target>/<profile>/deps/`; binaries one level up.
        let exe = std::env::current_exe().expect("the test knows its own path");
        let profile_dir = exe
            .parent()
            .and_then(Path::parent)
            .expect("test executables live in <target>/<profile>/deps")
            .to_owned();
        let target_dir = profile_dir.parent().expect("a profile folder has a parent");
        let profile = profile_dir
            .file_name()
            .and_then(|name| name.to_str())
            .expect("profile folder name is UTF-8");
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let mut build = Command::new(cargo);
        // `cargo test --no-run`, not `cargo build --bins`: features of dev-dependencies are
        // unified only when tests are built, so a plain build would compile some crates a
        // second time; under `cargo test --workspace` this is a no-op.
        build
            .current_dir(workspace_root())
            .args(["test", "--quiet", "--workspace", "--no-run", "--target-dir"])
            .arg(target_dir);
        match profile {
            "debug" => {}
            "release" => {
                build.arg("--release");
            }
            other => {
                build.args(["--profile", other]);
            }
        }
        // Cargo gives a running test the variables it gives a crate being compiled
        // (`CARGO_MANIFEST_DIR`, `CARGO_PKG_*`, ...). Passed on, build scripts that watch
        // them (ring's does, `rerun-if-env-changed`) look changed and everything above
        // them rebuilds: a minute of CI for nothing.
        for (name, _) in std::env::vars_os() {
            if name.to_str().is_some_and(set_by_cargo_for_tests) {
                build.env_remove(name);
            }
        }
        let status = build.status().expect("cargo can be started");
        assert!(status.success(), "building the workspace binaries failed");
        profile_dir
    })
}

/// Whether cargo sets `name` for the test it runs (as opposed to configuration the user
/// gave cargo, such as `CARGO_HOME` or `CARGO_TARGET_DIR`, which must pass through).
fn set_by_cargo_for_tests(name: &str) -> bool {
    const PREFIXES: [&str; 4] = [
        "CARGO_PKG_",
        "CARGO_MANIFEST_",
        "CARGO_BIN_",
        "CARGO_CRATE_",
    ];
    PREFIXES.iter().any(|prefix| name.starts_with(prefix))
        || matches!(
            name,
            "CARGO_PRIMARY_PACKAGE" | "CARGO_TARGET_TMPDIR" | "CARGO_RUSTC_CURRENT_DIR"
        )
}

/// A loopback TCP port that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("loopback has free ports")
        .local_addr()
        .expect("a bound socket has an address")
        .port()
}

/// `GET path` over HTTP/1.0 on loopback, retried until something answers or 20 s pass.
pub fn http_get(port: u16, path: &str) -> String {
    use std::io::{Read, Write};
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        match std::net::TcpStream::connect(("127.0.0.1", port)) {
            Ok(mut stream) => {
                write!(stream, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n")
                    .expect("the request is written");
                let mut response = String::new();
                stream
                    .read_to_string(&mut response)
                    .expect("the response is read");
                return response;
            }
            Err(err) if std::time::Instant::now() > deadline => {
                panic!("nothing listens on {port}: {err}")
            }
            Err(_) => std::thread::sleep(std::time::Duration::from_millis(50)),
        }
    }
}

/// Sends SIGTERM and returns the exit code.
pub fn terminate(mut child: std::process::Child) -> Option<i32> {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill can be started");
    assert!(status.success());
    child.wait().expect("the child can be waited for").code()
}
