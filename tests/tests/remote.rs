//! The dashboard beyond loopback (`[api] remote_listen`): HTTPS with a
//! password sign-in. Inside the private namespace `scripts/test` makes
//! (`unshare -n`), its `lo` also holds 10.77.0.1 (the agent's remote
//! listener) and 10.77.0.2 and 10.77.0.3 (two clients): addresses that are
//! not loopback ones (no dummy link: not every kernel has the module), and
//! nothing leaves the namespace.
//! Checked: the agent refuses a plain API beyond loopback and a remote
//! listener without a password, naming the keys; `capwise api password`
//! keeps only an Argon2id hash; a client pinning the fingerprint `capwise
//! api certificate` prints gets through, one pinning another does not;
//! wrong passwords are refused and then rate limited for that address only;
//! the right one gives a `Secure; HttpOnly; SameSite=Strict` session that
//! reads the API; plain HTTP gets no HTTP answer; the CLI's token keeps
//! working on loopback; `--revoke-all` closes the remote session.

use anyhow::{bail, ensure, Context, Result};
use capwise_tests::clients::agent::{run_command, Agent};
use capwise_tests::netns::assert_private_netns;
use capwise_tests::paths::capwise_bin;
use capwise_tests::ports::free_port;
use capwise_tests::process::{dump_logs, ChildGuard};
use std::io::{Read, Write};
use std::net::{IpAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

const SERVER: &str = "10.77.0.1";
const GUESSER: &str = "10.77.0.2";
const ADMIN: &str = "10.77.0.3";
const PASSWORD: &str = "correct horse battery staple";
/// The agent's allowance of tries per address (dashboard/password.rs, BURST).
const BURST: usize = 5;

/// The extra addresses on `lo`, removed at the end.
struct Addresses;

impl Addresses {
    fn add() -> Result<Addresses> {
        let ip = |args: &[&str]| -> Result<()> {
            let out = Command::new("ip")
                .args(args)
                .output()
                .context("running ip")?;
            ensure!(
                out.status.success(),
                "ip {}: {} (this suite needs root inside `unshare -n`)",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            );
            Ok(())
        };
        let added = Addresses;
        for addr in [SERVER, GUESSER, ADMIN] {
            ip(&["addr", "add", &format!("{addr}/32"), "dev", "lo"])?;
        }
        Ok(added)
    }
}

impl Drop for Addresses {
    fn drop(&mut self) {
        for addr in [SERVER, GUESSER, ADMIN] {
            let _ = Command::new("ip")
                .args(["addr", "del", &format!("{addr}/32"), "dev", "lo"])
                .status();
        }
    }
}

/// Accepts exactly the certificate with this SHA-256 fingerprint (what an
/// administrator pins), checking the handshake's signatures as usual.
#[derive(Debug)]
struct Pinned {
    fingerprint: String,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

fn fingerprint(der: &[u8]) -> String {
    use sha2::Digest as _;
    sha2::Sha256::digest(der)
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

impl rustls::client::danger::ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        if fingerprint(end_entity) == self.fingerprint {
            Ok(rustls::client::danger::ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General("not the pinned certificate".into()))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// An HTTPS client from `from`, trusting only the certificate `pin`.
fn client(from: &str, pin: &str) -> Result<reqwest::Client> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(Pinned {
            fingerprint: pin.to_string(),
            provider,
        }))
        .with_no_client_auth();
    Ok(reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .local_address(from.parse::<IpAddr>()?)
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(20))
        .build()?)
}

fn config(root: &Path, api: &str) -> Result<PathBuf> {
    let path = root.join(format!("config-{}.toml", free_port()));
    std::fs::write(
        &path,
        format!(
            "listen = \"127.0.0.1:{}\"\ndownload_dir = \"{}\"\n[dht]\nenabled = false\n[net]\nport_mapping = false\n[api]\n{api}\n",
            free_port(),
            root.join("data").display(),
        ),
    )?;
    Ok(path)
}

/// Starts `capwise run` with `config`, which must refuse to start: its log.
fn refused(name: &str, state: &Path, config: &Path, logs: &Path) -> Result<String> {
    let mut agent = ChildGuard::spawn(name, &mut run_command(state, config, None), logs)?;
    match agent.wait_timeout(Duration::from_secs(20))? {
        Some(status) if !status.success() => Ok(agent.log_tail(4000)),
        Some(status) => bail!("{name}: the agent exited with {status}, not an error"),
        None => bail!("{name}: the agent started: {}", agent.log_tail(2000)),
    }
}

fn capwise(args: &[&str], stdin: &str) -> Result<String> {
    let mut child = Command::new(capwise_bin())
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    child
        .stdin
        .take()
        .context("stdin")?
        .write_all(stdin.as_bytes())?;
    let out = child.wait_with_output()?;
    ensure!(
        out.status.success(),
        "capwise {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8(out.stdout)?)
}

async fn sign_in(c: &reqwest::Client, base: &str, password: &str) -> Result<reqwest::Response> {
    Ok(c.post(format!("{base}/signin"))
        .header("Origin", base)
        .form(&[("password", password)])
        .send()
        .await?)
}

/// Plain HTTP to the TLS port: what comes back (never an HTTP answer).
fn plain_http(addr: &str) -> Result<Vec<u8>> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(15)))?;
    s.write_all(
        format!("GET /v1/torrents HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n")
            .as_bytes(),
    )?;
    let mut got = Vec::new();
    let _ = s.take(64 * 1024).read_to_end(&mut got);
    Ok(got)
}

async fn scenario(root: &Path, logs: &Path) -> Result<()> {
    let state = root.join("state");
    std::fs::create_dir_all(&state)?;
    let remote_port = free_port();
    let remote = format!("{SERVER}:{remote_port}");
    let base = format!("https://{remote}");

    // A plain API beyond loopback, and a remote listener without a password, are refused.
    let log = refused(
        "plain",
        &state,
        &config(root, &format!("address = \"{remote}\""))?,
        logs,
    )?;
    ensure!(
        log.contains("[api] remote_listen") && log.contains("capwise api password"),
        "{log}"
    );
    let with_remote = config(
        root,
        &format!("address = \"127.0.0.1:0\"\nremote_listen = \"{remote}\""),
    )?;
    let log = refused("no-password", &state, &with_remote, logs)?;
    ensure!(log.contains("needs a password"), "{log}");

    let state_arg = state.to_str().context("state path")?;
    capwise(
        &["api", "password", "--state-dir", state_arg],
        &format!("{PASSWORD}\n"),
    )?;
    let stored = std::fs::read_to_string(state.join("api-password"))?;
    ensure!(
        stored.starts_with("$argon2id$") && !stored.contains(PASSWORD),
        "{stored}"
    );
    let shown = capwise(
        &[
            "api",
            "certificate",
            "--state-dir",
            state_arg,
            "--config",
            with_remote.to_str().unwrap(),
        ],
        "",
    )?;
    let pin = shown
        .lines()
        .find_map(|l| l.strip_prefix("SHA-256: "))
        .with_context(|| format!("no fingerprint in {shown}"))?
        .to_string();

    // The CLI finds the agent and its token works on loopback (Agent::start asks `capwise info`).
    let mut agent = Agent::start("agent", &state, &with_remote, None, logs)?;
    ensure!(
        agent.api_addr()?.starts_with("127.0.0.1:"),
        "{}",
        agent.api_addr()?
    );
    ensure!(
        agent.guard.log_tail(20_000).contains(&pin),
        "the log names the certificate's fingerprint"
    );

    let t = Instant::now();
    let wrong_pin = client(GUESSER, &["00"; 32].join(":"))?;
    ensure!(
        wrong_pin.get(format!("{base}/")).send().await.is_err(),
        "a client pinning another certificate must not get through"
    );
    let guesser = client(GUESSER, &pin)?;
    let page = guesser.get(format!("{base}/")).send().await?;
    ensure!(page.status() == 200, "{}", page.status());
    let text = page.text().await?;
    ensure!(
        text.contains("name=\"password\"") && !text.contains("torrent-list"),
        "{text}"
    );
    let anonymous = guesser.get(format!("{base}/v1/torrents")).send().await?;
    ensure!(
        anonymous.status() == 401,
        "no data without a session: {}",
        anonymous.status()
    );
    let foreign = guesser
        .get(format!("{base}/v1/torrents"))
        .header("Host", format!("attacker.example:{remote_port}"))
        .send()
        .await?;
    ensure!(
        foreign.status() == 403,
        "a foreign Host: {}",
        foreign.status()
    );

    for i in 0..BURST {
        let r = sign_in(&guesser, &base, "not the password").await?;
        ensure!(r.status() == 401, "wrong try {i}: {}", r.status());
        ensure!(
            r.headers().get("set-cookie").is_none(),
            "no cookie for a wrong password"
        );
        ensure!(r.text().await?.contains("Wrong password"), "try {i}");
    }
    let limited = sign_in(&guesser, &base, PASSWORD).await?;
    ensure!(
        limited.status() == 429,
        "after {BURST} wrong tries: {}",
        limited.status()
    );
    let retry: u64 = limited
        .headers()
        .get("retry-after")
        .context("Retry-After")?
        .to_str()?
        .parse()?;
    ensure!((1..=12).contains(&retry), "Retry-After {retry}");
    let body = limited.text().await?;
    ensure!(
        body.contains(&format!("Too many sign-in attempts from {GUESSER}")),
        "{body}"
    );

    // Another address is not held back by the guesser.
    let admin = client(ADMIN, &pin)?;
    let ok = sign_in(&admin, &base, PASSWORD).await?;
    ensure!(ok.status() == 303, "the right password: {}", ok.status());
    let set_cookie = ok
        .headers()
        .get("set-cookie")
        .context("a session cookie")?
        .to_str()?
        .to_string();
    for attribute in ["HttpOnly", "Secure", "SameSite=Strict"] {
        ensure!(set_cookie.contains(attribute), "{set_cookie}");
    }
    let cookie = set_cookie.split(';').next().unwrap().to_string();
    ensure!(
        cookie.starts_with(&format!("capwise_session_{remote_port}=")),
        "{cookie}"
    );
    let torrents = admin
        .get(format!("{base}/v1/torrents"))
        .header("Cookie", &cookie)
        .send()
        .await?;
    ensure!(torrents.status() == 200, "{}", torrents.status());
    let list: serde_json::Value = serde_json::from_str(&torrents.text().await?)?;
    ensure!(list.is_array(), "{list}");
    let why = admin
        .get(format!("{base}/v1/why"))
        .header("Cookie", &cookie)
        .send()
        .await?;
    ensure!(why.status() == 200, "{}", why.status());
    let why: serde_json::Value = serde_json::from_str(&why.text().await?)?;
    ensure!(why["explanation"].is_string(), "{why}");
    let app = admin
        .get(format!("{base}/"))
        .header("Cookie", &cookie)
        .send()
        .await?;
    ensure!(
        !app.text().await?.contains("name=\"password\""),
        "signed in: the dashboard itself"
    );
    // No one-time URL over the network, even with the token.
    let ticket = admin
        .post(format!("{base}/v1/dashboard/signin"))
        .bearer_auth(agent.token()?)
        .send()
        .await?;
    ensure!(ticket.status() == 403, "{}", ticket.status());
    eprintln!(
        "[remote] HTTPS checks took {:.1}s",
        t.elapsed().as_secs_f64()
    );

    let plain = plain_http(&remote)?;
    ensure!(
        !plain.starts_with(b"HTTP/"),
        "plain HTTP got an HTTP answer: {:?}",
        String::from_utf8_lossy(&plain)
    );
    let http = reqwest::Client::builder()
        .local_address(GUESSER.parse::<IpAddr>()?)
        .timeout(Duration::from_secs(15))
        .build()?;
    ensure!(
        http.get(format!("http://{remote}/")).send().await.is_err(),
        "plain HTTP must fail"
    );

    agent.cli(&["dashboard", "--revoke-all"])?;
    let revoked = admin
        .get(format!("{base}/v1/torrents"))
        .header("Cookie", &cookie)
        .send()
        .await?;
    ensure!(
        revoked.status() == 401,
        "after --revoke-all: {}",
        revoked.status()
    );
    agent.guard.stop(Duration::from_secs(10))?;
    Ok(())
}

#[test]
fn the_dashboard_beyond_loopback_is_https_with_a_password() {
    assert_private_netns();
    let t0 = Instant::now();
    let tmp = tempfile::Builder::new()
        .prefix("capwise-remote-")
        .tempdir()
        .expect("temp dir");
    let logs = tmp.path().join("logs");
    let _addresses = Addresses::add().expect("addresses on lo");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    match runtime.block_on(scenario(tmp.path(), &logs)) {
        Ok(()) => eprintln!("[remote] ok in {:.1}s", t0.elapsed().as_secs_f64()),
        Err(e) => {
            dump_logs(&logs, None);
            panic!("[remote] failed: {e:#}");
        }
    }
}
