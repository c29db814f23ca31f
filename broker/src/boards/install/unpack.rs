//! Unpacking: a local `.py` module, a directory (a tar made by the CLI), a wheel or an sdist,
//! turned into the importable files boards get under `lib/`. Metadata, tests and build files are
//! dropped; absolute paths, `..` components and links are refused; unpacked size and file count
//! are capped while reading, before anything is kept.

use std::collections::BTreeMap;
use std::io::Read;

use bytes::Bytes;

use super::package::{InstallError, Limits, LocalKind, Package};

/// Unpacks a local or downloaded package into the files boards get under `lib/`.
pub fn unpack(kind: LocalKind, filename: &str, data: &[u8], limits: Limits) -> Result<Package, InstallError> {
    if data.len() as u64 > limits.max_download_bytes {
        return Err(limits.too_big_download(filename));
    }
    let label = filename.to_owned();
    let files = match kind {
        LocalKind::Py => {
            let ok = filename.ends_with(".py")
                && roost_core::board::validate_path(filename).is_ok()
                && !filename.contains('/');
            if !ok {
                return Err(InstallError::BadArchive {
                    file: filename.into(),
                    why: "a module must be a plain file name ending in .py".into(),
                });
            }
            BTreeMap::from([(filename.to_owned(), Bytes::copy_from_slice(data))])
        }
        LocalKind::Dir => {
            if roost_core::board::validate_path(filename).is_err() || filename.contains('/') {
                return Err(InstallError::BadArchive {
                    file: filename.into(),
                    why: "bad directory name".into(),
                });
            }
            let all = read_tar(filename, data, limits)?;
            let files: BTreeMap<String, Bytes> = all
                .into_iter()
                .filter(|(p, _)| !junk(p))
                .map(|(p, d)| (format!("{filename}/{p}"), d))
                .collect();
            if files.is_empty() {
                return Err(InstallError::Empty(filename.into()));
            }
            files
        }
        LocalKind::Wheel => importable(filename, read_zip(filename, data, limits)?, true)?,
        LocalKind::Sdist => {
            let tar = flate2::read::GzDecoder::new(data);
            let all = read_tar_from(filename, tar, limits)?;
            // An sdist holds one top directory (`name-version/`); a `src/` layout moves the code down.
            let mut stripped: BTreeMap<String, Bytes> = BTreeMap::new();
            for (p, d) in all {
                if let Some((_, rest)) = p.split_once('/') {
                    stripped.insert(rest.to_owned(), d);
                }
            }
            let root_has_code = stripped.keys().any(|p| keep_top(p, false).is_some_and(|top| top != "src"));
            if !root_has_code && stripped.keys().any(|p| p.starts_with("src/")) {
                stripped = stripped
                    .into_iter()
                    .filter_map(|(p, d)| p.strip_prefix("src/").map(|r| (r.to_owned(), d)))
                    .collect();
            }
            importable(filename, stripped, false)?
        }
    };
    for path in files.keys() {
        roost_core::board::validate_path(&format!("lib/{path}"))
            .map_err(|e| InstallError::BadArchive { file: filename.into(), why: e.to_string() })?;
    }
    Ok(Package { label, files })
}

/// Directories at the top of a distribution that are never importable code.
const NOT_CODE_DIRS: &[&str] = &[
    "tests",
    "test",
    "testing",
    "docs",
    "doc",
    "examples",
    "example",
    "benchmarks",
    "build",
    "dist",
    "scripts",
];
/// Top-level modules that are build or test machinery.
const NOT_CODE_FILES: &[&str] = &["setup.py", "conftest.py", "noxfile.py", "fabfile.py", "tasks.py"];

/// The top-level entry that keeps `path`, if any: `module.py`, or `package/` for files under an
/// importable top-level directory.
fn keep_top(path: &str, wheel: bool) -> Option<&str> {
    match path.split_once('/') {
        None => {
            let stem = path.strip_suffix(".py")?;
            (is_identifier(stem) && !NOT_CODE_FILES.contains(&path)).then_some(path)
        }
        Some((top, _)) => {
            let skip = top.ends_with(".dist-info")
                || top.ends_with(".egg-info")
                || top.ends_with(".data")
                || NOT_CODE_DIRS.contains(&top)
                || !is_identifier(top);
            // In an sdist a code directory must hold Python; a wheel's top level is what installs.
            (!skip && (wheel || path.ends_with(".py"))).then_some(top)
        }
    }
}

fn is_identifier(s: &str) -> bool {
    s.starts_with(|c: char| c.is_alphabetic() || c == '_')
        && s.chars().all(|c| c.is_alphanumeric() || c == '_')
}

/// Files no board needs: caches, compiled files, nested test directories, dot files.
fn junk(path: &str) -> bool {
    path.split('/').any(|c| c == "__pycache__" || c.starts_with('.')) || path.ends_with(".pyc")
}

fn importable(
    file: &str,
    all: BTreeMap<String, Bytes>,
    wheel: bool,
) -> Result<BTreeMap<String, Bytes>, InstallError> {
    let tops: std::collections::BTreeSet<String> =
        all.keys().filter_map(|p| keep_top(p, wheel)).map(str::to_owned).collect();
    let files: BTreeMap<String, Bytes> = all
        .into_iter()
        .filter(|(p, _)| {
            let top = p.split('/').next().unwrap_or_default();
            tops.contains(if p.contains('/') { top } else { p.as_str() })
        })
        .filter(|(p, _)| !junk(p) && !p.split('/').skip(1).any(|c| c == "tests" || c == "test"))
        .collect();
    if files.is_empty() {
        return Err(InstallError::Empty(file.into()));
    }
    Ok(files)
}

/// Checks an archive member's name: relative, no `..`, no backslashes.
fn safe_member(file: &str, name: &str) -> Result<String, InstallError> {
    let unsafe_ = |why| InstallError::Unsafe { file: file.into(), member: name.into(), why };
    if name.starts_with('/') || name.contains('\\') || name.get(1..2) == Some(":") {
        return Err(unsafe_("absolute path"));
    }
    let mut parts = Vec::new();
    for c in name.split('/') {
        match c {
            "" | "." => {}
            ".." => return Err(unsafe_("'..' component")),
            c => parts.push(c),
        }
    }
    Ok(parts.join("/"))
}

struct Budget<'a> {
    file: &'a str,
    limits: Limits,
    bytes: u64,
    files: usize,
}

impl Budget<'_> {
    fn take(&mut self, reader: impl Read, size_hint: u64) -> Result<Bytes, InstallError> {
        self.files += 1;
        if self.files > self.limits.max_files {
            return Err(InstallError::TooLarge(format!(
                "{} holds more than boards.max_package_files ({}) files",
                self.file, self.limits.max_files
            )));
        }
        let room = self.limits.max_unpacked_bytes - self.bytes;
        let too_big = || {
            InstallError::TooLarge(format!(
                "{} unpacks to more than boards.max_package_unpacked_bytes ({} bytes)",
                self.file, self.limits.max_unpacked_bytes
            ))
        };
        if size_hint > room {
            return Err(too_big());
        }
        let mut buf = Vec::new();
        reader
            .take(room + 1)
            .read_to_end(&mut buf)
            .map_err(|e| InstallError::BadArchive { file: self.file.into(), why: e.to_string() })?;
        if buf.len() as u64 > room {
            return Err(too_big());
        }
        self.bytes += buf.len() as u64;
        Ok(Bytes::from(buf))
    }
}

fn read_zip(file: &str, data: &[u8], limits: Limits) -> Result<BTreeMap<String, Bytes>, InstallError> {
    let bad = |e: zip::result::ZipError| InstallError::BadArchive { file: file.into(), why: e.to_string() };
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(data)).map_err(bad)?;
    let mut budget = Budget { file, limits, bytes: 0, files: 0 };
    let mut out = BTreeMap::new();
    for i in 0..archive.len() {
        let entry = archive.by_index(i).map_err(bad)?;
        let name = entry.name().map_err(bad)?.into_owned();
        let path = safe_member(file, &name)?;
        if entry.is_dir() || path.is_empty() {
            continue;
        }
        if entry.is_symlink() {
            return Err(InstallError::Unsafe { file: file.into(), member: name, why: "symbolic link" });
        }
        let size = entry.size();
        let data = budget.take(entry, size)?;
        out.insert(path, data);
    }
    Ok(out)
}

fn read_tar(file: &str, data: &[u8], limits: Limits) -> Result<BTreeMap<String, Bytes>, InstallError> {
    read_tar_from(file, data, limits)
}

fn read_tar_from(
    file: &str,
    reader: impl Read,
    limits: Limits,
) -> Result<BTreeMap<String, Bytes>, InstallError> {
    use tar::EntryType;
    let bad = |e: std::io::Error| InstallError::BadArchive { file: file.into(), why: e.to_string() };
    let mut archive = tar::Archive::new(reader);
    let mut budget = Budget { file, limits, bytes: 0, files: 0 };
    let mut out = BTreeMap::new();
    for entry in archive.entries().map_err(bad)? {
        let entry = entry.map_err(bad)?;
        let raw = entry.path_bytes();
        let name = String::from_utf8_lossy(&raw).into_owned();
        let path = safe_member(file, &name)?;
        match entry.header().entry_type() {
            EntryType::Regular | EntryType::Continuous => {}
            EntryType::Directory
            | EntryType::XHeader
            | EntryType::XGlobalHeader
            | EntryType::GNULongName
            | EntryType::GNULongLink => continue,
            EntryType::Symlink | EntryType::Link => {
                return Err(InstallError::Unsafe { file: file.into(), member: name, why: "link" })
            }
            _ => {
                return Err(InstallError::Unsafe {
                    file: file.into(),
                    member: name,
                    why: "not a regular file",
                })
            }
        }
        if path.is_empty() {
            continue;
        }
        let size = entry.header().size().unwrap_or(0);
        let data = budget.take(entry, size)?;
        out.insert(path, data);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits =
        Limits { max_download_bytes: 1 << 20, max_unpacked_bytes: 1 << 20, max_files: 100 };

    fn tar_gz(members: &[(&str, &[u8])]) -> Vec<u8> {
        let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        let mut b = tar::Builder::new(gz);
        for (name, data) in members {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            // Raw bytes: `set_path` itself refuses `..`.
            let raw = &mut h.as_old_mut().name;
            raw[..name.len()].copy_from_slice(name.as_bytes());
            h.set_cksum();
            b.append(&h, *data).unwrap();
        }
        b.into_inner().unwrap().finish().unwrap()
    }

    #[test]
    fn sdists_keep_only_importable_code() {
        let sdist = tar_gz(&[
            ("mypkg-1.0/setup.py", b"setup()"),
            ("mypkg-1.0/PKG-INFO", b"meta"),
            ("mypkg-1.0/mypkg/__init__.py", b"x = 1"),
            ("mypkg-1.0/mypkg/tests/test_x.py", b"t"),
            ("mypkg-1.0/mypkg/__pycache__/a.pyc", b"c"),
            ("mypkg-1.0/tests/test_y.py", b"t"),
            ("mypkg-1.0/mypkg.egg-info/PKG-INFO", b"m"),
            ("mypkg-1.0/helper.py", b"h"),
        ]);
        let p = unpack(LocalKind::Sdist, "mypkg-1.0.tar.gz", &sdist, LIMITS).unwrap();
        assert_eq!(p.files.keys().collect::<Vec<_>>(), ["helper.py", "mypkg/__init__.py"]);
    }

    #[test]
    fn src_layouts_are_found() {
        let sdist = tar_gz(&[("p-1/pyproject.toml", b""), ("p-1/src/p/__init__.py", b"")]);
        let p = unpack(LocalKind::Sdist, "p-1.tar.gz", &sdist, LIMITS).unwrap();
        assert_eq!(p.files.keys().collect::<Vec<_>>(), ["p/__init__.py"]);
    }

    #[test]
    fn traversal_and_caps_are_refused() {
        let evil = tar_gz(&[("p-1/p/__init__.py", b""), ("p-1/../../evil.py", b"")]);
        let e = unpack(LocalKind::Sdist, "p-1.tar.gz", &evil, LIMITS).unwrap_err();
        assert!(matches!(e, InstallError::Unsafe { .. }), "{e}");
        let abs = tar_gz(&[("/etc/x.py", b"")]);
        assert!(matches!(
            unpack(LocalKind::Sdist, "x.tar.gz", &abs, LIMITS),
            Err(InstallError::Unsafe { .. })
        ));
        let big = tar_gz(&[("p-1/p/__init__.py", &[0u8; 2000])]);
        let small = Limits { max_unpacked_bytes: 1000, ..LIMITS };
        let e = unpack(LocalKind::Sdist, "p-1.tar.gz", &big, small).unwrap_err();
        assert!(e.to_string().contains("max_package_unpacked_bytes"), "{e}");
        let many = tar_gz(&[("p-1/p/a.py", b""), ("p-1/p/b.py", b"")]);
        let e = unpack(LocalKind::Sdist, "p-1.tar.gz", &many, Limits { max_files: 1, ..LIMITS }).unwrap_err();
        assert!(e.to_string().contains("max_package_files"), "{e}");
    }

    #[test]
    fn wheels_drop_metadata() {
        use std::io::Write;
        let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        let opts =
            zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
        for (name, data) in
            [("p/__init__.py", "a"), ("p/sub/m.py", "b"), ("p-1.dist-info/METADATA", "m"), ("top.py", "t")]
        {
            w.start_file(name, opts).unwrap();
            w.write_all(data.as_bytes()).unwrap();
        }
        let bytes = w.finish().unwrap().into_inner();
        let p = unpack(LocalKind::Wheel, "p-1-py3-none-any.whl", &bytes, LIMITS).unwrap();
        assert_eq!(p.files.keys().collect::<Vec<_>>(), ["p/__init__.py", "p/sub/m.py", "top.py"]);
        assert_eq!(&p.files["p/sub/m.py"][..], b"b");
    }
}
