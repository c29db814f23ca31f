//! `install`: turns a package into the files boards get under `lib/`.
//!
//! A package is a local `.py` module, a local directory (sent by the CLI as a tar), a local
//! wheel or sdist, or a name (`name` or `name==version`) resolved from a "simple" package index
//! (`[boards] package_index`): Roost fetches `<index>/<normalized-name>/` as the PEP 691 JSON page
//! or, from an index that has only that, the PEP 503 HTML page, picks the newest (or the pinned)
//! version by PEP 440, preferring a pure-Python wheel over an sdist, checks the file's SHA-256
//! when the index gives one, and unpacks it here. Only importable files are kept: the top-level
//! packages and `.py` modules; metadata (`*.dist-info`, `*.egg-info`), tests, `setup.py`,
//! `pyproject.toml` and the like are dropped. Archives with absolute paths, `..` components or
//! (in tars) links are refused, and download size, unpacked size and file count are capped.
//! Nothing is sent to a board before the whole package is unpacked and checked.
//!
//! - `index`: resolving a requirement against the index and downloading the chosen file.
//! - `page`: reading a project page (JSON or HTML) into the files it lists.
//! - `unpack`: a module, directory, wheel or sdist into the files for `lib/`.
//! - `package`: the limits, kinds, result and error the others share.

mod index;
mod package;
mod page;
mod unpack;

pub use index::{fetch, parse_spec, pick};
pub use package::{InstallError, Limits, LocalKind, Package};
pub use page::{classify, normalize_name, parse_json_page, parse_page, parse_project_page, Listed};
pub use unpack::unpack;
