//! Man pages and shell completions, generated from the same clap definitions as `--help`
//! (like ripgrep's `--generate`), so that they cannot drift from the binaries. Each binary
//! has a hidden `generate` subcommand; `packaging/build.sh` runs it to fill the packages.

use std::io::{self, Write};

use clap_complete::Shell;

/// What `generate` writes to stdout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Generated {
    /// A roff man page.
    Man,
    /// A bash completion script.
    Bash,
    /// A zsh completion script.
    Zsh,
    /// A fish completion script.
    Fish,
}

/// The arguments of the hidden `generate` subcommand.
#[derive(Debug, clap::Args)]
pub struct GenerateArgs {
    /// What to write to stdout.
    #[arg(value_enum)]
    pub what: Generated,
}

/// Writes the man page or completion script for `command` to `out`.
pub fn generate(
    mut command: clap::Command,
    what: Generated,
    out: &mut dyn Write,
) -> io::Result<()> {
    // The generator itself is plumbing for packagers, not something users should see.
    command = command.mut_subcommand("generate", |sub| sub.hide(true));
    command.build();
    let name = command.get_name().to_owned();
    let shell = match what {
        Generated::Man => return clap_mangen::Man::new(command).section("8").render(out),
        Generated::Bash => Shell::Bash,
        Generated::Zsh => Shell::Zsh,
        Generated::Fish => Shell::Fish,
    };
    // clap_complete panics when its writer fails (a closed pipe); render to memory first
    // so that a failed write is an error like any other.
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut command, name, &mut script);
    out.write_all(&script)
}

/// The hidden `generate` subcommand of a binary: writes to stdout, reports errors on stderr.
pub fn run(command: clap::Command, what: Generated) -> std::process::ExitCode {
    let name = command.get_name().to_owned();
    match generate(command, what, &mut io::stdout().lock()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("{name} generate: {err}");
            std::process::ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, clap::Parser)]
    #[command(name = "demo", about = "A demonstration daemon")]
    struct Demo {
        /// Listen here.
        #[arg(long)]
        listen: Option<String>,
        #[command(subcommand)]
        command: Option<DemoCommand>,
    }

    #[derive(Debug, clap::Subcommand)]
    enum DemoCommand {
        Run,
        Generate(GenerateArgs),
    }

    fn render(what: Generated) -> String {
        use clap::CommandFactory;
        let mut out = Vec::new();
        generate(Demo::command(), what, &mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn man_page_has_name_section_and_options() {
        let page = render(Generated::Man);
        assert!(page.contains(".TH demo 8"), "{page}");
        assert!(page.contains("A demonstration daemon"));
        assert!(page.contains("listen"));
        assert!(
            !page.contains("generate"),
            "the generator is hidden:\n{page}"
        );
    }

    #[test]
    fn completions_name_the_binary_and_its_subcommands() {
        for shell in [Generated::Bash, Generated::Zsh, Generated::Fish] {
            let script = render(shell);
            assert!(script.contains("demo"), "{shell:?}");
            assert!(script.contains("run"), "{shell:?}: {script}");
        }
    }
}
