//! The `identityd` command line, defined once here so that `main`, the man page and the
//! shell completions all come from the same table.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// Swarmguard identity service: issues, verifies and revokes W3C Verifiable Credentials
/// for citizens and for the agents of the swarm.
#[derive(Debug, Parser)]
#[command(name = "identityd", version, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the HTTP service in the foreground.
    Serve(ServeArgs),
    /// Validate a configuration file without starting.
    CheckConfig(CheckConfigArgs),
    /// Back up or restore the issuer key.
    #[command(subcommand)]
    Key(KeyCommand),
    /// Verify a credential or presentation file.
    Verify {
        /// The credential (JSON or compact JWT) to verify.
        file: PathBuf,
        /// Print one JSON object instead of a report for people.
        #[arg(long)]
        json: bool,
    },
    /// Issue a credential for the subject described in a file.
    Issue {
        /// The credential subject (JSON).
        #[arg(long)]
        subject: PathBuf,
        /// Print one JSON object instead of a report for people.
        #[arg(long)]
        json: bool,
    },
    /// Revoke a credential by its id.
    Revoke {
        /// The credential's `id`.
        id: String,
        /// Print one JSON object instead of a report for people.
        #[arg(long)]
        json: bool,
    },
    /// Write the man page or a shell completion script to stdout (for packagers).
    #[command(hide = true)]
    Generate(crate::cli_docs::GenerateArgs),
}

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Configuration file [default: /etc/swarmguard/identity.toml when it exists,
    /// built-in defaults otherwise].
    #[arg(long, short = 'c', value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Address to listen on; overrides `server.listen`.
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// State directory (issuer key, admin token, database); overrides `server.state_dir`.
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// Base of every URL the service publishes; overrides `server.public_url`.
    #[arg(long, value_name = "URL")]
    pub public_url: Option<url::Url>,
}

#[derive(Debug, clap::Args)]
pub struct CheckConfigArgs {
    /// The file to check.
    pub file: PathBuf,
    /// Treat warnings (such as referenced files that do not exist yet) as errors.
    #[arg(long)]
    pub strict: bool,
}

#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// Write the issuer key to a file, for backup or a move to another host.
    Export {
        /// Where to write the key (created with mode 0600).
        file: PathBuf,
    },
    /// Install an issuer key exported from another host.
    Import {
        /// The exported key.
        file: PathBuf,
    },
}
