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
    /// Verify a credential or presentation file (proof offline; status from the local
    /// state or the issuer's status list).
    Verify {
        /// The credential or presentation (JSON, or a compact VC-JWT) to verify.
        file: PathBuf,
        /// Print one JSON object instead of a report for people.
        #[arg(long)]
        json: bool,
        /// Never use the network: report the status check as not done when the list is
        /// not in the local state.
        #[arg(long)]
        offline: bool,
        #[command(flatten)]
        state: StateArgs,
    },
    /// Issue a credential for the subject described in a file (through the local state,
    /// or the running server when it holds the state).
    Issue {
        /// The credential subject (JSON object).
        #[arg(long)]
        subject: PathBuf,
        /// An extra credential type besides VerifiableCredential.
        #[arg(long = "type", value_name = "TYPE")]
        credential_type: Option<String>,
        /// ldp_vc (Data Integrity, default) or jwt_vc_json.
        #[arg(long, default_value = "ldp_vc")]
        format: String,
        /// Print one JSON object instead of a report for people.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        state: StateArgs,
    },
    /// Revoke a credential by its id (final).
    Revoke {
        /// The credential's `id`.
        id: String,
        /// Print one JSON object instead of a report for people.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        state: StateArgs,
    },
    /// Issue a swarm membership credential (VC-JWT) for an agent's did:key.
    Enrol {
        /// The agent's DID (`swarmd` prints it).
        #[arg(long)]
        did: String,
        /// sensor, sentinel or operator.
        #[arg(long, default_value = "sensor")]
        role: String,
        /// Write the credential here (mode 0600) instead of standard output.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
        #[command(flatten)]
        state: StateArgs,
    },
    /// Write the man page or a shell completion script to stdout (for packagers).
    #[command(hide = true)]
    Generate(crate::cli_docs::GenerateArgs),
}

/// Where the commands that act on the issuer find its configuration and state.
#[derive(Debug, Clone, clap::Args)]
pub struct StateArgs {
    /// Configuration file [default: /etc/swarmguard/identity.toml when it exists].
    #[arg(long, short = 'c', value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// State directory; overrides `server.state_dir`.
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
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
        /// Where to write the key (created with mode 0600; never overwritten).
        file: PathBuf,
        #[command(flatten)]
        state: StateArgs,
    },
    /// Install an issuer key exported from another host.
    Import {
        /// The exported key.
        file: PathBuf,
        /// Replace a different key already installed (it is kept, renamed, not deleted).
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        state: StateArgs,
    },
}
