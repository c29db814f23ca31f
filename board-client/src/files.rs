//! The board's files: every protocol path resolved inside the board's root directory (`..`,
//! absolute paths and symbolic links that lead out are refused), the `fs` actions, and the
//! upload rules of `docs/board-protocol.md` (a temporary `.part` file per destination and
//! content, written chunk by chunk, renamed into place only once the whole file's SHA-256
//! matches). Plain blocking I/O: the agent runs it off its async threads.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use base64::Engine as _;
use roost_core::board::{self, FsEntry, FsKind, UploadChunk};
use sha2::{Digest, Sha256};
use thiserror::Error;

/// Why a file operation failed; the message goes back to the operator as the result's `error`.
#[derive(Debug, Error)]
pub enum FileError {
    #[error(transparent)]
    Protocol(#[from] board::ProtocolError),
    #[error("path {0:?} leaves the board's root directory through a symbolic link")]
    Escapes(String),
    #[error("no such file or directory: {0}")]
    NotFound(String),
    #[error("{0}: not a directory")]
    NotADirectory(String),
    #[error("{0}: is a directory")]
    IsADirectory(String),
    #[error("upload of {size} bytes is over this board's limit of {limit} bytes")]
    TooLarge { size: u64, limit: u64 },
    #[error("chunk sha256 mismatch at offset {0}")]
    ChunkMismatch(u64),
    #[error("file sha256 mismatch")]
    FileMismatch,
    #[error("{path}: {source}")]
    Io { path: String, source: io::Error },
}

fn io_err(path: &str) -> impl FnOnce(io::Error) -> FileError + '_ {
    move |source| match source.kind() {
        io::ErrorKind::NotFound => FileError::NotFound(path.to_owned()),
        _ => FileError::Io { path: path.to_owned(), source },
    }
}

/// A board's root directory.
#[derive(Debug, Clone)]
pub struct Root {
    dir: PathBuf,
}

/// What an upload chunk did.
#[derive(Debug, PartialEq, Eq)]
pub enum ChunkOutcome {
    /// The temporary file now holds the file's bytes `0..offset`.
    Progress(u64),
    /// The last chunk: the file is verified and in place.
    Done,
}

impl Root {
    /// Opens (creating it if needed) the root directory.
    pub fn open(dir: &Path) -> io::Result<Root> {
        fs::create_dir_all(dir)?;
        Ok(Root { dir: dir.canonicalize()? })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Resolves a protocol path to a path inside the root. With `follow_last`, a symbolic link
    /// in the last component must stay inside the root too; without, the last component is
    /// taken as it is (`rm` of a link removes the link; an upload replaces it).
    pub fn resolve(&self, path: &str, follow_last: bool) -> Result<PathBuf, FileError> {
        if board::is_root_path(path) {
            return Ok(self.dir.clone());
        }
        board::validate_path(path)?;
        let full = self.dir.join(path);
        let mut probe =
            if follow_last { full.clone() } else { full.parent().unwrap_or(&self.dir).to_owned() };
        // The deepest part of the path that exists, with every link in it resolved.
        loop {
            if fs::symlink_metadata(&probe).is_ok() {
                let real = probe.canonicalize().map_err(|_| FileError::Escapes(path.to_owned()))?;
                if !real.starts_with(&self.dir) {
                    return Err(FileError::Escapes(path.to_owned()));
                }
                break;
            }
            match probe.parent() {
                Some(p) if p.starts_with(&self.dir) => probe = p.to_owned(),
                _ => break,
            }
        }
        Ok(full)
    }

    /// `fs ls`: the entries of a directory, sorted by name.
    pub fn ls(&self, path: &str) -> Result<Vec<FsEntry>, FileError> {
        let dir = self.resolve(path, true)?;
        let meta = fs::metadata(&dir).map_err(io_err(path))?;
        if !meta.is_dir() {
            return Err(FileError::NotADirectory(path.to_owned()));
        }
        let mut entries = Vec::new();
        for e in fs::read_dir(&dir).map_err(io_err(path))? {
            let e = e.map_err(io_err(path))?;
            let name = e.file_name().to_string_lossy().into_owned();
            entries.push(entry(name, &e.path()));
        }
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(entries)
    }

    /// `fs stat`.
    pub fn stat(&self, path: &str) -> Result<FsEntry, FileError> {
        let full = self.resolve(path, true)?;
        fs::symlink_metadata(&full).map_err(io_err(path))?;
        let name = if board::is_root_path(path) {
            ".".to_owned()
        } else {
            path.rsplit('/').next().unwrap_or(path).to_owned()
        };
        Ok(entry(name, &full))
    }

    /// `fs cat`: opens the file for reading.
    pub fn open_file(&self, path: &str) -> Result<File, FileError> {
        let full = self.resolve(path, true)?;
        if fs::metadata(&full).map_err(io_err(path))?.is_dir() {
            return Err(FileError::IsADirectory(path.to_owned()));
        }
        File::open(&full).map_err(io_err(path))
    }

    /// `fs rm`: a file, a link, or an empty directory.
    pub fn rm(&self, path: &str) -> Result<(), FileError> {
        let full = self.resolve(path, false)?;
        let meta = fs::symlink_metadata(&full).map_err(io_err(path))?;
        if meta.is_dir() {
            fs::remove_dir(&full).map_err(io_err(path))
        } else {
            fs::remove_file(&full).map_err(io_err(path))
        }
    }

    /// `fs mkdir`: with its parents; fine if it exists.
    pub fn mkdir(&self, path: &str) -> Result<(), FileError> {
        let full = self.resolve(path, true)?;
        fs::create_dir_all(&full).map_err(io_err(path))
    }

    /// One upload chunk, by the rules of the protocol's upload flow.
    pub fn upload_chunk(&self, chunk: &UploadChunk, limit: Option<u64>) -> Result<ChunkOutcome, FileError> {
        let path = chunk.path.as_str();
        if let Some(limit) = limit {
            if chunk.total_size > limit {
                return Err(FileError::TooLarge { size: chunk.total_size, limit });
            }
        }
        let dest = self.resolve(path, false)?;
        let dir = dest.parent().unwrap_or(&self.dir).to_owned();
        fs::create_dir_all(&dir).map_err(io_err(path))?;
        // Created directories are real ones, but check the result again: a link may have
        // appeared in the meantime.
        self.resolve(path, false)?;
        if fs::symlink_metadata(&dest).is_ok_and(|m| m.is_dir()) {
            return Err(FileError::IsADirectory(path.to_owned()));
        }
        let file_name = dest.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let part = dir.join(format!(".{file_name}.{}.part", &chunk.file_sha256[..16]));
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&part)
            .map_err(io_err(path))?;
        let held = file.metadata().map_err(io_err(path))?.len();
        if chunk.offset > held {
            return Ok(ChunkOutcome::Progress(held));
        }
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(&chunk.data)
            .map_err(|_| board::ProtocolError::BadBase64)?;
        if hex::encode(Sha256::digest(&bytes)) != chunk.chunk_sha256 {
            file.set_len(chunk.offset).map_err(io_err(path))?;
            return Err(FileError::ChunkMismatch(chunk.offset));
        }
        file.set_len(chunk.offset).map_err(io_err(path))?;
        file.seek(SeekFrom::Start(chunk.offset)).map_err(io_err(path))?;
        file.write_all(&bytes).map_err(io_err(path))?;
        file.sync_data().map_err(io_err(path))?;
        let end = chunk.offset + bytes.len() as u64;
        if !chunk.last {
            return Ok(ChunkOutcome::Progress(end));
        }
        file.seek(SeekFrom::Start(0)).map_err(io_err(path))?;
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = file.read(&mut buf).map_err(io_err(path))?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
        }
        drop(file);
        if hex::encode(hasher.finalize()) != chunk.file_sha256 {
            let _ = fs::remove_file(&part);
            return Err(FileError::FileMismatch);
        }
        fs::rename(&part, &dest).map_err(io_err(path))?;
        if let Ok(d) = File::open(&dir) {
            let _ = d.sync_all();
        }
        Ok(ChunkOutcome::Done)
    }
}

fn entry(name: String, path: &Path) -> FsEntry {
    match fs::metadata(path) {
        Ok(m) if m.is_file() => FsEntry { name, kind: FsKind::File, size: Some(m.len()) },
        Ok(m) if m.is_dir() => FsEntry { name, kind: FsKind::Dir, size: None },
        _ => FsEntry { name, kind: FsKind::Other, size: None },
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::symlink;

    use super::*;

    fn chunk(path: &str, data: &[u8], offset: u64, whole: &[u8], last: bool) -> UploadChunk {
        UploadChunk {
            path: path.into(),
            offset,
            data: base64::engine::general_purpose::STANDARD.encode(data),
            chunk_sha256: hex::encode(Sha256::digest(data)),
            total_size: whole.len() as u64,
            file_sha256: hex::encode(Sha256::digest(whole)),
            last,
        }
    }

    #[test]
    fn uploads_land_only_after_the_whole_file_matches_and_resume_from_what_is_held() {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::open(dir.path()).unwrap();
        let whole = b"hello world!";
        assert_eq!(
            root.upload_chunk(&chunk("lib/a.txt", &whole[..6], 0, whole, false), None).unwrap(),
            ChunkOutcome::Progress(6)
        );
        assert!(!dir.path().join("lib/a.txt").exists());
        // A chunk past what is held writes nothing and reports what is held.
        assert_eq!(
            root.upload_chunk(&chunk("lib/a.txt", b"ld!", 9, whole, true), None).unwrap(),
            ChunkOutcome::Progress(6)
        );
        // A duplicate of the first chunk is harmless.
        assert_eq!(
            root.upload_chunk(&chunk("lib/a.txt", &whole[..6], 0, whole, false), None).unwrap(),
            ChunkOutcome::Progress(6)
        );
        assert_eq!(
            root.upload_chunk(&chunk("lib/a.txt", &whole[6..], 6, whole, true), None).unwrap(),
            ChunkOutcome::Done
        );
        assert_eq!(fs::read(dir.path().join("lib/a.txt")).unwrap(), whole);
        let leftovers: Vec<_> =
            fs::read_dir(dir.path().join("lib")).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(leftovers.len(), 1, "{leftovers:?}");
    }

    #[test]
    fn a_corrupt_chunk_or_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::open(dir.path()).unwrap();
        let mut bad = chunk("a", b"abc", 0, b"abcdef", false);
        bad.chunk_sha256 = hex::encode(Sha256::digest(b"xyz"));
        assert!(matches!(root.upload_chunk(&bad, None), Err(FileError::ChunkMismatch(0))));
        let wrong_whole = chunk("a", b"abc", 0, b"abd", true);
        let mut wrong_whole = wrong_whole;
        wrong_whole.file_sha256 = hex::encode(Sha256::digest(b"zzz"));
        assert!(matches!(root.upload_chunk(&wrong_whole, None), Err(FileError::FileMismatch)));
        assert!(!dir.path().join("a").exists());
    }

    #[test]
    fn uploads_over_the_limit_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::open(dir.path()).unwrap();
        let err = root.upload_chunk(&chunk("big", b"abcd", 0, b"abcd", true), Some(3)).unwrap_err();
        assert_eq!(err.to_string(), "upload of 4 bytes is over this board's limit of 3 bytes");
    }

    #[test]
    fn paths_stay_inside_the_root() {
        let outside = tempfile::tempdir().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let root = Root::open(dir.path()).unwrap();
        symlink(outside.path(), dir.path().join("out")).unwrap();
        symlink("/etc/passwd", dir.path().join("pw")).unwrap();
        fs::create_dir(dir.path().join("in")).unwrap();
        symlink(dir.path().join("in"), dir.path().join("in-link")).unwrap();
        for bad in ["../x", "/etc/passwd", "a/../../x"] {
            assert!(matches!(root.resolve(bad, true), Err(FileError::Protocol(_))), "{bad}");
        }
        assert!(matches!(root.resolve("out/x", false), Err(FileError::Escapes(_))));
        assert!(matches!(root.resolve("out/new/deeper", true), Err(FileError::Escapes(_))));
        assert!(matches!(root.resolve("pw", true), Err(FileError::Escapes(_))));
        assert!(matches!(root.open_file("pw"), Err(FileError::Escapes(_))));
        assert!(matches!(
            root.upload_chunk(&chunk("out/evil", b"x", 0, b"x", true), None),
            Err(FileError::Escapes(_))
        ));
        assert!(fs::read_dir(outside.path()).unwrap().next().is_none());
        root.resolve("in-link/x", true).unwrap();
        // Removing a link removes the link, not what it points to.
        root.rm("pw").unwrap();
        assert!(Path::new("/etc/passwd").exists());
    }

    #[test]
    fn fs_actions_work_and_fail_clearly() {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::open(dir.path()).unwrap();
        root.mkdir("lib/deep").unwrap();
        root.mkdir("lib/deep").unwrap();
        fs::write(dir.path().join("lib/a.py"), "print(1)\n").unwrap();
        let names: Vec<_> = root.ls("lib").unwrap().into_iter().map(|e| (e.name, e.kind, e.size)).collect();
        assert_eq!(names, [("a.py".into(), FsKind::File, Some(9)), ("deep".into(), FsKind::Dir, None)]);
        assert_eq!(root.ls("").unwrap().len(), 1);
        assert_eq!(root.stat("lib/a.py").unwrap().size, Some(9));
        assert_eq!(root.ls("nope").unwrap_err().to_string(), "no such file or directory: nope");
        assert_eq!(root.ls("lib/a.py").unwrap_err().to_string(), "lib/a.py: not a directory");
        root.rm("lib/a.py").unwrap();
        root.rm("lib/deep").unwrap();
        assert!(root.rm("lib/a.py").is_err());
    }
}
