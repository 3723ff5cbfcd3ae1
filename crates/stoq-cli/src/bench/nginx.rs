//! nginx + curl as the baseline of the delivery and HTTP benchmarks: nginx serving a directory
//! over HTTPS (TLS 1.3) and plain HTTP on [::1], run for the benchmark only, and curl
//! downloading from it (or from anything else) with its own timings.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{ensure, Context, Result};

use crate::local::Scratch;

/// The benchmarks' scratch directory: under `STOQ_BENCH_DIR` where it is set (a machine whose
/// `/dev/shm` is too small, say), else on tmpfs where there is one (so the disk is not what is
/// measured), else a temporary directory.
pub fn scratch(bench: &str) -> Result<Scratch> {
    let chosen = std::env::var_os("STOQ_BENCH_DIR").map(std::path::PathBuf::from);
    let shm = Path::new("/dev/shm");
    let root = match chosen {
        Some(dir) => Some(dir),
        None => shm.is_dir().then(|| shm.to_path_buf()),
    };
    if let Some(root) = root {
        let dir = root.join(format!("stoq-bench-{bench}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).with_context(|| {
            format!("cannot create the benchmark's directory {}", dir.display())
        })?;
        return Ok(Scratch(dir));
    }
    Scratch::new(&format!("bench-{bench}"))
}

/// What curl measured of one download.
#[derive(Debug, Clone, Copy)]
pub struct CurlTimes {
    /// From start to the first byte of the body.
    pub first_byte: Duration,
    /// From start to the last byte.
    pub total: Duration,
    /// From start to the connection being ready (TCP, and TLS where used).
    pub connected: Duration,
}

impl CurlTimes {
    /// From the connection being ready to the last byte: the request and the transfer, with
    /// connection set-up outside the clock (as the STOQ cases beside it dial before theirs).
    pub fn transfer(&self) -> Duration {
        self.total.saturating_sub(self.connected)
    }
}

/// Downloads `url` with curl into `out` (`flags` first, such as `--http2`), checks it came
/// whole (`size` bytes), and returns curl's own timings (process start not counted).
pub fn curl(url: &str, flags: &[&str], out: &Path, size: usize) -> Result<CurlTimes> {
    let done = Command::new("curl")
        .args(["-sS", "-k", "--fail", "--max-time", "600"])
        .args(flags)
        .args([
            "-w",
            "%{time_starttransfer} %{time_total} %{time_connect} %{time_appconnect}",
            "-o",
        ])
        .arg(out)
        .arg(url)
        .output()?;
    ensure!(
        done.status.success(),
        "curl {url} failed: {}",
        String::from_utf8_lossy(&done.stderr)
    );
    ensure!(
        std::fs::metadata(out)?.len() as usize == size,
        "curl {url} came up short"
    );
    let text = String::from_utf8_lossy(&done.stdout);
    let mut times = text
        .split_whitespace()
        .map(|t| t.parse::<f64>().map(Duration::from_secs_f64));
    match (times.next(), times.next(), times.next(), times.next()) {
        (Some(Ok(first_byte)), Some(Ok(total)), Some(Ok(tcp)), Some(Ok(tls))) => Ok(CurlTimes {
            first_byte,
            total,
            // curl reports no TLS time (0) for plain HTTP.
            connected: tcp.max(tls),
        }),
        _ => anyhow::bail!("curl printed no timings: {text}"),
    }
}

/// nginx serving `root` on two ports (HTTPS, HTTP) of [::1], run for the benchmark only.
pub struct Nginx {
    child: Child,
    https: u16,
    http: u16,
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("[::1]:0")?.local_addr()?.port())
}

pub fn found(program: &str) -> bool {
    Command::new(program)
        .arg("-V")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

impl Nginx {
    /// Starts nginx on `dir` (its config, certificate, logs and the served file live there),
    /// or says why it cannot.
    pub fn start(dir: &Path) -> Result<Nginx, String> {
        if !found("nginx") || !found("curl") {
            return Err("nginx or curl is not installed (Debian: nginx-light, curl)".into());
        }
        let (https, http) = (
            free_port().map_err(|e| e.to_string())?,
            free_port().map_err(|e| e.to_string())?,
        );
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()])
            .map_err(|e| e.to_string())?;
        std::fs::write(dir.join("cert.pem"), cert.cert.pem()).map_err(|e| e.to_string())?;
        std::fs::write(dir.join("key.pem"), cert.key_pair.serialize_pem())
            .map_err(|e| e.to_string())?;
        let d = dir.display();
        let conf = format!(
            "daemon off; master_process off; worker_processes 1; pid {d}/nginx.pid; \
             error_log {d}/error.log; events {{ worker_connections 64; }} \
             http {{ access_log off; sendfile on; tcp_nopush on; \
             client_body_temp_path {d}/body; proxy_temp_path {d}/proxy; \
             fastcgi_temp_path {d}/fcgi; uwsgi_temp_path {d}/uwsgi; scgi_temp_path {d}/scgi; \
             server {{ listen [::1]:{https} ssl; listen [::1]:{http}; \
             ssl_certificate {d}/cert.pem; ssl_certificate_key {d}/key.pem; \
             ssl_protocols TLSv1.3; root {d}/www; }} }}"
        );
        std::fs::write(dir.join("nginx.conf"), conf).map_err(|e| e.to_string())?;
        let child = Command::new("nginx")
            .args(["-p", &d.to_string(), "-c", &format!("{d}/nginx.conf")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("nginx did not start: {e}"))?;
        let nginx = Nginx { child, https, http };
        // nginx says nothing when it is ready, so the first, untimed request waits for it:
        // curl retries a refused connection for at most 10 s.
        let ready = Command::new("curl")
            .args(["-sS", "--fail", "-o", "/dev/null", "--retry", "20"])
            .args(["--retry-connrefused", "--retry-max-time", "10"])
            .arg(format!("http://[::1]:{http}/"))
            .stderr(Stdio::null())
            .status()
            .map_err(|e| format!("curl did not run: {e}"))?;
        // An index of the served directory is 403 or 404: either proves nginx answers.
        if !ready.success() && ready.code() != Some(22) {
            return Err("nginx did not answer within 10 s".into());
        }
        Ok(nginx)
    }

    /// Downloads `name` (under `DIR/www`) with curl over HTTPS or HTTP into `out`.
    pub fn fetch(&self, name: &str, tls: bool, out: &Path, size: usize) -> Result<CurlTimes> {
        let url = match tls {
            true => format!("https://[::1]:{}/{name}", self.https),
            false => format!("http://[::1]:{}/{name}", self.http),
        };
        curl(&url, &[], out, size)
    }
}
