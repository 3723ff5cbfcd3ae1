//! Content served by real nodes on [::1] and fetched from several at once, verified.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use stoq::chunking::{ErasurePolicy, Hash32};
use stoq::client::{
    fetch, fetch_manifest, fetch_run, fetch_to_file, stall_deadline, ChunkRun, FetchError,
    FetchOptions, RunEvent, Verifier,
};
use stoq::protocol::{ErrorCode, Request};
use stoq::store::{PutOptions, Store};
use stoq::transport::{
    NodeIdentity, PeerExpectation, StoqConnection, StoqEndpoint, TransportConfig,
};
use stoq::{Node, NodeOptions, StoqConfig};

fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn local() -> TransportConfig {
    TransportConfig {
        listen: "[::1]:0".parse().unwrap(),
        ..TransportConfig::default()
    }
}

/// An origin node serving the store in `dir` (filled and closed by the caller).
async fn origin(dir: &Path) -> Node {
    origin_with(dir, |_| {}).await
}

/// An origin with its configuration adjusted by `tune`.
async fn origin_with(dir: &Path, tune: impl FnOnce(&mut StoqConfig)) -> Node {
    let mut config = StoqConfig::default();
    config.transport.listen = "[::1]:0".parse().unwrap();
    config.node.data_dir = dir.to_path_buf();
    tune(&mut config);
    Node::start(NodeOptions::new(config)).await.unwrap()
}

async fn dial(client: &StoqEndpoint, node: &Node) -> StoqConnection {
    connect(client, SocketAddr::V6(node.local_addr()), node.node_id()).await
}

async fn connect(
    client: &StoqEndpoint,
    addr: SocketAddr,
    id: stoq::transport::NodeId,
) -> StoqConnection {
    client
        .connect(addr, &PeerExpectation::Node(id))
        .await
        .unwrap()
}

/// Fills a store in `dir` with `data`; returns the content id.
fn stored(dir: &Path, data: &[u8], options: PutOptions) -> Hash32 {
    let mut store = Store::open(dir).unwrap();
    store.put_reader(data, options).unwrap().id
}

async fn bounded<F: std::future::Future>(f: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(60), f)
        .await
        .expect("test exceeded its time bound")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn content_is_fetched_from_several_nodes_at_once() {
    bounded(async {
        let data = noise(4 << 20, 1);
        let (dirs, mut ids) = (
            vec![tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()],
            Vec::new(),
        );
        let mut nodes = Vec::new();
        for dir in &dirs {
            ids.push(stored(dir.path(), &data, PutOptions::default()));
            nodes.push(origin(dir.path()).await);
        }
        assert_eq!(ids[0], ids[1], "same bytes, same content id on every node");
        let client = StoqEndpoint::client(local(), NodeIdentity::generate().unwrap()).unwrap();
        let conns = vec![
            dial(&client, &nodes[0]).await,
            dial(&client, &nodes[1]).await,
        ];
        let mut out = Vec::new();
        let report = fetch(&conns, &ids[0], &mut out).await.unwrap();
        assert_eq!(out, data);
        assert_eq!(report.size, data.len() as u64);
        assert!(
            report.sources.iter().all(|(_, bytes)| *bytes > 0),
            "both sources served: {report:?}"
        );
        assert_eq!(
            report.sources.iter().map(|s| s.1).sum::<u64>(),
            data.len() as u64,
            "no chunk fetched twice"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_download_into_a_file_puts_every_chunk_in_its_place_resumes_and_stops_on_a_failed_write()
{
    bounded(async {
        let data = noise(6 << 20, 5);
        let (dirs, mut nodes) = (
            vec![tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()],
            Vec::new(),
        );
        let mut id = None;
        for dir in &dirs {
            id = Some(stored(dir.path(), &data, PutOptions::default()));
            nodes.push(origin(dir.path()).await);
        }
        let id = id.unwrap();
        let client = StoqEndpoint::client(local(), NodeIdentity::generate().unwrap()).unwrap();
        let conns = vec![
            dial(&client, &nodes[0]).await,
            dial(&client, &nodes[1]).await,
        ];
        let options = FetchOptions {
            active: 2,
            ..FetchOptions::default()
        };
        let out = tempfile::tempdir().unwrap();

        // Two sources write their chunks wherever they belong, in whatever order they come.
        let path = out.path().join("whole");
        let file = Arc::new(std::fs::File::create(&path).unwrap());
        let mut progress = Vec::new();
        let report = fetch_to_file(&conns, &id, file, &options, |_| Ok(0), |p| progress.push(p))
            .await
            .unwrap();
        assert!(
            std::fs::read(&path).unwrap() == data,
            "the file is the content"
        );
        assert_eq!(report.size, data.len() as u64);
        assert!(report.sources.iter().all(|(_, b)| *b > 0), "{report:?}");
        assert!(progress.windows(2).all(|w| w[0] < w[1]), "{progress:?}");
        assert_eq!(progress.last(), Some(&(data.len() as u64)));

        // A file holding the first chunks already: only the rest is fetched, after them.
        let manifest = fetch_manifest(&conns[0], &id).await.unwrap();
        let held = manifest.chunks[3].offset as usize;
        let path = out.path().join("resumed");
        std::fs::write(&path, &data[..held]).unwrap();
        let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        let report = fetch_to_file(&conns, &id, Arc::new(file), &options, |_| Ok(3), |_| {})
            .await
            .unwrap();
        assert!(
            std::fs::read(&path).unwrap() == data,
            "resumed to the whole"
        );
        assert_eq!(report.resumed_bytes, held as u64);
        assert_eq!(report.size, (data.len() - held) as u64);

        // A file that cannot be written stops the download with the reason.
        let read_only = Arc::new(std::fs::File::open(&path).unwrap());
        match fetch_to_file(&conns, &id, read_only, &options, |_| Ok(0), |_| {}).await {
            Err(FetchError::Output(e)) => assert!(!e.to_string().is_empty()),
            other => panic!("expected an output error, got {other:?}"),
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_serving_corrupt_chunks_is_dropped_and_the_others_finish() {
    bounded(async {
        let data = noise(2 << 20, 2);
        let good_dir = tempfile::tempdir().unwrap();
        let bad_dir = tempfile::tempdir().unwrap();
        let id = stored(good_dir.path(), &data, PutOptions::default());
        stored(bad_dir.path(), &data, PutOptions::default());
        // Corrupt every chunk file of the bad node: it can serve nothing intact.
        for sub in std::fs::read_dir(bad_dir.path().join("blobs")).unwrap() {
            for f in std::fs::read_dir(sub.unwrap().path()).unwrap() {
                let path = f.unwrap().path();
                let mut bytes = std::fs::read(&path).unwrap();
                bytes[0] ^= 0xff;
                std::fs::write(&path, bytes).unwrap();
            }
        }
        let (good, bad) = (origin(good_dir.path()).await, origin(bad_dir.path()).await);
        let client = StoqEndpoint::client(local(), NodeIdentity::generate().unwrap()).unwrap();
        let conns = vec![dial(&client, &bad).await, dial(&client, &good).await];
        let mut out = Vec::new();
        let report = fetch(&conns, &id, &mut out).await.unwrap();
        assert_eq!(out, data);
        assert_eq!(report.dropped, vec![bad.local_addr().to_string()]);
        assert_eq!(
            report.sources[0].1, 0,
            "nothing from the bad source was used"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn erasure_coded_content_is_served_and_missing_content_is_an_error() {
    bounded(async {
        let data = noise(1 << 20, 3);
        let dir = tempfile::tempdir().unwrap();
        let options = PutOptions {
            erasure: Some(ErasurePolicy { k: 3, m: 2 }),
            kind: None,
        };
        let id = stored(dir.path(), &data, options);
        let n = origin(dir.path()).await;
        let client = StoqEndpoint::client(local(), NodeIdentity::generate().unwrap()).unwrap();
        let conn = dial(&client, &n).await;
        let mut out = Vec::new();
        fetch(std::slice::from_ref(&conn), &id, &mut out)
            .await
            .unwrap();
        assert_eq!(out, data);
        assert_eq!(
            fetch_manifest(&conn, &id).await.unwrap().erasure,
            Some(ErasurePolicy { k: 3, m: 2 })
        );

        let missing = Hash32::of(b"nothing");
        match fetch(&[conn], &missing, &mut Vec::new()).await {
            Err(FetchError::Transport { error, .. }) => {
                assert!(error.to_string().contains("not found"), "{error}")
            }
            other => panic!("expected not found, got {other:?}"),
        }
    })
    .await;
}

/// A writer that rings a bell once `after` bytes have been written.
/// An output that rings a bell once `after` bytes are written, then waits (up to 10 s) until
/// `done` says the bell was answered, so the download cannot finish before the event happens.
struct Tripwire {
    out: Vec<u8>,
    after: usize,
    bell: Option<Arc<tokio::sync::Notify>>,
    done: std::sync::mpsc::Receiver<()>,
}

impl std::io::Write for Tripwire {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.out.extend_from_slice(buf);
        if self.out.len() >= self.after {
            if let Some(bell) = self.bell.take() {
                bell.notify_one();
                let _ = self.done.recv_timeout(Duration::from_secs(10));
            }
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_that_vanishes_mid_transfer_is_dropped_and_its_chunks_move_to_the_others() {
    bounded(async {
        let data = noise(24 << 20, 4);
        let (dir_a, dir_c) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let mut ids = Vec::new();
        let mut nodes = Vec::new();
        for dir in [&dir_a, &dir_c] {
            ids.push(stored(dir.path(), &data, PutOptions::default()));
            nodes.push(origin(dir.path()).await);
        }
        let client = StoqEndpoint::client(local(), NodeIdentity::generate().unwrap()).unwrap();
        let conns = vec![
            dial(&client, &nodes[0]).await,
            dial(&client, &nodes[1]).await,
        ];
        let bell = Arc::new(tokio::sync::Notify::new());
        let vanishing = nodes[0].clone();
        let waiter = bell.clone();
        let (killed, done) = std::sync::mpsc::channel();
        let killer = tokio::spawn(async move {
            waiter.notified().await;
            vanishing.kill().await;
            let _ = killed.send(());
        });
        // The first chunk written came from A (it was handed chunks first); A is killed then,
        // so it vanishes with most of the content still to fetch.
        let mut out = Tripwire {
            out: Vec::new(),
            after: 1,
            bell: Some(bell),
            done,
        };
        let report = fetch(&conns, &ids[0], &mut out).await.unwrap();
        killer.await.unwrap();
        assert_eq!(
            out.out, data,
            "the content completed from the remaining source"
        );
        assert_eq!(report.dropped, vec![nodes[0].local_addr().to_string()]);
        let (from_a, from_c) = (report.sources[0].1, report.sources[1].1);
        assert!(
            from_a > 0 && from_a < data.len() as u64,
            "A served part before it vanished: {report:?}"
        );
        assert_eq!(
            from_a + from_c,
            data.len() as u64,
            "no verified chunk was fetched twice"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_that_stalls_is_dropped_within_its_deadline() {
    bounded(async {
        let data = noise(1 << 20, 6);
        let (dir_s, dir_g) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let id = stored(dir_s.path(), &data, PutOptions::default());
        stored(dir_g.path(), &data, PutOptions::default());
        let manifest = Bytes::from(
            Store::open(dir_s.path())
                .unwrap()
                .manifest(&id)
                .unwrap()
                .encode(),
        );
        // A misbehaving peer (no node does this): it answers manifests but never sends a chunk.
        let stalling = StoqEndpoint::bind(local(), NodeIdentity::generate().unwrap()).unwrap();
        stalling.serve(move |mut req| {
            let manifest = manifest.clone();
            async move {
                match Request::decode(&req.payload) {
                    Ok(Request::GetManifest { .. }) => {
                        req.reply.send_data(manifest).await?;
                        req.reply.send_end().await?;
                        req.reply.send_response(Bytes::new()).await?;
                        req.reply.finish()
                    }
                    _ => std::future::pending().await,
                }
            }
        });
        let good = origin(dir_g.path()).await;
        let client = StoqEndpoint::client(local(), NodeIdentity::generate().unwrap()).unwrap();
        let stalling_at = stalling.local_addr().unwrap();
        let conns = vec![
            connect(&client, stalling_at, stalling.node_id()).await,
            dial(&client, &good).await,
        ];
        let started = std::time::Instant::now();
        let mut out = Vec::new();
        let report = fetch(&conns, &id, &mut out).await.unwrap();
        let took = started.elapsed();
        assert_eq!(out, data);
        assert_eq!(report.dropped, vec![stalling_at.to_string()]);
        assert_eq!(report.sources[0].1, 0);
        // The first chunks' deadline is 500 ms plus 3x their size at 1 MB/s.
        let first_deadline = stall_deadline(256 * 1024, 1e6);
        assert!(
            took < first_deadline + Duration::from_secs(3),
            "took {took:?}"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lone_source_that_stalls_gets_more_time_instead_of_being_dropped() {
    bounded(async {
        let data = noise(1 << 20, 8);
        let dir = tempfile::tempdir().unwrap();
        let id = stored(dir.path(), &data, PutOptions::default());
        let store = Arc::new(Store::open(dir.path()).unwrap());
        let manifest = Arc::new(store.manifest(&id).unwrap());
        // A slow peer (no node does this on purpose; a busy one looks like it): its first
        // chunk request is never answered, the others are.
        let slow = StoqEndpoint::bind(local(), NodeIdentity::generate().unwrap()).unwrap();
        let stalled_once = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (peer_store, peer_manifest) = (store.clone(), manifest.clone());
        slow.serve(move |mut req| {
            let (store, manifest, stalled) = (
                peer_store.clone(),
                peer_manifest.clone(),
                stalled_once.clone(),
            );
            async move {
                let body = match Request::decode(&req.payload) {
                    Ok(Request::GetManifest { .. }) => Bytes::from(manifest.encode()),
                    Ok(Request::GetChunks { first, count, .. }) => {
                        if !stalled.swap(true, std::sync::atomic::Ordering::SeqCst) {
                            std::future::pending::<()>().await;
                        }
                        let mut run = Vec::new();
                        for entry in &manifest.chunks[first as usize..(first + count) as usize] {
                            run.extend(store.read_chunk(&id, entry, None).unwrap().0);
                        }
                        Bytes::from(run)
                    }
                    _ => return req.reply.send_error(ErrorCode::BadRequest, "no").await,
                };
                req.reply.send_data(body).await?;
                req.reply.send_end().await?;
                req.reply.send_response(Bytes::new()).await?;
                req.reply.finish()
            }
        });
        let client = StoqEndpoint::client(local(), NodeIdentity::generate().unwrap()).unwrap();
        let conn = connect(&client, slow.local_addr().unwrap(), slow.node_id()).await;
        let mut out = Vec::new();
        let report = fetch(&[conn], &id, &mut out).await.unwrap();
        assert_eq!(out, data, "the content completed from its only source");
        assert!(report.dropped.is_empty(), "{report:?}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_client_of_a_busy_node_completes() {
    bounded(async {
        // 24 clients at once against a node that works on 1 request at a time and queues
        // none: most requests are answered BUSY, and every download still completes.
        let data = noise(3 << 20, 11);
        let dir = tempfile::tempdir().unwrap();
        let id = stored(dir.path(), &data, PutOptions::default());
        let node = origin_with(dir.path(), |c| {
            // One slot and no queue: a request that finds the slot taken is BUSY at once.
            c.node.max_concurrent_reads = 1;
            c.node.read_queue_ms = 0;
        })
        .await;
        let mut fetches = Vec::new();
        for _ in 0..24 {
            let client = StoqEndpoint::client(local(), NodeIdentity::generate().unwrap()).unwrap();
            let conn = dial(&client, &node).await;
            fetches.push(tokio::spawn(async move {
                let mut out = Vec::new();
                let report = fetch(&[conn], &id, &mut out).await;
                drop(client);
                report.map(|r| (out, r))
            }));
        }
        for f in fetches {
            let (out, report) = f.await.unwrap().expect("a busy node's client completes");
            assert!(out == data, "byte-identical");
            assert!(report.dropped.is_empty(), "busy is not failure: {report:?}");
        }
        let busy = node
            .metrics()
            .busy
            .load(std::sync::atomic::Ordering::Relaxed);
        assert!(busy > 0, "the node turned requests away while loaded");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_of_chunks_arrives_whole_and_a_run_past_the_end_is_not_found() {
    bounded(async {
        let data = noise(1 << 20, 12);
        let dir = tempfile::tempdir().unwrap();
        let id = stored(dir.path(), &data, PutOptions::default());
        let node = origin(dir.path()).await;
        let client = StoqEndpoint::client(local(), NodeIdentity::generate().unwrap()).unwrap();
        let conn = dial(&client, &node).await;
        let manifest = fetch_manifest(&conn, &id).await.unwrap();
        let n = manifest.chunks.len() as u32;
        assert!(n >= 3, "the test needs several chunks, got {n}");
        let mut got = Vec::new();
        let asked = ChunkRun {
            id: &id,
            manifest: &manifest,
            run: 1..n,
            read_token: None,
        };
        fetch_run(
            &conn,
            asked,
            &Verifier::start().unwrap(),
            |_| Duration::from_secs(5),
            |e| got.push(e),
        )
        .await;
        let mut joined = Vec::new();
        for (event, index) in got.iter().zip(1..n) {
            match event {
                RunEvent::Chunk {
                    index: i, bytes, ..
                } => {
                    assert_eq!(*i, index);
                    joined.extend_from_slice(bytes);
                }
                other => panic!("chunk {index}: {other:?}"),
            }
        }
        assert_eq!(got.len() as u32, n - 1);
        let start = manifest.chunks[1].offset as usize;
        assert!(
            joined == data[start..],
            "the run is the content from chunk 1 on"
        );
        // A run past the last chunk is refused before any data.
        let past = Request::GetChunks {
            id,
            first: n - 1,
            count: 2,
            read_token: None,
        };
        let (mut send, mut recv) = conn.open_bi().await.unwrap();
        send.send_request(past.encode()).await.unwrap();
        send.finish().unwrap();
        match recv.recv_body(1 << 20).await {
            Err(stoq::transport::TransportError::Remote { code, .. }) => {
                assert_eq!(code, ErrorCode::NotFound)
            }
            other => panic!("expected NOT_FOUND, got {other:?}"),
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chunk_that_does_not_match_its_id_stops_the_run_after_those_before_it() {
    bounded(async {
        let data = noise(2 << 20, 13);
        let dir = tempfile::tempdir().unwrap();
        let id = stored(dir.path(), &data, PutOptions::default());
        let node = origin(dir.path()).await;
        let client = StoqEndpoint::client(local(), NodeIdentity::generate().unwrap()).unwrap();
        let conn = dial(&client, &node).await;
        let mut manifest = fetch_manifest(&conn, &id).await.unwrap();
        let n = manifest.chunks.len() as u32;
        assert!(
            n >= 12,
            "the test needs a run longer than the hashing queue, got {n}"
        );
        // The client expects other bytes for chunk 10 than the node holds: to the client,
        // the node sends a chunk that does not match its id.
        let bad = 10;
        manifest.chunks[bad as usize].id = Hash32::of(b"other bytes");
        // Checked on a thread of its own (machines with cores to spare) and inline.
        for verifier in [Verifier::start().unwrap(), Verifier::inline()] {
            let mut got = Vec::new();
            let asked = ChunkRun {
                id: &id,
                manifest: &manifest,
                run: 0..n,
                read_token: None,
            };
            fetch_run(
                &conn,
                asked,
                &verifier,
                |_| Duration::from_secs(5),
                |e| got.push(e),
            )
            .await;
            assert_eq!(got.len() as u32, bad + 1, "{got:?}");
            for (index, event) in got[..bad as usize].iter().enumerate() {
                let entry = &manifest.chunks[index];
                match event {
                    RunEvent::Chunk {
                        index: i, bytes, ..
                    } => {
                        assert_eq!(*i as usize, index);
                        let at = entry.offset as usize;
                        assert!(bytes[..] == data[at..at + entry.length as usize]);
                    }
                    other => panic!("chunk {index}: {other:?}"),
                }
            }
            match &got[bad as usize] {
                RunEvent::Stopped { index, error, rest } => {
                    assert_eq!(*index, bad);
                    assert!(
                        matches!(error, FetchError::BadChunk { index: 10, .. }),
                        "{error}"
                    );
                    assert_eq!(*rest, bad + 1..n);
                }
                other => panic!("expected the run to stop at chunk {bad}: {other:?}"),
            }
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_byte_flipped_on_a_serving_node_is_never_delivered_unnoticed_and_is_reported() {
    bounded(async {
        let data = noise(2 << 20, 14);
        let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let id = stored(dir_a.path(), &data, PutOptions::default());
        stored(dir_b.path(), &data, PutOptions::default());
        let victim = Store::open(dir_a.path())
            .unwrap()
            .manifest(&id)
            .unwrap()
            .chunks[1]
            .id;
        let a = origin_with(dir_a.path(), |c| c.node.scrub_interval_ms = 100).await;
        let b = origin(dir_b.path()).await;
        let client = StoqEndpoint::client(local(), NodeIdentity::generate().unwrap()).unwrap();
        let (at_a, at_b) = (dial(&client, &a).await, dial(&client, &b).await);
        // A serves everything once: every blob is hashed, then trusted.
        let mut out = Vec::new();
        fetch(std::slice::from_ref(&at_a), &id, &mut out)
            .await
            .unwrap();
        assert!(out == data);
        // A byte flips on A's disk.
        let hex = victim.to_string();
        let path = dir_a.path().join("blobs").join(&hex[..2]).join(&hex);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[100] ^= 0x01;
        std::fs::write(&path, bytes).unwrap();
        // Whether A still sends the flipped chunk or already refuses it, the client never
        // takes it: A is dropped and B completes the content.
        let mut out = Vec::new();
        let report = fetch(&[at_a.clone(), at_b], &id, &mut out).await.unwrap();
        assert!(out == data, "the content arrived intact");
        assert_eq!(report.dropped, vec![a.local_addr().to_string()]);
        // A's scrub reports the damage ...
        let damaged = || {
            a.metrics()
                .scrub_damaged
                .load(std::sync::atomic::Ordering::Relaxed)
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while damaged() == 0 && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(damaged() >= 1, "the scrub found the damaged blob");
        // ... and from then on A refuses the chunk instead of sending it.
        let mut out = Vec::new();
        match fetch(&[at_a], &id, &mut out).await {
            Err(FetchError::Exhausted { index: 1, last }) => {
                assert!(last.contains("not found"), "{last}")
            }
            other => panic!("expected chunk 1 refused, got {other:?}"),
        }
    })
    .await;
}
