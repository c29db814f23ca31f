//! The example processors and test modules of `plugins-wasm/`, built on first use (once per test
//! process) into the target directory, for the processors' and the broker's tests and benchmarks.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};

/// The repository root (this crate lives in `testkit/`).
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("repo root").to_path_buf()
}

/// Where plugins-wasm builds to, as `make processors` does: `$CARGO_TARGET_DIR` if set, else
/// `plugins-wasm/target`.
fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("plugins-wasm/target"))
}

/// The path of a Rust example (`celsius-to-fahrenheit`) or test module (`hostile`), built
/// for wasm32-wasip2 in release mode.
pub fn rust(name: &str) -> PathBuf {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            // From its directory, so plugins-wasm/.cargo/config.toml (the target) applies.
            .current_dir(root().join("plugins-wasm"))
            .args(["build", "--release", "--quiet", "--target", "wasm32-wasip2"])
            .env("CARGO_TARGET_DIR", target_dir())
            .status()
            .expect("run cargo for plugins-wasm");
        assert!(status.success(), "building plugins-wasm failed (is the wasm32-wasip2 target installed?)");
    });
    let path = target_dir().join("wasm32-wasip2/release").join(format!("{}.wasm", name.replace('-', "_")));
    assert!(path.exists(), "{} was not built", path.display());
    path
}

/// The path of a Python example (`myt_compat`), built with componentize-py.
pub fn python(name: &str) -> PathBuf {
    static BUILT: Mutex<Vec<String>> = Mutex::new(Vec::new());
    let out = target_dir().join("wasm32-wasip2/python").join(format!("{name}.wasm"));
    let source = root().join("plugins-wasm/python/examples").join(format!("{name}.py"));
    let mut built = BUILT.lock().unwrap();
    if !built.iter().any(|b| b == name) {
        std::fs::create_dir_all(out.parent().unwrap()).unwrap();
        // Built under another name and renamed: tests in other processes may be reading it.
        let tmp = out.with_extension(format!("{}.tmp", std::process::id()));
        let status = Command::new("bash")
            .arg(root().join("plugins-wasm/python/build.sh"))
            .arg(&source)
            .arg(&tmp)
            .stdout(std::process::Stdio::null())
            .status()
            .expect("run plugins-wasm/python/build.sh");
        assert!(
            status.success(),
            "building {} failed (is componentize-py installed? make processors)",
            source.display()
        );
        std::fs::rename(&tmp, &out).unwrap();
        built.push(name.to_string());
    }
    out
}

/// The bytes of the module at `path` (from [`rust`] or [`python`]); panics naming the file.
pub fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}
