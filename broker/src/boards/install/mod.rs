//! `install`: turns a package into the files boards get under `lib/`.
//!
//! A package is a local `.py` module, a local directory (sent by the CLI as a tar), a local
//! wheel or sdist, or a name (`name` or `name==version`) resolved from a PEP 503 "simple" index
//! (`[boards] package_index`): Roost fetches `<index>/<normalized-name>/`, picks the newest (or
//! the pinned) version, preferring a pure-Python wheel over an sdist, checks the `#sha256=`
//! fragment when the index gives one, and unpacks it here. Only importable files are kept: the
//! top-level packages and `.py` modules; metadata (`*.dist-info`, `*.egg-info`), tests,
//! `setup.py`, `pyproject.toml` and the like are dropped. Archives with absolute paths, `..`
//! components or (in tars) links are refused, and download size, unpacked size and file count
//! are capped. Nothing is sent to a board before the whole package is unpacked and checked.

use std::collections::BTreeMap;
use std::io::Read;

use bytes::Bytes;
use sha2::{Digest, Sha256};
use thiserror::Error;
use tracing::{debug, info};

/// Why a package cannot be installed.
#[derive(Debug, Error)]
pub enum InstallError {
    #[error(
        "no package index configured: set [boards] package_index (or ROOST__BOARDS__PACKAGE_INDEX) to a PEP 503 \"simple\" index URL, or install a local .py, directory, .whl or .tar.gz"
    )]
    NoIndex,
    #[error("bad package spec '{0}': give NAME or NAME==VERSION")]
    BadSpec(String),
    #[error("package index: {0}")]
    Index(String),
    #[error("package '{name}' has no {what} in the index")]
    NotFound { name: String, what: String },
    #[error("{file}: SHA-256 mismatch (the index says {expected}, the download is {actual}); nothing was installed")]
    HashMismatch { file: String, expected: String, actual: String },
    #[error("{0}")]
    TooLarge(String),
    #[error("{file}: unsafe archive member '{member}': {why}")]
    Unsafe { file: String, member: String, why: &'static str },
    #[error("{file}: {why}")]
    BadArchive { file: String, why: String },
    #[error("{0}: no importable modules or packages found in it")]
    Empty(String),
}

/// Caps applied while downloading and unpacking.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_download_bytes: u64,
    pub max_unpacked_bytes: u64,
    pub max_files: usize,
}

/// What a local package is (the CLI says; the body holds its bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LocalKind {
    /// One `.py` module.
    Py,
    /// A directory, as a tar made by the CLI.
    Dir,
    /// A `.whl`.
    Wheel,
    /// A `.tar.gz` sdist.
    Sdist,
}

/// A package ready to send: its files, relative to `lib/`.
#[derive(Debug, Clone)]
pub struct Package {
    /// What was installed (`mypkg 1.2 (mypkg-1.2-py3-none-any.whl)`, `tool.py`).
    pub label: String,
    pub files: BTreeMap<String, Bytes>,
}

impl Package {
    pub fn total_bytes(&self) -> u64 {
        self.files.values().map(|d| d.len() as u64).sum()
    }
}

/// PEP 503 name normalization: lowercase, runs of `-`, `_`, `.` become one `-`.
pub fn normalize_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut sep = false;
    for c in name.chars() {
        if matches!(c, '-' | '_' | '.') {
            sep = true;
        } else {
            if sep && !out.is_empty() {
                out.push('-');
            }
            sep = false;
            out.extend(c.to_lowercase());
        }
    }
    out
}

/// `name` or `name==version`.
pub fn parse_spec(spec: &str) -> Result<(String, Option<String>), InstallError> {
    let bad = || InstallError::BadSpec(spec.to_owned());
    let (name, version) = match spec.split_once("==") {
        Some((n, v)) => (n.trim(), Some(v.trim())),
        None => (spec.trim(), None),
    };
    let name_ok = !name.is_empty()
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && name.starts_with(|c: char| c.is_ascii_alphanumeric());
    if !name_ok {
        return Err(bad());
    }
    if let Some(v) = version {
        if v.is_empty()
            || !v.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '+' | '!' | '-' | '_'))
        {
            return Err(bad());
        }
    }
    Ok((name.to_owned(), version.map(str::to_owned)))
}

/// One distribution file listed by the index.
#[derive(Debug, Clone, PartialEq)]
pub struct Listed {
    pub filename: String,
    pub url: String,
    pub sha256: Option<String>,
    pub version: String,
    pub wheel: bool,
}

/// Parses a PEP 503 project page: every `<a href=...>` whose file is a pure-Python wheel or a
/// `.tar.gz` sdist of `name`. Yanked files (`data-yanked`) are skipped.
pub fn parse_project_page(page: &str, name: &str) -> Vec<Listed> {
    let want = normalize_name(name);
    let mut out = Vec::new();
    let lower = page.to_ascii_lowercase();
    let mut at = 0;
    while let Some(i) = lower[at..].find("<a ") {
        let start = at + i;
        let Some(end) = lower[start..].find('>') else { break };
        let tag = &page[start..start + end];
        at = start + end;
        if tag.to_ascii_lowercase().contains("data-yanked") {
            continue;
        }
        let Some(href) = attr(tag, "href") else { continue };
        let href = unescape(&href);
        let (path, fragment) = match href.split_once('#') {
            Some((p, f)) => (p, Some(f)),
            None => (href.as_str(), None),
        };
        let path = path.split('?').next().unwrap_or_default();
        let filename = percent_decode(path.rsplit('/').next().unwrap_or_default());
        let sha256 = fragment
            .and_then(|f| f.strip_prefix("sha256="))
            .map(|h| h.to_ascii_lowercase())
            .filter(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()));
        let Some((dist_name, version, wheel)) = classify(&filename) else { continue };
        if normalize_name(&dist_name) != want {
            continue;
        }
        out.push(Listed { filename, url: href.clone(), sha256, version, wheel });
    }
    out
}

fn attr(tag: &str, name: &str) -> Option<String> {
    let lower = tag.to_ascii_lowercase();
    let mut from = 0;
    while let Some(i) = lower[from..].find(name) {
        let pos = from + i;
        from = pos + name.len();
        let before_ok = pos > 0 && lower.as_bytes()[pos - 1].is_ascii_whitespace();
        let rest = lower[from..].trim_start();
        if !before_ok || !rest.starts_with('=') {
            continue;
        }
        let vstart = tag.len() - rest.len() + 1;
        let v = tag[vstart..].trim_start();
        return match v.chars().next() {
            Some(q @ ('"' | '\'')) => v[1..].split(q).next().map(str::to_owned),
            _ => v.split_whitespace().next().map(str::to_owned),
        };
    }
    None
}

fn unescape(s: &str) -> String {
    s.replace("&amp;", "&")
        .replace("&#61;", "=")
        .replace("&quot;", "\"")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `(name, version, is_wheel)` of a pure-Python wheel or a `.tar.gz` sdist; `None` otherwise.
pub fn classify(filename: &str) -> Option<(String, String, bool)> {
    if let Some(stem) = filename.strip_suffix(".whl") {
        let parts: Vec<&str> = stem.split('-').collect();
        if parts.len() != 5 && parts.len() != 6 {
            return None;
        }
        let (py, abi, plat) = (parts[parts.len() - 3], parts[parts.len() - 2], parts[parts.len() - 1]);
        let py3 = py.split('.').any(|t| t.starts_with("py3"));
        if !(py3 && abi == "none" && plat == "any") {
            return None;
        }
        return Some((parts[0].to_owned(), parts[1].to_owned(), true));
    }
    let stem = filename.strip_suffix(".tar.gz")?;
    let (name, version) = stem.rsplit_once('-')?;
    if name.is_empty() || !version.starts_with(|c: char| c.is_ascii_digit()) {
        return None;
    }
    Some((name.to_owned(), version.to_owned(), false))
}

/// An ordering key for versions: release numbers, then finals above pre-releases.
fn version_key(v: &str) -> (Vec<u64>, bool, String) {
    let v = v.trim_start_matches(['v', 'V']);
    let v = v.split_once('!').map_or(v, |(_, r)| r);
    let split = v.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(v.len());
    let (numbers, rest) = v.split_at(split);
    let mut release: Vec<u64> =
        numbers.split('.').filter(|p| !p.is_empty()).map(|p| p.parse().unwrap_or(u64::MAX)).collect();
    while release.last() == Some(&0) {
        release.pop();
    }
    let rest = rest.trim_start_matches(['.', '-', '_']).to_ascii_lowercase();
    let final_ = rest.is_empty() || rest.starts_with("post") || rest.starts_with('+');
    (release, final_, rest)
}

/// Picks the file to install: the pinned version (or the newest final one, else the newest),
/// a wheel rather than an sdist.
pub fn pick<'a>(listed: &'a [Listed], name: &str, version: Option<&str>) -> Result<&'a Listed, InstallError> {
    let candidates: Vec<&Listed> = match version {
        Some(v) => listed
            .iter()
            .filter(|l| version_key(&l.version) == version_key(v) && same_pre(&l.version, v))
            .collect(),
        None => listed.iter().collect(),
    };
    let not_found = |what: String| InstallError::NotFound { name: name.to_owned(), what };
    if candidates.is_empty() {
        return Err(not_found(match version {
            Some(v) => format!("version {v} (as a pure-Python wheel or a .tar.gz sdist)"),
            None => "pure-Python wheel or .tar.gz sdist".into(),
        }));
    }
    let any_final = candidates.iter().any(|l| version_key(&l.version).1);
    candidates
        .into_iter()
        .filter(|l| version.is_some() || !any_final || version_key(&l.version).1)
        .max_by(|a, b| version_key(&a.version).cmp(&version_key(&b.version)).then(a.wheel.cmp(&b.wheel)))
        .ok_or_else(|| not_found("installable file".into()))
}

fn same_pre(a: &str, b: &str) -> bool {
    version_key(a).2 == version_key(b).2
}

/// Resolves `spec` in the index at `index` and downloads the chosen file, checking its size
/// and SHA-256. Returns the file name and its bytes.
pub async fn fetch(index: &str, spec: &str, limits: Limits) -> Result<(String, String, Bytes), InstallError> {
    let (name, version) = parse_spec(spec)?;
    let http = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(120))
        .build()
        .map_err(|e| InstallError::Index(e.to_string()))?;
    let page_url = format!("{}/{}/", index.trim_end_matches('/'), normalize_name(&name));
    let base = reqwest::Url::parse(&page_url).map_err(|e| InstallError::Index(format!("{page_url}: {e}")))?;
    debug!(url = %page_url, "fetching the project page");
    let resp = http
        .get(base.clone())
        .header("accept", "text/html")
        .send()
        .await
        .map_err(|e| InstallError::Index(format!("{page_url}: {e}")))?;
    if resp.status() == reqwest::StatusCode::NOT_FOUND {
        return Err(InstallError::NotFound { name, what: "project page".into() });
    }
    if !resp.status().is_success() {
        return Err(InstallError::Index(format!("{page_url} answered {}", resp.status())));
    }
    let page = read_capped(resp, 8 << 20, &page_url).await?;
    let page = String::from_utf8_lossy(&page);
    let listed = parse_project_page(&page, &name);
    let chosen = pick(&listed, &name, version.as_deref())?.clone();
    let url = base.join(&chosen.url).map_err(|e| InstallError::Index(format!("{}: {e}", chosen.url)))?;
    info!(package = %name, version = %chosen.version, file = %chosen.filename, "downloading");
    let resp = http.get(url.clone()).send().await.map_err(|e| InstallError::Index(format!("{url}: {e}")))?;
    if !resp.status().is_success() {
        return Err(InstallError::Index(format!("{url} answered {}", resp.status())));
    }
    if resp.content_length().is_some_and(|n| n > limits.max_download_bytes) {
        return Err(too_big_download(&chosen.filename, limits));
    }
    let data = read_capped(resp, limits.max_download_bytes, &chosen.filename).await.map_err(|e| match e {
        InstallError::TooLarge(_) => too_big_download(&chosen.filename, limits),
        e => e,
    })?;
    if let Some(expected) = &chosen.sha256 {
        let actual = hex::encode(Sha256::digest(&data));
        if &actual != expected {
            return Err(InstallError::HashMismatch {
                file: chosen.filename,
                expected: expected.clone(),
                actual,
            });
        }
    }
    Ok((format!("{} {}", normalize_name(&name), chosen.version), chosen.filename, data))
}

fn too_big_download(file: &str, limits: Limits) -> InstallError {
    InstallError::TooLarge(format!(
        "{file} is larger than boards.max_package_bytes ({} bytes)",
        limits.max_download_bytes
    ))
}

async fn read_capped(mut resp: reqwest::Response, cap: u64, what: &str) -> Result<Bytes, InstallError> {
    let mut buf = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| InstallError::Index(format!("{what}: {e}")))? {
        if (buf.len() + chunk.len()) as u64 > cap {
            return Err(InstallError::TooLarge(format!("{what} is larger than {cap} bytes")));
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(Bytes::from(buf))
}

/// Unpacks a local or downloaded package into the files boards get under `lib/`.
pub fn unpack(kind: LocalKind, filename: &str, data: &[u8], limits: Limits) -> Result<Package, InstallError> {
    if data.len() as u64 > limits.max_download_bytes {
        return Err(too_big_download(filename, limits));
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
        let path = safe_member(file, entry.name())?;
        if entry.is_dir() || path.is_empty() {
            continue;
        }
        if entry.is_symlink() {
            return Err(InstallError::Unsafe {
                file: file.into(),
                member: entry.name().into(),
                why: "symbolic link",
            });
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

    #[test]
    fn names_are_normalized_like_pep_503() {
        assert_eq!(normalize_name("Foo.Bar__baz"), "foo-bar-baz");
        assert_eq!(normalize_name("micropython-umqtt.simple"), "micropython-umqtt-simple");
    }

    #[test]
    fn specs_parse_and_bad_ones_are_refused() {
        assert_eq!(parse_spec("mypkg").unwrap(), ("mypkg".into(), None));
        assert_eq!(parse_spec("mypkg==1.0").unwrap(), ("mypkg".into(), Some("1.0".into())));
        assert!(parse_spec("../x").is_err());
        assert!(parse_spec("x==").is_err());
        assert!(parse_spec("x>=1").is_err());
    }

    #[test]
    fn files_are_classified() {
        assert_eq!(classify("my_pkg-1.0-py3-none-any.whl"), Some(("my_pkg".into(), "1.0".into(), true)));
        assert_eq!(classify("my_pkg-1.0-py2.py3-none-any.whl"), Some(("my_pkg".into(), "1.0".into(), true)));
        assert_eq!(classify("my_pkg-1.0-cp312-cp312-linux_x86_64.whl"), None);
        assert_eq!(classify("my-pkg-1.0.tar.gz"), Some(("my-pkg".into(), "1.0".into(), false)));
        assert_eq!(classify("my-pkg-1.0.zip"), None);
    }

    #[test]
    fn the_newest_final_version_wins_and_wheels_beat_sdists() {
        let page = r#"<html><body>
            <a href="../../files/mypkg-0.9.tar.gz#sha256=aa">mypkg-0.9.tar.gz</a>
            <a href="../../files/mypkg-1.10.tar.gz">mypkg-1.10.tar.gz</a>
            <a href="../../files/mypkg-1.10-py3-none-any.whl#sha256=ABABABABABABABABABABABABABABABABABABABABABABABABABABABABABABABAB">w</a>
            <a href="../../files/mypkg-1.9-py3-none-any.whl">w</a>
            <a href="/files/mypkg-2.0rc1-py3-none-any.whl">w</a>
            <a data-yanked="" href="/files/mypkg-3.0-py3-none-any.whl">w</a>
            <A HREF='/files/other-5.0.tar.gz'>x</A>
        </body></html>"#;
        let listed = parse_project_page(page, "MyPkg");
        assert_eq!(listed.len(), 5, "{listed:?}");
        assert_eq!(listed[0].sha256, None, "a short hash is not a hash");
        let best = pick(&listed, "mypkg", None).unwrap();
        assert_eq!(best.filename, "mypkg-1.10-py3-none-any.whl");
        assert_eq!(best.sha256.as_deref(), Some(&*"ab".repeat(32)));
        assert_eq!(pick(&listed, "mypkg", Some("0.9")).unwrap().filename, "mypkg-0.9.tar.gz");
        assert_eq!(pick(&listed, "mypkg", Some("2.0rc1")).unwrap().filename, "mypkg-2.0rc1-py3-none-any.whl");
        assert!(matches!(pick(&listed, "mypkg", Some("4")), Err(InstallError::NotFound { .. })));
    }

    #[test]
    fn versions_order_numerically() {
        assert!(version_key("1.10") > version_key("1.9"));
        assert!(version_key("1.0") == version_key("1.0.0"));
        assert!(version_key("2.0rc1") < version_key("2.0"));
        assert!(version_key("2.0.post1") > version_key("2.0"));
    }

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
