//! `TestCa`: the CA that signs the *fake upstream's* certificates (not Outpost's CA).
//!
//! The agent is told to trust it through `[upstream] extra_ca_files`; clients that reach a
//! tunnelled host see certificates from it, which is how tunnel tests tell "tunnelled"
//! (issuer = test CA) from "intercepted" (issuer = Outpost CA). Also home to small
//! certificate-inspection helpers shared by the tests.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, PKCS_ECDSA_P256_SHA256,
};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// Subject common name of every `TestCa`; tests look for it in certificate issuers.
pub const TEST_CA_COMMON_NAME: &str = "Outpost Test Upstream CA";

/// An ECDSA P-256 root that issues server certificates for any list of names.
pub struct TestCa {
    issuer: Issuer<'static, KeyPair>,
    cert_der: CertificateDer<'static>,
    cert_pem: String,
    dir: tempfile::TempDir,
}

/// A server certificate chain (leaf, then the CA) and its private key.
pub struct IssuedCert {
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
    pub cert_pem: String,
    pub key_pem: String,
}

impl TestCa {
    pub fn new() -> TestCa {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).expect("generate test CA key");
        let mut params = CertificateParams::default();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name = DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, TEST_CA_COMMON_NAME);
        params
            .distinguished_name
            .push(DnType::OrganizationName, "Outpost tests");
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let cert = params.self_signed(&key).expect("self-sign test CA");
        let dir = tempfile::Builder::new()
            .prefix("outpost-test-ca-")
            .tempdir()
            .expect("tempdir");
        let cert_pem = cert.pem();
        std::fs::write(dir.path().join("test-ca.pem"), &cert_pem).expect("write test CA pem");
        TestCa {
            issuer: Issuer::new(params, key),
            cert_der: cert.der().clone(),
            cert_pem,
            dir,
        }
    }

    /// Path of a file holding this CA's certificate (PEM).
    pub fn pem_path(&self) -> PathBuf {
        self.dir.path().join("test-ca.pem")
    }

    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    pub fn cert_der(&self) -> &CertificateDer<'static> {
        &self.cert_der
    }

    /// Issues a serverAuth leaf (fresh P-256 key) with the given DNS names as SANs.
    pub fn issue(&self, names: &[&str]) -> IssuedCert {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).expect("generate leaf key");
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = CertificateParams::new(names.clone()).expect("leaf params");
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(
            DnType::CommonName,
            names.first().cloned().unwrap_or_default(),
        );
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        let cert = params.signed_by(&key, &self.issuer).expect("sign leaf");
        IssuedCert {
            chain: vec![cert.der().clone(), self.cert_der.clone()],
            key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        }
    }

    /// A rustls server config presenting a leaf for `names`, ALPN h2 then http/1.1.
    pub fn server_config(&self, names: &[&str]) -> Arc<rustls::ServerConfig> {
        let issued = self.issue(names);
        let mut config = rustls::ServerConfig::builder_with_provider(crate::support::ring())
            .with_safe_default_protocol_versions()
            .expect("protocol versions")
            .with_no_client_auth()
            .with_single_cert(issued.chain, issued.key)
            .expect("server cert");
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Arc::new(config)
    }
}

impl Default for TestCa {
    fn default() -> Self {
        TestCa::new()
    }
}

/// Reads every certificate in a PEM file.
pub fn certs_from_pem_file(path: &Path) -> Vec<CertificateDer<'static>> {
    use rustls_pki_types::pem::PemObject;
    let certs: Vec<_> = CertificateDer::pem_file_iter(path)
        .unwrap_or_else(|e| panic!("open {}: {e:?}", path.display()))
        .collect::<Result<_, _>>()
        .unwrap_or_else(|e| panic!("parse {}: {e:?}", path.display()));
    assert!(!certs.is_empty(), "no certificate in {}", path.display());
    certs
}

/// The parts of a certificate the tests compare.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertSummary {
    /// DER of the subject / issuer names, compared byte for byte.
    pub subject_der: Vec<u8>,
    pub issuer_der: Vec<u8>,
    /// Human-readable forms, for messages.
    pub subject: String,
    pub issuer: String,
    /// DER of the SubjectPublicKeyInfo.
    pub spki_der: Vec<u8>,
    pub dns_names: Vec<String>,
    pub is_ca: bool,
}

pub fn summarize_cert(der: &[u8]) -> CertSummary {
    use x509_parser::prelude::*;
    let (_, cert) = X509Certificate::from_der(der).expect("parse certificate DER");
    let dns_names = cert
        .subject_alternative_name()
        .ok()
        .flatten()
        .map(|san| {
            san.value
                .general_names
                .iter()
                .filter_map(|n| match n {
                    GeneralName::DNSName(d) => Some(d.to_string()),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    CertSummary {
        subject_der: cert.subject().as_raw().to_vec(),
        issuer_der: cert.issuer().as_raw().to_vec(),
        subject: cert.subject().to_string(),
        issuer: cert.issuer().to_string(),
        spki_der: cert.public_key().raw.to_vec(),
        dns_names,
        is_ca: cert.is_ca(),
    }
}
