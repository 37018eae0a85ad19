//! `capwise api password` and `capwise api certificate`: what the remote
//! dashboard (`[api] remote_listen`) needs from the administrator. The
//! password is read from the terminal (twice, without echo) or from
//! standard input, and only its Argon2id hash is kept.

use std::io::{BufRead as _, IsTerminal as _};
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};

use crate::dashboard::password;

/// `capwise api`
#[derive(Debug, Args)]
pub struct ApiArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: ApiCommand,
}

/// `capwise api` subcommands.
#[derive(Debug, Subcommand)]
pub enum ApiCommand {
    /// Set the remote dashboard's sign-in password (from the terminal, or
    /// one line of standard input); kept as an Argon2id hash, applied at
    /// the next sign-in.
    Password(PasswordArgs),
    /// The remote dashboard's TLS certificate: its file and SHA-256
    /// fingerprint (to pin or compare in the browser), making the
    /// self-signed one if there is none.
    Certificate(CertificateArgs),
}

/// `capwise api password`
#[derive(Debug, Args)]
pub struct PasswordArgs {
    /// The agent's state directory (default: $XDG_STATE_HOME/capwise).
    #[arg(long)]
    pub state_dir: Option<PathBuf>,
    /// Remove the password: the remote listener then refuses to start, and
    /// a running one signs nobody in.
    #[arg(long)]
    pub remove: bool,
}

/// `capwise api certificate`
#[derive(Debug, Args)]
pub struct CertificateArgs {
    /// The agent's state directory (default: $XDG_STATE_HOME/capwise).
    #[arg(long)]
    pub state_dir: Option<PathBuf>,
    /// The configuration file (its [api] tls_cert and tls_key).
    #[arg(long)]
    pub config: Option<PathBuf>,
}

/// Runs `capwise api ...`.
pub fn run(args: &ApiArgs) -> Result<()> {
    match &args.command {
        ApiCommand::Password(a) => set_password(a),
        ApiCommand::Certificate(a) => certificate(a),
    }
}

fn set_password(args: &PasswordArgs) -> Result<()> {
    let dir = crate::state_db::state_dir(args.state_dir.as_deref());
    crate::state_db::create_state_dir(&dir)?;
    if args.remove {
        let path = password::path(&dir);
        match std::fs::remove_file(&path) {
            Ok(()) => println!("removed the dashboard password ({})", path.display()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                println!("no dashboard password was set")
            }
            Err(e) => return Err(e).with_context(|| format!("cannot remove {}", path.display())),
        }
        return Ok(());
    }
    let given = read_password()?;
    let path = password::store(&dir, &given)?;
    println!(
        "dashboard password set ({}, an Argon2id hash); a running agent takes it at the next sign-in",
        path.display()
    );
    Ok(())
}

/// From the terminal, typed twice; else the first line of standard input.
fn read_password() -> Result<String> {
    if std::io::stdin().is_terminal() {
        let first = rpassword::prompt_password("New dashboard password: ")?;
        password::acceptable(&first)?;
        let second = rpassword::prompt_password("The same again: ")?;
        if first != second {
            bail!("the two passwords differ; nothing was changed");
        }
        return Ok(first);
    }
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .context("cannot read the password from standard input")?;
    let line = line.trim_end_matches(['\n', '\r']).to_string();
    if line.is_empty() {
        bail!("no password on standard input (one line is read)");
    }
    Ok(line)
}

fn certificate(args: &CertificateArgs) -> Result<()> {
    let config = crate::config::load(args.config.as_deref())?.config;
    let dir = crate::state_db::state_dir(args.state_dir.as_deref());
    crate::state_db::create_state_dir(&dir)?;
    let material = crate::daemon::tls::load_or_create(&config, &dir)?;
    let origin = if material.self_signed {
        "self-signed, made by capwise"
    } else {
        "[api] tls_cert"
    };
    println!("certificate: {} ({origin})", material.cert_path.display());
    println!("SHA-256: {}", material.fingerprint());
    let names = material.dns_names();
    if !names.is_empty() {
        println!("names: {}", names.join(", "));
    }
    Ok(())
}
