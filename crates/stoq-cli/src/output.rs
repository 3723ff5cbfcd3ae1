//! Where `stoq get` writes: a regular file (through `FILE.part`, renamed into place when
//! whole, so a failed download never leaves a broken file and a repeated one resumes), a file
//! that is not a regular one (a device such as `/dev/null`, a FIFO: written in place, never
//! replaced), or standard output (no `-o`, or `-o -`).

use std::path::{Path, PathBuf};

/// Where a download goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// Standard output.
    Stdout,
    /// Something that is not a regular file: written into as it is.
    InPlace(PathBuf),
    /// A regular file (existing or not): written as `FILE.part`, then renamed.
    File(PathBuf),
}

/// The target `-o` names.
pub fn target(output: Option<&Path>) -> Target {
    match output {
        None => Target::Stdout,
        Some(p) if p == Path::new("-") => Target::Stdout,
        Some(p) if std::fs::metadata(p).is_ok_and(|m| !m.is_file() && !m.is_dir()) => {
            Target::InPlace(p.to_path_buf())
        }
        Some(p) => Target::File(p.to_path_buf()),
    }
}

/// Opens a target that is written in place.
pub fn open_in_place(path: &Path) -> std::io::Result<std::fs::File> {
    std::fs::OpenOptions::new().write(true).open(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_and_dash_are_not_replaced() {
        assert_eq!(target(None), Target::Stdout);
        assert_eq!(target(Some(Path::new("-"))), Target::Stdout);
        assert_eq!(
            target(Some(Path::new("/dev/null"))),
            Target::InPlace(PathBuf::from("/dev/null"))
        );
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("out.bin");
        assert_eq!(target(Some(&file)), Target::File(file.clone()));
        std::fs::write(&file, b"x").unwrap();
        assert_eq!(target(Some(&file)), Target::File(file));
    }
}
