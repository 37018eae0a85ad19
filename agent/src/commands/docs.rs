//! `capwise completions SHELL` and `capwise man`, generated from the clap
//! definitions so they never drift from the real options.

use anyhow::Result;
use clap::CommandFactory;
use clap_complete::Shell;

use crate::cli::Cli;
use crate::cli_agent::ShellArg;

/// Prints the completion script for `shell`.
pub fn completions(shell: ShellArg) {
    let shell = match shell {
        ShellArg::Bash => Shell::Bash,
        ShellArg::Zsh => Shell::Zsh,
        ShellArg::Fish => Shell::Fish,
    };
    clap_complete::generate(
        shell,
        &mut Cli::command(),
        "capwise",
        &mut std::io::stdout(),
    );
}

/// Prints the man page (roff): synopsis, options and every command with
/// its summary.
pub fn man() -> Result<()> {
    clap_mangen::Man::new(Cli::command()).render(&mut std::io::stdout().lock())?;
    Ok(())
}
