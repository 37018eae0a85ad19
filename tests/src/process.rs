//! Child processes that are always killed: [`ChildGuard`] kills the process group and reaps it
//! on drop (also while a test panics). Output goes to files in the test's log directory.

use anyhow::{bail, Context, Result};
use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// A spawned child in its own process group; killed (TERM, then KILL) and reaped on drop.
pub struct ChildGuard {
    name: String,
    child: Child,
    status: Option<ExitStatus>,
    started: Instant,
    pub stdout_path: PathBuf,
    pub stderr_path: PathBuf,
}

impl ChildGuard {
    /// Spawns `cmd` with stdin closed and stdout/stderr to `LOG_DIR/NAME.stdout|.stderr`.
    pub fn spawn(name: &str, cmd: &mut Command, log_dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(log_dir)?;
        let stdout_path = log_dir.join(format!("{name}.stdout"));
        let stderr_path = log_dir.join(format!("{name}.stderr"));
        let out = File::create(&stdout_path)?;
        let err = File::create(&stderr_path)?;
        cmd.stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0);
        let child = cmd
            .spawn()
            .with_context(|| format!("spawning {name}: {cmd:?}"))?;
        Ok(Self {
            name: name.to_string(),
            child,
            status: None,
            started: Instant::now(),
            stdout_path,
            stderr_path,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Time since spawn.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Exit status if the child has exited (reaps it).
    pub fn try_wait(&mut self) -> Result<Option<ExitStatus>> {
        if self.status.is_none() {
            self.status = self.child.try_wait()?;
        }
        Ok(self.status)
    }

    /// Waits at most `timeout` for the child to exit.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Result<Option<ExitStatus>> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(s) = self.try_wait()? {
                return Ok(Some(s));
            }
            if Instant::now() >= deadline {
                return Ok(None);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits at most `timeout` for the child to exit successfully; error (with log tails) otherwise.
    pub fn expect_success(&mut self, timeout: Duration) -> Result<()> {
        match self.wait_timeout(timeout)? {
            Some(s) if s.success() => Ok(()),
            Some(s) => bail!("{} exited with {s}\n{}", self.name, self.log_tail(3000)),
            None => bail!(
                "{} still running after {timeout:?}\n{}",
                self.name,
                self.log_tail(3000)
            ),
        }
    }

    /// Sends `sig` to the child's process group (no-op once the child has been reaped).
    pub fn signal(&self, sig: libc::c_int) {
        if self.status.is_none() {
            let pgid = self.child.id() as libc::pid_t;
            // SAFETY: kill(2) with a negative pid signals our own child's process group.
            unsafe {
                libc::kill(-pgid, sig);
            }
        }
    }

    /// SIGTERM, wait up to `grace`, then SIGKILL; returns the exit status.
    pub fn stop(&mut self, grace: Duration) -> Result<ExitStatus> {
        if let Some(s) = self.try_wait()? {
            return Ok(s);
        }
        self.signal(libc::SIGTERM);
        if let Some(s) = self.wait_timeout(grace)? {
            return Ok(s);
        }
        self.signal(libc::SIGKILL);
        let s = self.child.wait()?;
        self.status = Some(s);
        Ok(s)
    }

    /// The last `max` bytes of stdout and stderr, for failure messages.
    pub fn log_tail(&self, max: usize) -> String {
        format!(
            "--- {} stdout ---\n{}\n--- {} stderr ---\n{}",
            self.name,
            file_tail(&self.stdout_path, max),
            self.name,
            file_tail(&self.stderr_path, max)
        )
    }

    /// Whole stdout so far.
    pub fn stdout(&self) -> String {
        std::fs::read_to_string(&self.stdout_path).unwrap_or_default()
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if self.status.is_some() {
            return;
        }
        let pgid = self.child.id() as libc::pid_t;
        self.signal(libc::SIGTERM);
        if !matches!(self.wait_timeout(Duration::from_secs(3)), Ok(Some(_))) {
            self.signal(libc::SIGKILL);
            let _ = self.child.wait();
        }
        // The leader is reaped; make sure nothing else of its group lingers.
        // SAFETY: kill(2) on the process group we created for this child.
        unsafe {
            libc::kill(-pgid, libc::SIGKILL);
        }
    }
}

/// The last `max` bytes of a file (lossy UTF-8), or a note if unreadable.
pub fn file_tail(path: &Path, max: usize) -> String {
    match std::fs::read(path) {
        Ok(b) => {
            let start = b.len().saturating_sub(max);
            String::from_utf8_lossy(&b[start..]).into_owned()
        }
        Err(e) => format!("<cannot read {}: {e}>", path.display()),
    }
}

/// Runs `cmd` to completion within `timeout`; returns its stdout, error with logs on failure.
pub fn run(name: &str, cmd: &mut Command, log_dir: &Path, timeout: Duration) -> Result<String> {
    let mut g = ChildGuard::spawn(name, cmd, log_dir)?;
    g.expect_success(timeout)?;
    Ok(g.stdout())
}

/// Polls `f` every `poll` until it returns `Ok(true)`, at most `timeout`; errors name `what`.
pub fn wait_until(
    what: &str,
    timeout: Duration,
    poll: Duration,
    mut f: impl FnMut() -> Result<bool>,
) -> Result<()> {
    let deadline = Instant::now() + timeout;
    let mut last_err = None;
    loop {
        match f() {
            Ok(true) => return Ok(()),
            Ok(false) => {}
            Err(e) => last_err = Some(e),
        }
        if Instant::now() >= deadline {
            match last_err {
                Some(e) => {
                    bail!("timed out after {timeout:?} waiting for {what}; last error: {e:#}")
                }
                None => bail!("timed out after {timeout:?} waiting for {what}"),
            }
        }
        std::thread::sleep(poll);
    }
}

/// Prints the tail of every log file in `dir` (sorted by name) to stderr, for a failing test;
/// files whose name contains `skip` (if given) are left out.
pub fn dump_logs(dir: &Path, skip: Option<&str>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    let mut files: Vec<_> = rd.filter_map(|e| e.ok()).map(|e| e.path()).collect();
    files.sort();
    for f in files {
        if skip.is_some_and(|s| f.to_string_lossy().contains(s)) {
            continue;
        }
        eprintln!("===== {} =====\n{}", f.display(), file_tail(&f, 4000));
    }
}
