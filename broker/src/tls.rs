//! `roost tls init` and `roost tls device`: a private certificate authority, a server
//! certificate for the names and addresses clients use, and device certificates whose common
//! name is the device's name, for people without a PKI of their own (`rcgen`, ECDSA P-256).
//! Keys are written readable by their owner only; DER copies of a device's files are written
//! too, for MicroPython, whose TLS reads DER only.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::Subcommand;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use time::{Duration, OffsetDateTime};

#[derive(Debug, Subcommand)]
pub enum TlsCommand {
    /// Make a private CA and a server certificate (in DIR: ca.pem and ca.der, ca.key,
    /// server.pem, server.key).
    Init {
        /// Where to write the files (created, private).
        #[arg(long, default_value = "tls")]
        dir: PathBuf,
        /// A DNS name or IP address clients connect to; repeat it. Default: localhost, 127.0.0.1.
        #[arg(long = "san")]
        sans: Vec<String>,
        /// How long the server certificate is valid, in days (the CA: ten years).
        #[arg(long, default_value_t = 825)]
        days: u32,
    },
    /// Make a certificate for a device, signed by the CA in DIR (DIR/devices/NAME.pem, .key, and
    /// .der copies); register the device with `roost device add` too.
    Device {
        name: String,
        #[arg(long, default_value = "tls")]
        dir: PathBuf,
        #[arg(long, default_value_t = 825)]
        days: u32,
    },
}

const CA_NAME: &str = "Roost private CA";

pub fn run(command: &TlsCommand) -> Result<()> {
    match command {
        TlsCommand::Init { dir, sans, days } => {
            let sans =
                if sans.is_empty() { vec!["localhost".into(), "127.0.0.1".into()] } else { sans.clone() };
            init(dir, &sans, *days)?;
            println!(
                "wrote {0}/ca.pem (and ca.der), ca.key, server.pem and server.key (for {1}).",
                dir.display(),
                sans.join(", ")
            );
            println!("Give clients ca.pem; keep ca.key safe (it signs device certificates). In roost.toml:");
            println!("\n[mqtt.tls]\nlisten = \"0.0.0.0:8883\"\ncert = \"{0}/server.pem\"\nkey = \"{0}/server.key\"", dir.display());
            println!("# client_ca = \"{}/ca.pem\"   # to require device certificates", dir.display());
        }
        TlsCommand::Device { name, dir, days } => {
            device(dir, name, *days)?;
            let base = dir.join("devices").join(name);
            println!("wrote {0}.pem and {0}.key (and .der copies for MicroPython).", base.display());
            println!(
                "The device connects with them to a listener with client_ca = ca.pem, client id {name:?}."
            );
        }
    }
    Ok(())
}

/// Writes a new CA and a server certificate for `sans` (DNS names or IP addresses) in `dir`.
pub fn init(dir: &Path, sans: &[String], days: u32) -> Result<()> {
    if dir.join("ca.key").exists() {
        bail!("{} already holds a CA (ca.key); use another --dir or delete it first", dir.display());
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let ca_key = KeyPair::generate()?;
    let ca = ca_params(3650)?;
    let ca_cert = ca.self_signed(&ca_key)?;
    write(&dir.join("ca.pem"), ca_cert.pem().as_bytes(), 0o644)?;
    write(&dir.join("ca.der"), ca_cert.der(), 0o644)?;
    write(&dir.join("ca.key"), ca_key.serialize_pem().as_bytes(), 0o600)?;
    let issuer = Issuer::new(ca, ca_key);

    let mut server =
        CertificateParams::new(sans.to_vec()).context("a --san is neither a DNS name nor an IP address")?;
    server.distinguished_name.push(DnType::CommonName, "roost");
    server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let key = KeyPair::generate()?;
    let cert = leaf(server, days).signed_by(&key, &issuer)?;
    write(&dir.join("server.pem"), cert.pem().as_bytes(), 0o644)?;
    write(&dir.join("server.key"), key.serialize_pem().as_bytes(), 0o600)
}

/// Writes a certificate for device `name`, signed by the CA in `dir`, under `dir/devices/`.
pub fn device(dir: &Path, name: &str, days: u32) -> Result<()> {
    roost_core::board::validate_board_name(name).map_err(|e| anyhow::anyhow!("device name {name:?}: {e}"))?;
    let read = |file: &str| {
        let path = dir.join(file);
        std::fs::read_to_string(&path)
            .with_context(|| format!("reading {} (run `roost tls init` first)", path.display()))
    };
    let ca_key = KeyPair::from_pem(&read("ca.key")?).context("ca.key is not a private key")?;
    let issuer =
        Issuer::from_ca_cert_pem(&read("ca.pem")?, ca_key).context("ca.pem is not a CA certificate")?;
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.distinguished_name.push(DnType::CommonName, name);
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let key = KeyPair::generate()?;
    let cert = leaf(params, days).signed_by(&key, &issuer)?;
    let out = dir.join("devices");
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    write(&out.join(format!("{name}.pem")), cert.pem().as_bytes(), 0o644)?;
    write(&out.join(format!("{name}.der")), cert.der(), 0o644)?;
    write(&out.join(format!("{name}.key")), key.serialize_pem().as_bytes(), 0o600)?;
    write(&out.join(format!("{name}.key.der")), &key.serialize_der(), 0o600)
}

/// A TLS server configuration (ring, TLS 1.2 and 1.3) from PEM files.
pub fn server_config(cert: &Path, key: &Path) -> Result<rustls::ServerConfig> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .with_context(|| format!("reading certificates from {}", cert.display()))?;
    if chain.is_empty() {
        bail!("{} holds no PEM certificate", cert.display());
    }
    let key = PrivateKeyDer::from_pem_file(key)
        .with_context(|| format!("reading a private key from {}", key.display()))?;
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .context("the certificate and the key do not belong together")?;
    Ok(config)
}

fn ca_params(days: u32) -> Result<CertificateParams> {
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    ca.distinguished_name.push(DnType::CommonName, CA_NAME);
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages =
        vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    Ok(valid_for(ca, days))
}

fn leaf(mut params: CertificateParams, days: u32) -> CertificateParams {
    params.use_authority_key_identifier_extension = true;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    valid_for(params, days)
}

/// Valid from a day ago (clocks of boards and servers differ) for `days`.
fn valid_for(mut params: CertificateParams, days: u32) -> CertificateParams {
    let now = OffsetDateTime::now_utc();
    params.not_before = now - Duration::days(1);
    params.not_after = now + Duration::days(i64::from(days));
    params
}

/// Writes `bytes` to a new file (replacing one) with `mode`.
fn write(path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    let _ = std::fs::remove_file(path);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    f.write_all(bytes).with_context(|| format!("writing {}", path.display()))
}
