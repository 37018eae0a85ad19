//! `capwise completions SHELL` and `capwise man`, generated from the clap
//! definitions so they never drift from the real options.

use std::io::Write as _;

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

/// Prints the man page (roff): synopsis, options, then every command with
/// its synopsis and options in this one page (capwise installs no
/// capwise-get(1) and the like, so the page refers to none).
pub fn man() -> Result<()> {
    let mut cli = Cli::command().disable_help_subcommand(true);
    cli.build();
    let man = clap_mangen::Man::new(cli.clone());
    let mut out = Vec::new();
    man.render_title(&mut out)?;
    man.render_name_section(&mut out)?;
    man.render_synopsis_section(&mut out)?;
    man.render_description_section(&mut out)?;
    man.render_options_section(&mut out)?;
    out.extend_from_slice(b".SH COMMANDS\n");
    for sub in cli.get_subcommands() {
        render_command(sub, &mut out)?;
    }
    man.render_version_section(&mut out)?;
    std::io::stdout().lock().write_all(&out)?;
    Ok(())
}

/// One command's subsection: its synopsis and options, then its own
/// subcommands, each under its full name (`capwise budget set`).
fn render_command(cmd: &clap::Command, out: &mut Vec<u8>) -> Result<()> {
    let name = cmd
        .get_bin_name()
        .map(str::to_string)
        .unwrap_or_else(|| format!("capwise {}", cmd.get_name()));
    out.extend_from_slice(format!(".SS \"{}\"\n", name.replace('-', "\\-")).as_bytes());
    if let Some(about) = cmd.get_long_about().or(cmd.get_about()) {
        out.extend_from_slice(format!("{}\n.PP\n", roff_text(&about.to_string())).as_bytes());
    }
    let man = clap_mangen::Man::new(cmd.clone());
    let mut section = Vec::new();
    man.render_synopsis_section(&mut section)?;
    if cmd.get_arguments().any(|a| !a.is_hide_set()) {
        man.render_options_section(&mut section)?;
    }
    // Section headings become plain lines inside this subsection.
    for line in String::from_utf8_lossy(&section).lines() {
        if line.starts_with(".SH") {
            continue;
        }
        out.extend_from_slice(line.as_bytes());
        out.push(b'\n');
    }
    for sub in cmd.get_subcommands() {
        render_command(sub, out)?;
    }
    Ok(())
}

/// Text safe in a roff body line.
fn roff_text(text: &str) -> String {
    let escaped = text.replace('\\', "\\e").replace('-', "\\-");
    if escaped.starts_with(['.', '\'']) {
        format!("\\&{escaped}")
    } else {
        escaped
    }
}
