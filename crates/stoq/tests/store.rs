//! The content store on real files and a real redb index.

use std::io::{self, Read, Write};

use stoq::chunking::{ContentKind, ErasurePolicy, Hash32};
use stoq::store::{BlobHealth, PutOptions, Store, StoreError};

/// Deterministic pseudo-random bytes, generated as they are read (no memory for big inputs);
/// the same seed gives the same stream whatever the read sizes.
struct Noise {
    state: u64,
    left: u64,
    block: [u8; 8],
    used: usize,
}

impl Noise {
    fn new(len: u64, seed: u64) -> Self {
        Noise {
            state: seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1,
            left: len,
            block: [0; 8],
            used: 8,
        }
    }
}

impl Read for Noise {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = buf.len().min(self.left as usize);
        for byte in &mut buf[..n] {
            if self.used == 8 {
                self.state ^= self.state << 13;
                self.state ^= self.state >> 7;
                self.state ^= self.state << 17;
                self.block = self.state.to_le_bytes();
                self.used = 0;
            }
            *byte = self.block[self.used];
            self.used += 1;
        }
        self.left -= n as u64;
        Ok(n)
    }
}

fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut v = Vec::with_capacity(len);
    Noise::new(len as u64, seed).read_to_end(&mut v).unwrap();
    v
}

/// A writer that only hashes.
struct HashWriter(blake3::Hasher, u64);

impl Write for HashWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.update(buf);
        self.1 += buf.len() as u64;
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn get(store: &Store, id: &Hash32) -> Vec<u8> {
    let mut out = Vec::new();
    store.get_to(id, &mut out).unwrap();
    out
}

fn open() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    (dir, store)
}

#[test]
fn empty_tiny_one_chunk_and_multi_chunk_inputs_round_trip() {
    let (_dir, mut store) = open();
    for (len, expected_chunks) in [
        (0usize, Some(0usize)),
        (5, Some(1)),
        (10 * 1024, Some(1)),
        (3 << 20, None),
    ] {
        let data = noise(len, len as u64 + 1);
        let put = store.put_reader(&data[..], PutOptions::default()).unwrap();
        assert_eq!(put.size, len as u64);
        if let Some(n) = expected_chunks {
            assert_eq!(put.chunks, n, "len {len}");
        } else {
            assert!(put.chunks > 10);
        }
        assert_eq!(get(&store, &put.id), data);
    }
    assert!(store.check().unwrap().is_empty());
}

#[test]
fn a_multi_gib_stream_round_trips_in_bounded_memory() {
    let (_dir, mut store) = open();
    const LEN: u64 = 2 << 30;
    let mut expected = HashWriter(blake3::Hasher::new(), 0);
    io::copy(&mut Noise::new(LEN, 42), &mut expected).unwrap();
    let put = store
        .put_reader(Noise::new(LEN, 42), PutOptions::default())
        .unwrap();
    assert_eq!(put.size, LEN);
    let mut back = HashWriter(blake3::Hasher::new(), 0);
    store.get_to(&put.id, &mut back).unwrap();
    assert_eq!(back.1, LEN);
    assert_eq!(back.0.finalize(), expected.0.finalize());
}

#[test]
fn the_same_file_twice_adds_nothing() {
    let (_dir, mut store) = open();
    let data = noise(5 << 20, 7);
    let first = store.put_reader(&data[..], PutOptions::default()).unwrap();
    assert_eq!(first.new_chunks, first.chunks);
    let second = store.put_reader(&data[..], PutOptions::default()).unwrap();
    assert_eq!(second.id, first.id);
    assert_eq!((second.new_chunks, second.new_bytes), (0, 0));
    let stats = store.stats().unwrap();
    assert_eq!(stats.objects, 1);
    assert_eq!(stats.stored_bytes, data.len() as u64);
}

#[test]
fn one_changed_byte_in_64_mib_adds_at_most_three_chunks() {
    let (_dir, mut store) = open();
    let mut data = noise(64 << 20, 9);
    let first = store.put_reader(&data[..], PutOptions::default()).unwrap();
    data[32 << 20] ^= 0xff;
    let second = store.put_reader(&data[..], PutOptions::default()).unwrap();
    assert_ne!(first.id, second.id);
    assert!(second.new_chunks <= 3, "{} new chunks", second.new_chunks);
    let stats = store.stats().unwrap();
    assert!(stats.dedup_ratio > 1.9, "{stats:?}");
    assert_eq!(get(&store, &second.id), data);
}

fn blob_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for sub in std::fs::read_dir(dir.join("blobs")).unwrap() {
        for f in std::fs::read_dir(sub.unwrap().path()).unwrap() {
            files.push(f.unwrap().path());
        }
    }
    files.sort();
    files
}

fn path_of(dir: &std::path::Path, id: &Hash32) -> std::path::PathBuf {
    let hex = id.to_string();
    dir.join("blobs").join(&hex[..2]).join(hex)
}

#[test]
fn a_corrupt_chunk_is_detected_and_never_served() {
    let (dir, mut store) = open();
    let data = noise(1 << 20, 3);
    let put = store.put_reader(&data[..], PutOptions::default()).unwrap();
    let victim = store.manifest(&put.id).unwrap().chunks[2].id;
    let path = path_of(dir.path(), &victim);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[10] ^= 1;
    std::fs::write(&path, bytes).unwrap();
    let mut out = Vec::new();
    match store.get_to(&put.id, &mut out) {
        Err(StoreError::Corrupt { chunk, content }) => {
            assert_eq!((chunk, content), (victim, put.id));
        }
        other => panic!("expected a corrupt-chunk error, got {other:?}"),
    }
    assert!(
        out.len() < data.len(),
        "nothing past the bad chunk was written"
    );
    let problems = store.check().unwrap();
    assert_eq!(problems.len(), 1, "{problems:?}");
}

#[test]
fn a_blob_flipped_after_its_first_read_is_caught_by_the_scrub_and_refused_from_then_on() {
    let (dir, mut store) = open();
    let data = noise(1 << 20, 13);
    let put = store.put_reader(&data[..], PutOptions::default()).unwrap();
    let manifest = store.manifest(&put.id).unwrap();
    let entry = manifest.chunks[1].clone();
    // First read: hashed, then trusted.
    assert_eq!(get(&store, &put.id), data);
    let path = path_of(dir.path(), &entry.id);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[7] ^= 0x40;
    std::fs::write(&path, bytes).unwrap();
    // The scrub hashes every blob again and finds the damaged one.
    let ids = store.blob_ids().unwrap();
    assert_eq!(ids.len(), manifest.chunks.len());
    let damaged: Vec<_> = ids
        .iter()
        .filter(|id| !matches!(store.scrub_blob(id).unwrap(), BlobHealth::Intact(_)))
        .collect();
    assert_eq!(damaged, vec![&entry.id]);
    // From then on the chunk is refused, never served.
    match store.read_chunk(&put.id, &entry, None) {
        Err(StoreError::Corrupt { chunk, .. }) => assert_eq!(chunk, entry.id),
        other => panic!("expected the damaged chunk refused, got {other:?}"),
    }
    // A store opened afresh trusts nothing it has not hashed: it refuses at once.
    drop(store);
    let reopened = Store::open(dir.path()).unwrap();
    assert!(reopened.read_chunk(&put.id, &entry, None).is_err());
    assert_eq!(reopened.check().unwrap().len(), 1);
}

#[test]
fn erasure_coded_content_survives_lost_and_corrupt_shards_and_is_repaired() {
    let (dir, mut store) = open();
    let data = noise(2 << 20, 5);
    let policy = ErasurePolicy { k: 4, m: 2 };
    let put = store
        .put_reader(
            &data[..],
            PutOptions {
                erasure: Some(policy),
                kind: None,
            },
        )
        .unwrap();
    let stats = store.stats().unwrap();
    let overhead = stats.stored_bytes as f64 / data.len() as f64;
    assert!((overhead - 1.5).abs() < 0.01, "overhead {overhead}");
    let manifest = store.manifest(&put.id).unwrap();
    let shards = &manifest.chunks[0].shards.as_ref().unwrap().ids;
    std::fs::remove_file(path_of(dir.path(), &shards[0])).unwrap();
    let corrupt = path_of(dir.path(), &shards[3]);
    let mut bytes = std::fs::read(&corrupt).unwrap();
    bytes[0] ^= 0xff;
    std::fs::write(&corrupt, bytes).unwrap();
    assert_eq!(store.check().unwrap().len(), 2);

    let mut out = Vec::new();
    let report = store.get_to(&put.id, &mut out).unwrap();
    assert_eq!(out, data);
    assert_eq!(report.repaired_shards, 2);
    assert!(
        store.check().unwrap().is_empty(),
        "both shards were rewritten"
    );

    // Three of six shards of one chunk gone: more than m, so that chunk cannot be rebuilt.
    for s in &shards[..3] {
        std::fs::remove_file(path_of(dir.path(), s)).unwrap();
    }
    assert!(matches!(
        store.get_to(&put.id, &mut Vec::new()),
        Err(StoreError::Corrupt { .. })
    ));
}

#[test]
fn delete_frees_only_unshared_chunks_and_gc_removes_orphans() {
    let (dir, mut store) = open();
    let shared = noise(2 << 20, 11);
    let mut a = shared.clone();
    a.extend(noise(1 << 20, 12));
    let mut b = shared.clone();
    b.extend(noise(1 << 20, 14));
    let pa = store.put_reader(&a[..], PutOptions::default()).unwrap();
    let pb = store.put_reader(&b[..], PutOptions::default()).unwrap();
    let before = blob_files(dir.path()).len();
    let freed = store.delete(&pa.id).unwrap();
    assert!(
        freed.orphans_removed > 0 && freed.orphans_removed < pa.chunks as u64,
        "freed {freed:?} of {} chunks",
        pa.chunks
    );
    assert_eq!(
        blob_files(dir.path()).len(),
        before - freed.orphans_removed as usize
    );
    assert_eq!(get(&store, &pb.id), b);
    assert!(matches!(
        store.manifest(&pa.id),
        Err(StoreError::NotFound(_))
    ));

    // An orphan (as an interrupted put leaves) is removed by gc; referenced blobs stay.
    let orphan = path_of(dir.path(), &Hash32::of(b"orphan"));
    std::fs::create_dir_all(orphan.parent().unwrap()).unwrap();
    std::fs::write(&orphan, b"orphan").unwrap();
    let gc = store.gc().unwrap();
    assert_eq!(gc.orphans_removed, 1);
    assert!(!orphan.exists());
    assert!(store.check().unwrap().is_empty());
    assert_eq!(get(&store, &pb.id), b);
}

#[test]
fn a_chosen_kind_overrides_sniffing_and_changes_the_chunk_sizes() {
    let (_dir, mut store) = open();
    let text: Vec<u8> = (0..200_000u32)
        .flat_map(|i| format!("line {i} of some source text\n").into_bytes())
        .collect();
    let sniffed = store.put_reader(&text[..], PutOptions::default()).unwrap();
    assert_eq!(sniffed.kind, ContentKind::Text);
    let media = store
        .put_reader(
            &text[..],
            PutOptions {
                erasure: None,
                kind: Some(ContentKind::Media),
            },
        )
        .unwrap();
    assert_eq!(media.kind, ContentKind::Media);
    assert!(
        media.chunks * 8 < sniffed.chunks,
        "{} vs {}",
        media.chunks,
        sniffed.chunks
    );
}

#[test]
fn the_store_reopens_with_everything_committed() {
    let dir = tempfile::tempdir().unwrap();
    let data = noise(1 << 20, 21);
    let id = {
        let mut store = Store::open(dir.path()).unwrap();
        store
            .put_reader(&data[..], PutOptions::default())
            .unwrap()
            .id
    };
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(get(&store, &id), data);
}

/// A full disk: a small tmpfs (needs root; skipped with a reason otherwise).
#[test]
fn a_full_disk_gives_a_clear_error_and_an_intact_store() {
    let dir = tempfile::tempdir().unwrap();
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=6m", "tmpfs"])
        .arg(dir.path())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !mounted {
        eprintln!("skipped: cannot mount a small tmpfs here (needs root)");
        return;
    }
    struct Unmount<'a>(&'a std::path::Path);
    impl Drop for Unmount<'_> {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount").arg(self.0).status();
        }
    }
    let _guard = Unmount(dir.path());
    let mut store = Store::open(dir.path()).unwrap();
    let small = noise(512 * 1024, 1);
    let kept = store.put_reader(&small[..], PutOptions::default()).unwrap();
    let err = store
        .put_reader(Noise::new(16 << 20, 2), PutOptions::default())
        .unwrap_err();
    assert!(matches!(err, StoreError::DiskFull { .. }), "{err}");
    assert!(err.to_string().contains("disk full"), "{err}");
    assert!(store.check().unwrap().is_empty());
    assert_eq!(store.stats().unwrap().objects, 1);
    assert_eq!(get(&store, &kept.id), small);
    // The failed put took its blobs back itself: nothing is left for gc, and the space is free.
    assert_eq!(store.gc().unwrap().orphans_removed, 0);
    assert_eq!(
        blob_files(dir.path()).len(),
        store.stats().unwrap().blobs as usize
    );
    let again = store.put_reader(&noise(1 << 20, 3)[..], PutOptions::default());
    assert!(again.is_ok(), "the space came back: {again:?}");
}

#[test]
fn a_put_that_was_killed_leaves_a_marker_and_the_next_open_collects_its_orphans() {
    let (dir, mut store) = open();
    let kept = store
        .put_reader(&noise(300_000, 41)[..], PutOptions::default())
        .unwrap();
    drop(store);
    // What a killed put leaves: blob files no index entry refers to, and the marker.
    let orphan = Hash32(*blake3::hash(b"an orphan").as_bytes());
    let path = path_of(dir.path(), &orphan);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, b"an orphan").unwrap();
    std::fs::write(dir.path().join("put-in-progress"), b"").unwrap();
    let store = Store::open(dir.path()).unwrap();
    assert!(!path.exists(), "the orphan was collected at open");
    assert!(!dir.path().join("put-in-progress").exists());
    assert!(store.contains(&kept.id).unwrap());
    assert_eq!(
        blob_files(dir.path()).len(),
        store.stats().unwrap().blobs as usize
    );
}

#[test]
fn a_lost_index_is_refused_then_rebuilt_from_the_files_with_names_and_restrictions() {
    let (dir, mut store) = open();
    let data = noise(1 << 20, 21);
    let put = store.put_reader(&data[..], PutOptions::default()).unwrap();
    let other = store
        .put_reader(&noise(300_000, 22)[..], PutOptions::default())
        .unwrap();
    store.set_name("releases/latest", &put.id, 60, 60).unwrap();
    store.set_restriction(&other.id, Some(&[7u8; 32])).unwrap();
    let blobs_before = blob_files(dir.path()).len();
    drop(store);
    std::fs::remove_file(dir.path().join("index.redb")).unwrap();
    // Nothing opens the store (so nothing, gc least of all, acts on an empty index).
    match Store::open(dir.path()) {
        Err(StoreError::IndexUnusable { why, .. }) => assert!(why.contains("missing"), "{why}"),
        other => panic!("expected the store refused, got {other:?}"),
    }
    assert_eq!(
        blob_files(dir.path()).len(),
        blobs_before,
        "no blob touched"
    );
    // A check says so; a repair rebuilds everything the files describe.
    let report = stoq::store::check(dir.path(), false).unwrap();
    assert_eq!((report.index.as_str(), report.contents), ("missing", 2));
    assert!(!report.healthy());
    let report = stoq::store::check(dir.path(), true).unwrap();
    assert!(
        report.rebuilt && report.unrecoverable.is_empty(),
        "{report:?}"
    );
    assert_eq!(report.indexed, 2);
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(get(&store, &put.id), data);
    assert_eq!(store.name("releases/latest").unwrap().unwrap().id, put.id);
    assert_eq!(store.restriction(&other.id).unwrap(), Some([7u8; 32]));
    drop(store);
    assert!(stoq::store::check(dir.path(), false).unwrap().healthy());
}

#[test]
fn a_damaged_index_is_an_error_not_a_panic_and_is_rebuilt() {
    let (dir, mut store) = open();
    let data = noise(600_000, 23);
    let put = store.put_reader(&data[..], PutOptions::default()).unwrap();
    drop(store);
    let path = dir.path().join("index.redb");
    // Pages overwritten, then (a second case) the file cut short.
    let mut bytes = std::fs::read(&path).unwrap();
    for i in (4096..bytes.len().min(200_000)).step_by(1000) {
        bytes[i] ^= 0xff;
    }
    for damaged in [bytes.clone(), bytes[..3000].to_vec()] {
        std::fs::write(&path, &damaged).unwrap();
        match Store::open(dir.path()) {
            Err(StoreError::IndexUnusable { .. }) => {}
            other => panic!("expected an unusable index, got {other:?}"),
        }
        let report = stoq::store::check(dir.path(), true).unwrap();
        assert_eq!(report.index, "damaged");
        assert!(report.rebuilt);
        assert!(dir.path().join("index.redb.damaged").exists(), "kept aside");
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(get(&store, &put.id), data);
        drop(store);
    }
}

#[test]
fn putting_the_original_again_heals_a_damaged_blob_and_a_repair_names_what_it_cannot() {
    let (dir, mut store) = open();
    let data = noise(1 << 20, 24);
    let put = store.put_reader(&data[..], PutOptions::default()).unwrap();
    let victim = store.manifest(&put.id).unwrap().chunks[3].id;
    std::fs::write(path_of(dir.path(), &victim), b"flipped").unwrap();
    drop(store);
    // A repair deletes the corrupt blob and says the content cannot be recovered here.
    let report = stoq::store::check(dir.path(), true).unwrap();
    assert_eq!(report.corrupt_blobs, vec![victim.to_string()]);
    assert_eq!(report.unrecoverable.len(), 1);
    assert_eq!(report.unrecoverable[0].id, put.id.to_string());
    assert!(!path_of(dir.path(), &victim).exists());
    // Putting the original file again writes the missing blob instead of deduplicating it.
    let mut store = Store::open(dir.path()).unwrap();
    let again = store.put_reader(&data[..], PutOptions::default()).unwrap();
    assert_eq!((again.id, again.new_chunks), (put.id, 1));
    assert_eq!(get(&store, &put.id), data);
    drop(store);
    assert!(stoq::store::check(dir.path(), false).unwrap().healthy());
}

#[test]
fn commands_that_only_read_create_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let typo = dir.path().join("typo");
    match Store::open_existing(&typo) {
        Err(StoreError::NoStore(_)) => {}
        other => panic!("expected no store, got {other:?}"),
    }
    assert!(matches!(
        stoq::store::check(&typo, true),
        Err(StoreError::NoStore(_))
    ));
    assert!(!typo.exists(), "nothing was created");
}

#[test]
fn shards_held_for_other_origins_survive_a_rebuilt_index() {
    // A publisher's store makes erasure-coded content; this store holds two of its shards.
    let (_publisher_dir, mut publisher) = open();
    let erasure = Some(ErasurePolicy { k: 2, m: 1 });
    let put = publisher
        .put_reader(
            &noise(200_000, 31)[..],
            PutOptions {
                erasure,
                kind: None,
            },
        )
        .unwrap();
    let manifest = publisher.manifest(&put.id).unwrap();
    let ids = manifest.chunks[0].shards.as_ref().unwrap().ids.clone();
    let shards: Vec<_> = ids[..2]
        .iter()
        .map(|id| (*id, publisher.blob(id).unwrap().unwrap()))
        .collect();
    let (dir, mut holder) = open();
    holder.hold(&put.id, &manifest.encode(), &shards).unwrap();
    holder.set_placement(&put.id, b"{\"placed\":true}").unwrap();
    drop(holder);
    std::fs::remove_file(dir.path().join("index.redb")).unwrap();
    assert!(stoq::store::check(dir.path(), true).unwrap().rebuilt);
    let mut holder = Store::open(dir.path()).unwrap();
    assert_eq!(holder.held_manifest(&put.id).unwrap(), Some(manifest));
    assert_eq!(
        holder.placement(&put.id).unwrap().as_deref(),
        Some(&b"{\"placed\":true}"[..])
    );
    // The shards are referenced again: gc keeps them.
    holder.gc().unwrap();
    for (id, bytes) in &shards {
        assert_eq!(holder.blob_if_present(id).unwrap().as_ref(), Some(bytes));
    }
}

/// A zip release written to `path`: a large stored member, a deflate-free build (stored), and a
/// file that says the version.
fn zip_release(path: &std::path::Path, big: &[u8], version: &str) {
    let mut writer = zip::ZipWriter::new(std::fs::File::create(path).unwrap());
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Stored)
        .last_modified_time(zip::DateTime::default());
    for (name, data) in [
        (format!("pkg-{version}/data.bin"), big.to_vec()),
        (
            format!("pkg-{version}/VERSION"),
            version.as_bytes().to_vec(),
        ),
    ] {
        writer.start_file(name, options).unwrap();
        writer.write_all(&data).unwrap();
    }
    writer.finish().unwrap();
}

#[test]
fn a_new_zip_release_stored_from_a_file_shares_its_unchanged_members() {
    let (dir, mut store) = open();
    let big = noise(4 << 20, 31);
    let (one, two) = (dir.path().join("v1.zip"), dir.path().join("v2.zip"));
    zip_release(&one, &big, "1.0");
    zip_release(&two, &big, "1.1");
    let first = store.put_file(&one, PutOptions::default()).unwrap();
    assert_eq!(first.kind, ContentKind::Zip);
    let second = store.put_file(&two, PutOptions::default()).unwrap();
    assert!(
        second.new_bytes < 64 * 1024,
        "{} new bytes",
        second.new_bytes
    );
    let mut back = Vec::new();
    store.get_to(&second.id, &mut back).unwrap();
    assert!(
        back == std::fs::read(&two).unwrap(),
        "the zip came back changed"
    );
    // From a stream a zip cannot be read out of order: it is stored whole, as binary chunks.
    let streamed = store
        .put_reader(std::fs::File::open(&two).unwrap(), PutOptions::default())
        .unwrap();
    assert_eq!(streamed.kind, ContentKind::Zip);
    let mut back = Vec::new();
    store.get_to(&streamed.id, &mut back).unwrap();
    assert!(back == std::fs::read(&two).unwrap());
}
