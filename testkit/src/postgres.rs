//! A PostgreSQL server of a test's own: a private cluster in a temporary directory, from the
//! server binaries in `ROOST_TEST_POSTGRES_BIN` (`make test` sets it), on a free port, for tests
//! that must stop and start the server itself or configure it unlike the shared one (TLS only).
//! It runs as the `postgres` system user, with `fsync` off (a test server), and is stopped
//! (immediately) on drop.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::{env_url, free_port};

/// A private PostgreSQL cluster; see the module docs.
pub struct Postgres {
    root: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
    options: String,
}

impl Postgres {
    /// Makes a cluster that takes connections as `pg_hba` says (whole file text), with `options`
    /// added to the server's command line (`-c name=value ...`), and starts it. `prepare` runs
    /// first with the cluster's directory (the root of what `options` may point to: certificates
    /// and keys, then owned by `postgres`).
    pub fn start(pg_hba: &str, options: &str, prepare: impl FnOnce(&Path)) -> Postgres {
        let bin = PathBuf::from(env_url("ROOST_TEST_POSTGRES_BIN"));
        let root = tempfile::tempdir().unwrap();
        prepare(root.path());
        run(Command::new("chown").arg("-R").arg("postgres").arg(root.path()));
        run(Command::new("chmod").arg("755").arg(root.path()));
        let port = free_port();
        let options = format!(
            "-p {port} -k {dir} -c listen_addresses=127.0.0.1 -c fsync=off {options}",
            dir = root.path().display()
        );
        let pg = Postgres { root, bin, port, options };
        run(pg.as_postgres("initdb").args(["--auth=trust", "-U", "postgres", "-D"]).arg(pg.data()));
        std::fs::write(pg.data().join("pg_hba.conf"), pg_hba).unwrap();
        pg.start_again();
        pg
    }

    /// A plain cluster that trusts every local connection.
    pub fn plain() -> Postgres {
        Postgres::start("local all all trust\nhost all all 127.0.0.1/32 trust\n", "", |_| {})
    }

    /// Its port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// A URL for database `postgres` as user `postgres`, with `params` (`sslmode=require`, or
    /// empty).
    pub fn url(&self, params: &str) -> String {
        let query = if params.is_empty() { String::new() } else { format!("?{params}") };
        format!("postgresql://postgres@127.0.0.1:{}/postgres{query}", self.port)
    }

    /// Stops the server the way an operator does (`pg_ctl stop`, fast: open connections are
    /// cut), and waits until it is down.
    pub fn stop(&self) {
        run(self.as_postgres("pg_ctl").args(["-w", "-m", "fast", "-D"]).arg(self.data()).arg("stop"));
    }

    /// Starts the (stopped) server again on the same port, and waits until it takes connections.
    pub fn start_again(&self) {
        run(self
            .as_postgres("pg_ctl")
            .args(["-w", "-D"])
            .arg(self.data())
            .arg("-l")
            .arg(self.root.path().join("log"))
            .args(["-o", &self.options, "start"]));
    }

    fn data(&self) -> PathBuf {
        self.root.path().join("data")
    }

    fn as_postgres(&self, program: &str) -> Command {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(self.bin.join(program));
        c
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ =
            self.as_postgres("pg_ctl").args(["-m", "immediate", "-D"]).arg(self.data()).arg("stop").output();
    }
}

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(out.status.success(), "{cmd:?}: {}", String::from_utf8_lossy(&out.stderr));
}
