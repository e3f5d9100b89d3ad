//! The Outpost CA: stored in `state_dir/ca/` with a private key file, name-constrained to
//! the intercepted provider hosts (so even a stolen key cannot mint a bank's certificate
//! that OpenSSL or rustls-webpki would accept), exported and described by the CLI.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use rcgen::{
    CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::client::danger::ServerCertVerifier;
use rustls::client::WebPkiServerVerifier;
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use sha2::{Digest, Sha256};
use support::process::run_with_timeout;
use support::*;

/// Signs a serverAuth leaf for `host` with the agent's own CA key, as an attacker holding
/// the key file would.
fn leaf_signed_by_outpost_ca(agent: &Agent, host: &str) -> (CertificateDer<'static>, String) {
    let ca_pem = std::fs::read_to_string(agent.ca_cert_file()).expect("read ca.pem");
    let ca_key_pem = std::fs::read_to_string(agent.ca_key_file()).expect("read ca.key");
    let ca_key = KeyPair::from_pem(&ca_key_pem).expect("ca.key must be a PKCS#8 PEM private key");
    let issuer = Issuer::from_ca_cert_pem(&ca_pem, ca_key).expect("issuer from ca.pem");

    let leaf_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("leaf key");
    let mut params = CertificateParams::new(vec![host.to_string()]).expect("leaf params");
    params.distinguished_name = DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, host);
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.use_authority_key_identifier_extension = true;
    let leaf = params.signed_by(&leaf_key, &issuer).expect("sign leaf");
    (leaf.der().clone(), leaf.pem())
}

fn openssl_verify(ca_file: &Path, leaf_pem: &str, dir: &Path) -> (Option<i32>, String) {
    let leaf_file = dir.join("leaf.pem");
    std::fs::write(&leaf_file, leaf_pem).expect("write leaf");
    let out = run_with_timeout(
        Command::new("openssl")
            .arg("verify")
            .arg("-CAfile")
            .arg(ca_file)
            .arg(&leaf_file),
        Duration::from_secs(30),
    );
    (out.code, format!("{}{}", out.stdout_text(), out.stderr))
}

fn webpki_verify(
    ca_der: &CertificateDer<'static>,
    leaf: &CertificateDer<'static>,
    host: &str,
) -> Result<(), rustls::Error> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca_der.clone()).expect("add Outpost CA as anchor");
    let verifier = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), ring())
        .build()
        .expect("verifier");
    let name = ServerName::try_from(host.to_string()).expect("server name");
    verifier
        .verify_server_cert(leaf, &[], &name, &[], UnixTime::now())
        .map(|_| ())
}

#[test]
fn ca_is_name_constrained_to_provider_hosts() {
    let agent = Agent::builder().start();
    let ca_file = agent.ca_cert_file();
    let ca_der = certs_from_pem_file(&ca_file).remove(0);
    let scratch = tempfile::tempdir().expect("tempdir");

    let (bank_der, bank_pem) = leaf_signed_by_outpost_ca(&agent, "www.examplebank.com");
    let (code, output) = openssl_verify(&ca_file, &bank_pem, scratch.path());
    assert_ne!(
        code,
        Some(0),
        "OpenSSL accepted a www.examplebank.com leaf from the Outpost CA:\n{output}"
    );
    let lower = output.to_lowercase();
    assert!(
        lower.contains("subtree") || lower.contains("name constraint"),
        "OpenSSL should reject it for the name constraints, not something else:\n{output}"
    );
    let webpki = webpki_verify(&ca_der, &bank_der, "www.examplebank.com");
    assert!(
        webpki.is_err(),
        "rustls-webpki accepted a www.examplebank.com leaf from the Outpost CA"
    );

    let (openai_der, openai_pem) = leaf_signed_by_outpost_ca(&agent, "api.openai.com");
    let (code, output) = openssl_verify(&ca_file, &openai_pem, scratch.path());
    assert_eq!(
        code,
        Some(0),
        "OpenSSL must accept an api.openai.com leaf:\n{output}"
    );
    webpki_verify(&ca_der, &openai_der, "api.openai.com")
        .expect("rustls-webpki must accept an api.openai.com leaf");
}

#[test]
fn ca_key_is_private_and_ca_survives_restart() {
    let state = tempfile::tempdir().expect("tempdir");
    let first = Agent::builder().state_dir(state.path()).start();
    let mode = std::fs::metadata(first.ca_key_file())
        .expect("ca.key exists")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "ca.key mode is {:o}", mode & 0o777);
    let ca_before = std::fs::read(first.ca_cert_file()).expect("ca.pem exists");
    drop(first);

    // A new CA on every start would break every client that trusts the installed one.
    let second = Agent::builder().state_dir(state.path()).start();
    let ca_after = std::fs::read(second.ca_cert_file()).expect("ca.pem exists");
    assert_eq!(ca_before, ca_after, "the CA must persist across restarts");
}

#[test]
fn ca_export_prints_the_stored_certificate() {
    let agent = Agent::builder().start();
    let exported = certs_from_pem_file(&agent.ca_pem_path());
    let stored = certs_from_pem_file(&agent.ca_cert_file());
    assert_eq!(
        exported, stored,
        "`outpost ca export` must print state_dir/ca/ca.pem"
    );
    let stdout = agent.cli(&["ca", "export"]).stdout_text();
    assert!(
        !stdout.contains("PRIVATE KEY"),
        "`ca export` must never print the key"
    );
}

#[test]
fn ca_show_describes_fingerprint_constraints_and_key() {
    let agent = Agent::builder().start();
    let out = agent.cli(&["ca", "show"]);
    assert_eq!(out.code, Some(0), "{}", out.describe());
    let text = out.stdout_text();

    let der = certs_from_pem_file(&agent.ca_cert_file()).remove(0);
    let fingerprint: String = Sha256::digest(der.as_ref())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let normalised = text.to_lowercase().replace(':', "");
    assert!(
        normalised.contains(&fingerprint),
        "no SHA-256 fingerprint {fingerprint} in:\n{text}"
    );
    for name in ["api.openai.com", "api.anthropic.com"] {
        assert!(
            text.contains(name),
            "permitted name {name} missing from:\n{text}"
        );
    }
    let key = agent.ca_key_file();
    assert!(
        text.contains(&*key.to_string_lossy()),
        "key location {} missing from:\n{text}",
        key.display()
    );
}
