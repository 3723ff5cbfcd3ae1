//! `stoq put --gunzip`: publish what a gzip file holds instead of its compressed bytes.
//!
//! A `.tar.gz` dedups nothing across versions (a small change reshuffles the whole deflate
//! stream), while the tar inside dedups member by member. The decompressed bytes go to a
//! temporary file (the store and the upload read from a file, so a zip inside is cut at its
//! members too), which is removed when done. Users then get the tar, not the gzip bytes.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// A decompressed copy of a file, removed when dropped.
pub struct Decompressed {
    path: PathBuf,
}

impl Decompressed {
    /// Where the decompressed bytes are.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for Decompressed {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Decompresses the gzip file `file` (every member of it) into a temporary file.
pub fn decompressed(file: &Path) -> Result<Decompressed> {
    let input = File::open(file).with_context(|| format!("cannot read {}", file.display()))?;
    let name = file
        .file_name()
        .map_or("input".into(), |n| n.to_string_lossy().into_owned());
    let path = std::env::temp_dir().join(format!(".stoq-gunzip-{}-{name}", std::process::id()));
    let out = Decompressed { path };
    let mut writer = File::create(out.path())
        .with_context(|| format!("cannot write {}", out.path().display()))?;
    io::copy(&mut flate2::read::MultiGzDecoder::new(input), &mut writer)
        .map_err(|e| crate::usage::usage(format!("{} is not a gzip file: {e}", file.display())))?;
    writer.sync_all()?;
    Ok(out)
}
