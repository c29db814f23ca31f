//! The package index: a requirement (`name` or `name==version`) resolved against a "simple"
//! index. Roost fetches `<index>/<normalized-name>/` asking for the PEP 691 JSON page (an index
//! that only has the PEP 503 HTML page answers that), picks the newest final version by PEP 440
//! (or the pinned one; pre-releases only when there is nothing else), a pure-Python wheel rather
//! than an sdist, downloads it with a size cap and checks its `sha256` when the index gives one.

use std::str::FromStr;

use bytes::Bytes;
use pep440_rs::Version;
use reqwest::header::{ACCEPT as ACCEPT_HEADER, CONTENT_TYPE};
use sha2::{Digest, Sha256};
use tracing::{debug, info};

use super::package::{InstallError, Limits};
use super::page::{normalize_name, parse_page, Listed, ACCEPT};

/// The largest project page read, in bytes.
const MAX_PAGE_BYTES: u64 = 8 << 20;

/// `name` or `name==version`, the version a PEP 440 one.
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
            || Version::from_str(v).is_err()
        {
            return Err(bad());
        }
    }
    Ok((name.to_owned(), version.map(str::to_owned)))
}

/// Picks the file to install: the pinned version (or the newest final one, else the newest),
/// a wheel rather than an sdist. Versions compare as PEP 440 says (`1.0 == 1.0.0`,
/// `1.0.dev1 < 1.0a1 < 1.0a2 < 1.0 < 1.0.post1 < 1.0.post10`); a file whose version is not a
/// PEP 440 one is left out.
pub fn pick<'a>(listed: &'a [Listed], name: &str, version: Option<&str>) -> Result<&'a Listed, InstallError> {
    let not_found = |what: String| InstallError::NotFound { name: name.to_owned(), what };
    let no_version = |v: &str| not_found(format!("version {v} (as a pure-Python wheel or a .tar.gz sdist)"));
    let pinned = match version {
        Some(v) => Some(Version::from_str(v).map_err(|_| no_version(v))?),
        None => None,
    };
    let candidates: Vec<(Version, &Listed)> = listed
        .iter()
        .filter_map(|l| match Version::from_str(&l.version) {
            Ok(v) => Some((v, l)),
            Err(e) => {
                debug!(file = %l.filename, error = %e, "not a PEP 440 version; left out");
                None
            }
        })
        .filter(|(v, _)| pinned.as_ref().is_none_or(|p| v == p))
        .collect();
    if candidates.is_empty() {
        return Err(match version {
            Some(v) => no_version(v),
            None => not_found("pure-Python wheel or .tar.gz sdist".into()),
        });
    }
    let any_final = candidates.iter().any(|(v, _)| !v.any_prerelease());
    candidates
        .into_iter()
        .filter(|(v, _)| pinned.is_some() || !any_final || !v.any_prerelease())
        .max_by(|(va, a), (vb, b)| va.cmp(vb).then(a.wheel.cmp(&b.wheel)))
        .map(|(_, l)| l)
        .ok_or_else(|| not_found("installable file".into()))
}

/// Resolves `spec` in the index at `index` and downloads the chosen file, checking its size
/// and SHA-256. Returns what was chosen (`name version`), the file name and its bytes.
pub async fn fetch(index: &str, spec: &str, limits: Limits) -> Result<(String, String, Bytes), InstallError> {
    let (name, version) = parse_spec(spec)?;
    let http = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(120))
        .build()
        .map_err(|e| InstallError::Index(e.to_string()))?;
    let page_url = format!("{}/{}/", index.trim_end_matches('/'), normalize_name(&name));
    let base = reqwest::Url::parse(&page_url).map_err(|e| InstallError::Index(format!("{page_url}: {e}")))?;
    let resp = http
        .get(base.clone())
        .header(ACCEPT_HEADER, ACCEPT)
        .send()
        .await
        .map_err(|e| InstallError::Index(format!("{page_url}: {e}")))?;
    if resp.status() == reqwest::StatusCode::NOT_FOUND {
        return Err(InstallError::NotFound { name, what: "project page".into() });
    }
    if !resp.status().is_success() {
        return Err(InstallError::Index(format!("{page_url} answered {}", resp.status())));
    }
    let content_type = resp.headers().get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).map(str::to_owned);
    debug!(url = %page_url, content_type = content_type.as_deref().unwrap_or(""), "read the project page");
    let page = read_capped(resp, MAX_PAGE_BYTES, &page_url).await?;
    let listed = parse_page(content_type.as_deref(), &String::from_utf8_lossy(&page), &name)?;
    let chosen = pick(&listed, &name, version.as_deref())?.clone();
    let url = base.join(&chosen.url).map_err(|e| InstallError::Index(format!("{}: {e}", chosen.url)))?;
    info!(package = %name, version = %chosen.version, file = %chosen.filename, "downloading");
    let resp = http.get(url.clone()).send().await.map_err(|e| InstallError::Index(format!("{url}: {e}")))?;
    if !resp.status().is_success() {
        return Err(InstallError::Index(format!("{url} answered {}", resp.status())));
    }
    if resp.content_length().is_some_and(|n| n > limits.max_download_bytes) {
        return Err(limits.too_big_download(&chosen.filename));
    }
    let data = read_capped(resp, limits.max_download_bytes, &chosen.filename).await.map_err(|e| match e {
        InstallError::TooLarge(_) => limits.too_big_download(&chosen.filename),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::boards::install::page::parse_project_page;

    fn v(s: &str) -> Version {
        Version::from_str(s).unwrap()
    }

    /// A listing of one sdist per version.
    fn sdists(versions: &[&str]) -> Vec<Listed> {
        let file = |v: &str| format!("p-{v}.tar.gz");
        let listed = |v: &&str| Listed {
            filename: file(v),
            url: file(v),
            sha256: None,
            version: v.to_string(),
            wheel: false,
        };
        versions.iter().map(listed).collect()
    }

    #[test]
    fn specs_parse_and_bad_ones_are_refused() {
        assert_eq!(parse_spec("mypkg").unwrap(), ("mypkg".into(), None));
        assert_eq!(parse_spec("mypkg==1.0").unwrap(), ("mypkg".into(), Some("1.0".into())));
        assert!(parse_spec("../x").is_err());
        assert!(parse_spec("x==").is_err());
        assert!(parse_spec("x>=1").is_err());
        assert!(parse_spec("x==latest").is_err(), "not a PEP 440 version");
        assert_eq!(parse_spec("x==1.0.post10").unwrap().1.as_deref(), Some("1.0.post10"));
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
        assert!(v("1.10") > v("1.9"));
        assert!(v("1.0") == v("1.0.0"));
        assert!(v("2.0rc1") < v("2.0"));
        assert!(v("2.0.post1") > v("2.0"));
    }

    #[test]
    fn version_suffixes_order_by_number_and_kind_not_as_text() {
        assert!(v("1.0.post10") > v("1.0.post9"));
        assert!(v("1.0a10") > v("1.0a9"));
        assert!(v("1.0rc10") > v("1.0rc9"));
        assert!(v("1.0.dev10") > v("1.0.dev9"));
        assert!(v("1.0.dev1") < v("1.0a1"));
        assert!(v("1.0a1") < v("1.0b1") && v("1.0b1") < v("1.0rc1") && v("1.0rc1") < v("1.0"));
        assert!(v("1.0") < v("1.0+local") && v("1.0+local") < v("1.0.post1"));
        assert!(v("1!0.1") > v("2.0"), "the epoch comes first");
        assert!(v("v1.0") == v("1.0") && v("1.0-1") == v("1.0.post1"), "alternative spellings");
    }

    #[test]
    fn pick_follows_pep_440_order() {
        let newest = |versions: &[&str]| pick(&sdists(versions), "p", None).unwrap().version.clone();
        assert_eq!(newest(&["1.0.post9", "1.0.post10", "1.0"]), "1.0.post10");
        assert_eq!(newest(&["2.0a9", "2.0a10"]), "2.0a10", "only pre-releases: the newest of them");
        assert_eq!(newest(&["3.0a1", "3.0.dev1"]), "3.0a1");
        assert_eq!(newest(&["1.0", "2.0a1", "2.0.dev5"]), "1.0", "a final one beats newer pre-releases");
        assert_eq!(newest(&["1.0", "1.0.1.dev1"]), "1.0", "a dev release is not final");
        assert_eq!(newest(&["1.0", "not-a-version", "0.5"]), "1.0");
        let listed = sdists(&["1.0.post9", "1.0.post10", "1.0.0"]);
        assert_eq!(pick(&listed, "p", Some("1.0.POST9")).unwrap().version, "1.0.post9");
        assert_eq!(pick(&listed, "p", Some("1.0")).unwrap().version, "1.0.0");
        let err = pick(&listed, "p", Some("1.0.post1")).unwrap_err();
        assert!(err.to_string().contains("version 1.0.post1"), "{err}");
    }
}
