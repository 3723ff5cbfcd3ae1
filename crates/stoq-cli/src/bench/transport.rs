//! `stoq bench transport`: the same bytes over [::1] through STOQ, raw quinn with its
//! defaults but for the path MTU bounds (STOQ's, like for like), TCP + TLS 1.3 (tokio-rustls) and plain TCP, round-robin in one process.
//!
//! Each round sends `size` bytes from memory (split over `streams` streams or connections) to a
//! receiver that reads every byte and answers with the count; the clock runs from the first
//! write to that answer. Connection set-up is outside the clock for all four alike.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use bytes::Bytes;
use rustls::pki_types::ServerName;
use stoq::transport::{NodeIdentity, PeerExpectation, StoqConnection, StoqEndpoint};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::raw_quinn::{quinn_pair, self_signed, LOCALHOST};
use super::{gbps, machine, median};
use crate::cli::TransportBenchArgs;
use crate::usage::usage;

/// Runs the benchmark and prints the figures (JSON with `--json`).
pub async fn run(args: TransportBenchArgs) -> Result<()> {
    if args.size == 0 || args.streams == 0 || args.rounds == 0 {
        return Err(usage("--size, --streams and --rounds must be at least 1"));
    }
    let config = match &args.config {
        Some(path) => stoq::StoqConfig::load(path).map_err(usage)?,
        None => args.preset.config(),
    };
    let data = Bytes::from(pattern(args.size));
    let max_mtu = config.transport.max_mtu;
    let mut stoq = Stoq::start(config.transport, args.streams).await?;
    let mut quinn = RawQuinn::start(args.streams, max_mtu).await?;
    let tls = TcpTls::start().await?;
    let tcp = PlainTcp::start().await?;

    let mut figures: [Vec<f64>; 4] = Default::default();
    for round in 0..args.rounds {
        figures[0].push(gbps(args.size, stoq.transfer(&data).await?));
        figures[1].push(gbps(args.size, quinn.transfer(&data).await?));
        figures[2].push(gbps(args.size, tls.transfer(&data, args.streams).await?));
        figures[3].push(gbps(args.size, tcp.transfer(&data, args.streams).await?));
        if !args.json {
            eprintln!(
                "round {}/{}: stoq {:.2}  quinn {:.2}  tcp+tls {:.2}  tcp {:.2} Gbit/s",
                round + 1,
                args.rounds,
                figures[0][round],
                figures[1][round],
                figures[2][round],
                figures[3][round]
            );
        }
    }
    let [s, q, t, p] = figures.map(|f| median(&f));
    let stats = stoq.conns[0].stats();
    let report = serde_json::json!({
        "name": "transport",
        "size_bytes": args.size,
        "streams": args.streams,
        "rounds": args.rounds,
        "config": match &args.config {
            Some(path) => path.display().to_string(),
            None => args.preset.name().to_owned(),
        },
        "gbps": { "stoq": s, "quinn": q, "tcp_tls": t, "tcp": p },
        "baseline": "quinn",
        "max_mtu": max_mtu,
        "ratio": { "quinn": s / q, "tcp_tls": s / t, "tcp": s / p },
        "stoq_connection": {
            "rtt_us": stats.rtt.as_micros() as u64,
            "mtu": stats.mtu,
            "packets_lost": stats.packets_lost,
            "congestion_events": stats.congestion_events,
        },
        "machine": machine(),
    });
    if args.json {
        println!("{report}");
    } else {
        println!(
            "transport: {} MiB x {} round(s), {} stream(s), medians over [::1]",
            args.size >> 20,
            args.rounds,
            args.streams
        );
        println!("  stoq      {s:7.2} Gbit/s");
        println!("  quinn     {q:7.2} Gbit/s   stoq/quinn   = {:.3}", s / q);
        println!("  tcp+tls   {t:7.2} Gbit/s   stoq/tcp+tls = {:.3}", s / t);
        println!("  tcp       {p:7.2} Gbit/s   stoq/tcp     = {:.3}", s / p);
    }
    Ok(())
}

/// Bytes that are not all alike, so nothing on the path can shortcut them.
fn pattern(len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect()
}

/// Splits `data` into `n` nearly equal zero-copy slices.
fn split(data: &Bytes, n: usize) -> Vec<Bytes> {
    let step = data.len().div_ceil(n);
    (0..n)
        .map(|i| data.slice((i * step).min(data.len())..((i + 1) * step).min(data.len())))
        .collect()
}

/// Sends one part per sender at once and times them all; checks the receivers saw every byte.
async fn timed<F, Fut>(name: &str, data: &Bytes, parts: usize, mut send: F) -> Result<Duration>
where
    F: FnMut(Bytes) -> Fut,
    Fut: std::future::Future<Output = Result<u64>> + Send + 'static,
{
    let started = Instant::now();
    let tasks: Vec<_> = split(data, parts)
        .into_iter()
        .map(|part| tokio::spawn(send(part)))
        .collect();
    let mut total = 0u64;
    for task in tasks {
        total += task.await??;
    }
    let elapsed = started.elapsed();
    ensure!(
        total as usize == data.len(),
        "{name} receiver saw {total} of {} bytes",
        data.len()
    );
    Ok(elapsed)
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// STOQ: one connection, SINK requests with DATA-framed bodies.
struct Stoq {
    _server: StoqEndpoint,
    _client: StoqEndpoint,
    conns: Vec<StoqConnection>,
    streams: usize,
}

impl Stoq {
    async fn start(mut config: stoq::transport::TransportConfig, streams: usize) -> Result<Self> {
        config.listen = LOCALHOST.parse()?;
        let server = StoqEndpoint::bind(config.clone(), NodeIdentity::generate()?)?;
        stoq::node::serve_basic(&server);
        let client = StoqEndpoint::client(config, NodeIdentity::generate()?)?;
        let conn = client
            .connect(
                server.local_addr()?,
                &PeerExpectation::Node(server.node_id()),
            )
            .await?;
        Ok(Stoq {
            _server: server,
            _client: client,
            conns: vec![conn],
            streams,
        })
    }

    async fn transfer(&mut self, data: &Bytes) -> Result<Duration> {
        let conn = self.conns[0].clone();
        timed("stoq", data, self.streams, move |part| {
            let conn = conn.clone();
            async move { Ok(stoq::client::discard(&conn, part).await?) }
        })
        .await
    }
}

/// Raw quinn with its default configuration but for the path MTU bounds, which it takes from
/// STOQ's transport configuration (`max_mtu`): the ceiling STOQ is held to, like for like.
/// `max_mtu` 1452 is quinn's own default.
pub(super) struct RawQuinn {
    _server: quinn::Endpoint,
    _client: quinn::Endpoint,
    conn: quinn::Connection,
    streams: usize,
}

impl RawQuinn {
    pub(super) async fn start(streams: usize, max_mtu: u16) -> Result<Self> {
        let (server, client, conn) = quinn_pair(max_mtu, |conn| async move {
            while let Ok((mut send, mut recv)) = conn.accept_bi().await {
                tokio::spawn(async move {
                    let mut count = 0u64;
                    while let Ok(Some(chunk)) = recv.read_chunk(usize::MAX, true).await {
                        count += chunk.bytes.len() as u64;
                    }
                    let _ = send.write_all(&count.to_be_bytes()).await;
                    let _ = send.finish();
                });
            }
        })
        .await?;
        Ok(RawQuinn {
            _server: server,
            _client: client,
            conn,
            streams,
        })
    }

    pub(super) async fn transfer(&mut self, data: &Bytes) -> Result<Duration> {
        let conn = self.conn.clone();
        timed("quinn", data, self.streams, move |part| {
            let conn = conn.clone();
            async move {
                let (mut send, mut recv) = conn.open_bi().await?;
                send.write_all_chunks(&mut [part]).await?;
                send.finish()?;
                let answer = recv.read_to_end(8).await?;
                Ok(u64::from_be_bytes(answer.as_slice().try_into()?))
            }
        })
        .await
    }
}

/// Reads a TCP-like stream to its end, then answers with the byte count.
async fn count_and_answer<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
    mut s: S,
) -> std::io::Result<()> {
    let mut buf = vec![0u8; 256 * 1024];
    let mut count = 0u64;
    loop {
        let n = s.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        count += n as u64;
    }
    s.write_all(&count.to_be_bytes()).await?;
    s.shutdown().await
}

/// Writes `part`, closes the write side, and reads the receiver's count.
async fn send_and_count<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
    mut s: S,
    part: Bytes,
) -> Result<u64> {
    s.write_all(&part).await?;
    s.shutdown().await?;
    let mut answer = [0u8; 8];
    s.read_exact(&mut answer).await?;
    Ok(u64::from_be_bytes(answer))
}

/// TCP with TLS 1.3 (tokio-rustls, ring): what a CDN runs today.
struct TcpTls {
    addr: SocketAddr,
    connector: tokio_rustls::TlsConnector,
}

impl TcpTls {
    async fn start() -> Result<Self> {
        let (cert, key) = self_signed()?;
        let server_config = rustls::ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_no_client_auth()
            .with_single_cert(vec![cert.clone()], key)?;
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server_config));
        let listener = TcpListener::bind(LOCALHOST).await?;
        let addr = listener.local_addr()?;
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let _ = tcp.set_nodelay(true);
                    if let Ok(tls) = acceptor.accept(tcp).await {
                        let _ = count_and_answer(tls).await;
                    }
                });
            }
        });
        let mut roots = rustls::RootCertStore::empty();
        roots.add(cert)?;
        let client_config = rustls::ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(TcpTls {
            addr,
            connector: tokio_rustls::TlsConnector::from(Arc::new(client_config)),
        })
    }

    async fn transfer(&self, data: &Bytes, streams: usize) -> Result<Duration> {
        let mut conns = Vec::new();
        for _ in 0..streams {
            let tcp = TcpStream::connect(self.addr).await?;
            tcp.set_nodelay(true)?;
            let name = ServerName::try_from("localhost")?;
            conns.push(
                self.connector
                    .connect(name, tcp)
                    .await
                    .context("TLS handshake")?,
            );
        }
        let mut conns = conns.into_iter();
        timed("tcp+tls", data, streams, move |part| {
            send_and_count(conns.next().expect("one connection per part"), part)
        })
        .await
    }
}

/// Plain TCP: the kernel's ceiling on this machine.
struct PlainTcp {
    addr: SocketAddr,
}

impl PlainTcp {
    async fn start() -> Result<Self> {
        let listener = TcpListener::bind(LOCALHOST).await?;
        let addr = listener.local_addr()?;
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                tokio::spawn(count_and_answer(tcp));
            }
        });
        Ok(PlainTcp { addr })
    }

    async fn transfer(&self, data: &Bytes, streams: usize) -> Result<Duration> {
        let mut conns = Vec::new();
        for _ in 0..streams {
            conns.push(TcpStream::connect(self.addr).await?);
        }
        let mut conns = conns.into_iter();
        timed("tcp", data, streams, move |part| {
            send_and_count(conns.next().expect("one connection per part"), part)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_covers_every_byte_once() {
        let data = Bytes::from(pattern(1001));
        for n in [1, 2, 3, 7, 1001] {
            let parts = split(&data, n);
            assert_eq!(parts.len(), n);
            let joined: Vec<u8> = parts.iter().flat_map(|p| p.iter().copied()).collect();
            assert_eq!(&joined[..], &data[..]);
        }
    }
}
