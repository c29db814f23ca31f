//! The postgres sink over TLS, against a private PostgreSQL cluster that accepts TLS connections
//! only (pg_hba `hostssl`), with a certificate from a throwaway CA made by `openssl`. Needs
//! ROOST_TEST_POSTGRES_BIN (the PostgreSQL server binaries; `make test` sets it) and `openssl`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use roost_connectors::{Sink, SinkContext, SinkError};
use roost_core::{FieldValue, Record};
use roost_testkit::postgres::Postgres;
use serde_json::json;

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(out.status.success(), "{cmd:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// A PostgreSQL server of the test's own, TLS only, with its CA's certificate.
struct TlsServer {
    pg: Postgres,
    ca: PathBuf,
}

impl TlsServer {
    fn start() -> TlsServer {
        let mut ca = PathBuf::new();
        let pg = Postgres::start(
            "local all all trust\nhostssl all all 127.0.0.1/32 trust\n",
            "-c ssl=on -c ssl_cert_file=../server.pem -c ssl_key_file=../server.key",
            |root| {
                ca = root.join("ca.pem");
                make_pki(root)
            },
        );
        TlsServer { pg, ca }
    }

    fn url(&self, sslmode: &str) -> String {
        self.pg.url(&format!("sslmode={sslmode}"))
    }
}

/// A throwaway CA and a server certificate for 127.0.0.1 and localhost it signed, in `root`.
fn make_pki(root: &Path) {
    let pki = |args: &str| run(Command::new("sh").arg("-c").arg(format!("cd {} && {args}", root.display())));
    pki("openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout ca.key -out ca.pem \
         -days 2 -subj /CN=roost-test-ca 2>/dev/null");
    pki("openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout server.key -out server.csr \
         -subj /CN=localhost 2>/dev/null");
    std::fs::write(
        root.join("server.ext"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    pki("openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.pem -days 2 \
         -extfile server.ext 2>/dev/null");
    pki("chmod 600 server.key");
}

fn batch() -> Arc<Vec<Record>> {
    let records = (0..3)
        .map(|i| {
            let mut r = Record::new("secure", "d1", 1_767_225_600_000_000_000 + i * 1000);
            r.fields.insert("v".into(), FieldValue::Int(i));
            r
        })
        .collect();
    Arc::new(records)
}

async fn open(options: serde_json::Value) -> Box<dyn Sink> {
    roost_connectors::open("postgres", &options, &SinkContext { data_dir: std::env::temp_dir() })
        .await
        .unwrap()
}

#[tokio::test]
async fn postgres_sink_writes_over_tls_and_verifies_the_server_certificate() {
    let server = TlsServer::start();

    // The server takes TLS connections only: a plain one is turned away.
    let plain = tokio_postgres::connect(&server.url("disable"), tokio_postgres::NoTls).await;
    let err = plain.err().expect("a plain connection must be refused");
    let message = err.as_db_error().map(|d| d.message().to_owned()).unwrap_or_default();
    assert!(message.contains("no pg_hba.conf entry") && message.contains("no encryption"), "{err:?}");

    // With the CA: written, over TLS.
    let mut sink = open(json!({"url": server.url("require"), "ca_file": server.ca})).await;
    let out = sink.write(batch()).await.unwrap();
    assert_eq!((out.written, out.rejected.len()), (3, 0));
    drop(sink);

    // Without it the server's certificate is not trusted: the write fails, to be retried.
    let mut sink = open(json!({"url": server.url("require")})).await;
    let err = sink.write(batch()).await.unwrap_err();
    assert!(matches!(err, SinkError::Unavailable(_)), "{err}");
    assert!(err.to_string().to_lowercase().contains("certificate"), "{err}");

    // A CA file that is not a certificate is a configuration error at open.
    let garbage = server.ca.with_file_name("garbage.pem");
    std::fs::write(&garbage, "not a certificate").unwrap();
    let err = roost_connectors::open(
        "postgres",
        &json!({"url": server.url("require"), "ca_file": garbage}),
        &SinkContext { data_dir: std::env::temp_dir() },
    )
    .await
    .err()
    .expect("a bad ca_file must be refused");
    assert!(matches!(err, SinkError::Config(_)) && err.to_string().contains("ca_file"), "{err}");
}
