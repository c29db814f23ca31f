//! A package index's project page, read into the files it lists: the JSON page of PEP 691
//! (`application/vnd.pypi.simple.v1+json`) or the HTML page of PEP 503, whichever the index
//! answers. Only pure-Python wheels and `.tar.gz` sdists of the project are kept; yanked files
//! (PEP 592) are left out, and a `sha256` is kept only when it is one.

use std::collections::BTreeMap;

use percent_encoding::percent_decode_str;
use serde::Deserialize;
use tracing::debug;

use super::package::InstallError;

/// The media type of a PEP 691 JSON project page, version 1.
pub const JSON_PAGE: &str = "application/vnd.pypi.simple.v1+json";

/// The `Accept` header of a project page request: the JSON page, else the HTML one (PEP 691's
/// content negotiation; an index that knows only PEP 503 answers HTML whatever is asked).
pub const ACCEPT: &str =
    "application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html;q=0.2, text/html;q=0.01";

/// One distribution file listed by the index.
#[derive(Debug, Clone, PartialEq)]
pub struct Listed {
    pub filename: String,
    pub url: String,
    pub sha256: Option<String>,
    pub version: String,
    pub wheel: bool,
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

/// Reads a project page of `name` by its `Content-Type`: the PEP 691 JSON page, anything else
/// as the PEP 503 HTML page.
pub fn parse_page(content_type: Option<&str>, page: &str, name: &str) -> Result<Vec<Listed>, InstallError> {
    let json = content_type.is_some_and(|ct| ct.trim().to_ascii_lowercase().starts_with(JSON_PAGE));
    if json {
        parse_json_page(page, name)
    } else {
        Ok(parse_project_page(page, name))
    }
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
        let filename = percent_decode_str(path.rsplit('/').next().unwrap_or_default()).decode_utf8_lossy();
        let sha256 = fragment.and_then(|f| f.strip_prefix("sha256="));
        out.extend(listing(&want, &filename, &href, sha256));
    }
    out
}

/// A PEP 691 project page, version 1.x: what Roost reads of it.
#[derive(Debug, Deserialize)]
struct JsonPage {
    meta: JsonMeta,
    files: Vec<JsonFile>,
}

#[derive(Debug, Deserialize)]
struct JsonMeta {
    #[serde(rename = "api-version")]
    api_version: String,
}

#[derive(Debug, Deserialize)]
struct JsonFile {
    filename: String,
    url: String,
    #[serde(default)]
    hashes: BTreeMap<String, String>,
    /// `false`, `true`, or the reason it was yanked (PEP 592).
    #[serde(default)]
    yanked: Yanked,
}

#[derive(Debug, Default, Deserialize)]
#[serde(untagged)]
enum Yanked {
    #[default]
    No,
    Flag(bool),
    Reason(String),
}

/// Parses a PEP 691 JSON project page: every file that is a pure-Python wheel or a `.tar.gz`
/// sdist of `name` and is not yanked. A page of another major API version is an error, as PEP
/// 691 asks of clients.
pub fn parse_json_page(page: &str, name: &str) -> Result<Vec<Listed>, InstallError> {
    let page: JsonPage = serde_json::from_str(page)
        .map_err(|e| InstallError::Index(format!("the JSON project page of '{name}' is not PEP 691: {e}")))?;
    let major = page.meta.api_version.split('.').next().unwrap_or_default();
    if major != "1" {
        return Err(InstallError::Index(format!(
            "the index speaks simple API version {}; Roost reads version 1.x (PEP 691)",
            page.meta.api_version
        )));
    }
    let want = normalize_name(name);
    let listed = page
        .files
        .iter()
        .filter(|f| match &f.yanked {
            Yanked::No | Yanked::Flag(false) => true,
            Yanked::Flag(true) => {
                debug!(file = %f.filename, "yanked; left out");
                false
            }
            Yanked::Reason(reason) => {
                debug!(file = %f.filename, %reason, "yanked; left out");
                false
            }
        })
        .filter_map(|f| listing(&want, &f.filename, &f.url, f.hashes.get("sha256").map(String::as_str)))
        .collect();
    Ok(listed)
}

/// The listing of one file, if it is an installable distribution of the project `want`
/// (normalized); a `sha256` that is not 64 hex digits is no hash.
fn listing(want: &str, filename: &str, url: &str, sha256: Option<&str>) -> Option<Listed> {
    let (dist_name, version, wheel) = classify(filename)?;
    if normalize_name(&dist_name) != want {
        return None;
    }
    let sha256 = sha256
        .map(str::to_ascii_lowercase)
        .filter(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()));
    Some(Listed { filename: filename.to_owned(), url: url.to_owned(), sha256, version, wheel })
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_normalized_like_pep_503() {
        assert_eq!(normalize_name("Foo.Bar__baz"), "foo-bar-baz");
        assert_eq!(normalize_name("micropython-umqtt.simple"), "micropython-umqtt-simple");
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
    fn html_file_names_are_percent_decoded() {
        let page = r#"<a href="/f/my%5Fpkg-1.0%2Bloc-py3-none-any.whl?x=1#sha256=x">w</a>
            <a href="/f/my-pkg-2.0.tar.gz%41">not a .tar.gz once decoded</a>"#;
        let listed = parse_project_page(page, "my-pkg");
        assert_eq!(listed.len(), 1, "{listed:?}");
        assert_eq!(listed[0].filename, "my_pkg-1.0+loc-py3-none-any.whl");
        assert_eq!(listed[0].version, "1.0+loc");
        assert_eq!(listed[0].url, "/f/my%5Fpkg-1.0%2Bloc-py3-none-any.whl?x=1#sha256=x");
        assert_eq!(listed[0].sha256, None);
    }

    #[test]
    fn json_pages_list_files_with_their_hashes_and_skip_yanked_ones() {
        let hash = "AB".repeat(32);
        let page = format!(
            r#"{{"meta": {{"api-version": "1.1", "_last-serial": 7}}, "name": "mypkg", "versions": ["1.0"],
            "files": [
              {{"filename": "mypkg-1.0-py3-none-any.whl", "url": "../../files/mypkg-1.0-py3-none-any.whl",
                "hashes": {{"sha256": "{hash}", "md5": "00"}}, "requires-python": ">=3.8", "yanked": false}},
              {{"filename": "mypkg-0.9.tar.gz", "url": "https://files.example/mypkg-0.9.tar.gz", "hashes": {{}}}},
              {{"filename": "mypkg-1.1-py3-none-any.whl", "url": "x", "hashes": {{}}, "yanked": true}},
              {{"filename": "mypkg-1.2-py3-none-any.whl", "url": "y", "hashes": {{}}, "yanked": "broken"}},
              {{"filename": "mypkg-1.0-cp312-cp312-linux_x86_64.whl", "url": "z", "hashes": {{}}}},
              {{"filename": "other-5.0.tar.gz", "url": "o", "hashes": {{}}}}
            ]}}"#
        );
        let listed = parse_page(Some("application/vnd.pypi.simple.v1+json"), &page, "MyPkg").unwrap();
        let want = [
            Listed {
                filename: "mypkg-1.0-py3-none-any.whl".into(),
                url: "../../files/mypkg-1.0-py3-none-any.whl".into(),
                sha256: Some("ab".repeat(32)),
                version: "1.0".into(),
                wheel: true,
            },
            Listed {
                filename: "mypkg-0.9.tar.gz".into(),
                url: "https://files.example/mypkg-0.9.tar.gz".into(),
                sha256: None,
                version: "0.9".into(),
                wheel: false,
            },
        ];
        assert_eq!(listed, want);
    }

    #[test]
    fn the_content_type_decides_json_or_html() {
        let html = r#"<a href="/f/p-1.0.tar.gz">p</a>"#;
        assert_eq!(parse_page(Some("text/html; charset=utf-8"), html, "p").unwrap().len(), 1);
        assert_eq!(parse_page(Some("application/vnd.pypi.simple.v1+html"), html, "p").unwrap().len(), 1);
        assert_eq!(parse_page(None, html, "p").unwrap().len(), 1);
        let err = parse_page(Some("application/vnd.pypi.simple.v1+json"), html, "p").unwrap_err();
        assert!(err.to_string().contains("not PEP 691"), "{err}");
        let v2 = r#"{"meta": {"api-version": "2.0"}, "files": []}"#;
        let err = parse_page(Some("Application/Vnd.Pypi.Simple.V1+JSON"), v2, "p").unwrap_err();
        assert!(err.to_string().contains("simple API version 2.0"), "{err}");
    }
}
