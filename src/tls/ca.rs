//! The local certificate authority that signs interception leaves.
//!
//! One ECDSA P-256 CA per device, generated on first start into
//! `state_dir/ca/ca.pem` (certificate) with its key in the keyring or a 0600
//! file (see [`super::store`]). Its X.509 NameConstraints *permit* only the
//! DNS names of the intercepted hosts and *exclude* every IPv4 and IPv6
//! range, so that a stolen CA key cannot impersonate anything else to a
//! client that enforces constraints (rustls-webpki, OpenSSL, Go, NSS, Chrome,
//! macOS). Its extended key usage is `serverAuth` only, marked critical, so
//! the key cannot vouch for client-auth, code-signing or S/MIME certificates
//! either (a CA made before this was added keeps its old extensions until
//! `outpost ca rotate`).
//!
//! "Permitted" below always means what the certificate on disk says, parsed
//! back from it, not what the current policy wishes: when the intercept list
//! grows past the CA, those hosts are tunnelled until `outpost ca rotate`.

use std::path::{Path, PathBuf};

use jiff::{SignedDuration, Timestamp};
use rcgen::{
    BasicConstraints, CertificateParams, CidrSubnet, CustomExtension, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, GeneralSubtree, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    NameConstraints, PKCS_ECDSA_P256_SHA256,
};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use sha2::{Digest, Sha256};

use super::store::{self, KeyLocation, StoreError};
use crate::config::KeyStoreChoice;
use crate::policy::intercept::HostPattern;

/// How long a new CA is valid.
const CA_VALIDITY: SignedDuration = SignedDuration::from_hours(24 * 5 * 365);
/// How long a leaf is valid. Short: leaves are cheap and only live in memory.
pub const LEAF_VALIDITY: SignedDuration = SignedDuration::from_hours(24 * 7);
/// Leaves start this far in the past, for clients whose clock is behind.
const BACKDATE: SignedDuration = SignedDuration::from_hours(1);

/// Errors creating, loading or using the CA.
#[derive(Debug, thiserror::Error)]
pub enum CaError {
    /// Key storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The certificate or key on disk could not be parsed.
    #[error("{path}: {message}")]
    Corrupt {
        /// The file (or key location).
        path: String,
        /// What is wrong.
        message: String,
    },
    /// rcgen refused to build a certificate.
    #[error("certificate generation failed: {0}")]
    Generate(#[from] rcgen::Error),
    /// Asked to mint a leaf the CA's name constraints do not permit.
    #[error("the Outpost CA's name constraints do not permit {0}; run `outpost ca rotate`")]
    NotPermitted(String),
    /// The clock says a time whose validity period a certificate cannot
    /// carry (near the ends of time, years ±9999): the system clock is
    /// wrong, not the request.
    #[error("cannot make a certificate valid at {0}: the clock is out of range")]
    ClockOutOfRange(Timestamp),
}

/// A freshly minted leaf: its own key, never the CA's.
pub struct Leaf {
    /// DER certificate.
    pub cert: CertificateDer<'static>,
    /// PKCS#8 private key of the leaf.
    pub key: PrivateKeyDer<'static>,
    /// When it stops being valid.
    pub not_after: Timestamp,
}

/// The loaded CA: certificate, signing key, and its parsed constraints.
pub struct LocalCa {
    cert_der: CertificateDer<'static>,
    cert_pem: String,
    issuer: Issuer<'static, KeyPair>,
    facts: CaFacts,
    key_location: KeyLocation,
}

/// What a CA certificate says, parsed back from it: no key needed
/// (`outpost doctor` reads it as any user).
#[derive(Debug, Clone)]
pub struct CaFacts {
    /// DNS names its name constraints permit.
    pub permitted: Vec<String>,
    /// Whether every IPv4 and IPv6 range is excluded.
    pub excludes_all_ips: bool,
    /// Expiry.
    pub not_after: Timestamp,
}

impl CaFacts {
    /// Parse a DER CA certificate.
    pub fn parse(der: &[u8]) -> Result<CaFacts, String> {
        let (_, x509) =
            x509_parser::parse_x509_certificate(der).map_err(|e| format!("cannot parse: {e}"))?;
        let mut permitted = Vec::new();
        let mut excludes_v4 = false;
        let mut excludes_v6 = false;
        if let Ok(Some(nc)) = x509.name_constraints() {
            use x509_parser::extensions::GeneralName;
            for sub in nc.value.permitted_subtrees.iter().flatten() {
                if let GeneralName::DNSName(name) = sub.base {
                    permitted.push(name.to_ascii_lowercase());
                }
            }
            for sub in nc.value.excluded_subtrees.iter().flatten() {
                if let GeneralName::IPAddress(bytes) = sub.base {
                    excludes_v4 |= *bytes == [0u8; 8];
                    excludes_v6 |= *bytes == [0u8; 32];
                }
            }
        }
        let not_after = Timestamp::from_second(x509.validity().not_after.timestamp())
            .map_err(|e| format!("expiry out of range: {e}"))?;
        Ok(CaFacts {
            permitted,
            excludes_all_ips: excludes_v4 && excludes_v6,
            not_after,
        })
    }

    /// Do the name constraints permit leaves for `host`?
    pub fn permits(&self, host: &str) -> bool {
        if host.parse::<std::net::IpAddr>().is_ok() {
            return false;
        }
        self.permitted.iter().any(|c| {
            host == c
                || host
                    .strip_suffix(c.as_str())
                    .is_some_and(|h| h.ends_with('.'))
        })
    }

    /// Do they permit every name `pattern` can match?
    pub fn covers(&self, pattern: &HostPattern) -> bool {
        self.permits(pattern.constraint())
    }

    /// The patterns of `hosts` they do not cover.
    pub fn uncovered<'a>(&self, hosts: &'a [HostPattern]) -> Vec<&'a HostPattern> {
        hosts.iter().filter(|p| !self.covers(p)).collect()
    }
}

impl std::fmt::Debug for LocalCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalCa")
            .field("fingerprint", &self.fingerprint())
            .field("permitted", &self.facts.permitted)
            .field("key_location", &self.key_location)
            .finish_non_exhaustive()
    }
}

/// A generated CA not yet stored.
pub struct NewCa {
    /// The certificate, PEM.
    pub cert_pem: String,
    cert_der: CertificateDer<'static>,
    key: KeyPair,
}

impl NewCa {
    /// Make it the CA of `state_dir`, replacing any previous one.
    pub fn store(self, state_dir: &Path, choice: KeyStoreChoice) -> Result<LocalCa, CaError> {
        store::create_private_dir(&store::ca_dir(state_dir))?;
        // Key first: a certificate without its key is useless, a key without
        // its certificate is simply replaced on the next start.
        let key_location = store::store_key(state_dir, &self.key.serialize_pem(), choice)?;
        store::write_atomic(&cert_file(state_dir), self.cert_pem.as_bytes(), 0o644)?;
        LocalCa::from_parts(self.cert_der, self.cert_pem, self.key, key_location)
    }
}

/// A CA that `outpost ca rotate` replaced: still trusted (its leaves may
/// be in use) until `retire_after`, then taken out of every trust store.
/// Only its certificate is kept: nothing is signed with it any more.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Retiring {
    /// The certificate, PEM.
    pub cert_pem: String,
    /// When its last leaf has expired.
    pub retire_after: Timestamp,
}

/// `state_dir/ca/retiring`: one JSON file per retiring CA.
pub fn retiring_dir(state_dir: &Path) -> PathBuf {
    store::ca_dir(state_dir).join("retiring")
}

/// The retiring CAs, oldest first, each with its file.
pub fn retiring(state_dir: &Path) -> Vec<(PathBuf, Retiring)> {
    let mut out: Vec<(PathBuf, Retiring)> = std::fs::read_dir(retiring_dir(state_dir))
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .filter_map(|p| {
            let parsed = std::fs::read(&p)
                .ok()
                .and_then(|b| serde_json::from_slice::<Retiring>(&b).ok());
            if parsed.is_none() {
                tracing::warn!("{}: not a retiring-CA record; ignored", p.display());
            }
            Some((p.clone(), parsed?))
        })
        .collect();
    out.sort_by_key(|(_, r)| r.retire_after);
    out
}

/// Record `cert_pem` as retiring at `retire_after`.
pub fn retire(
    state_dir: &Path,
    cert_pem: &str,
    retire_after: Timestamp,
) -> Result<PathBuf, CaError> {
    let dir = retiring_dir(state_dir);
    store::create_private_dir(&dir)?;
    let der = pem_certificate(cert_pem).map_err(|message| CaError::Corrupt {
        path: cert_file(state_dir).display().to_string(),
        message,
    })?;
    let name: String = Sha256::digest(&der)[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let path = dir.join(format!("{name}.json"));
    let record = Retiring {
        cert_pem: cert_pem.to_string(),
        retire_after,
    };
    // Serializing two strings cannot fail.
    let bytes = serde_json::to_vec_pretty(&record).unwrap_or_default();
    store::write_atomic(&path, &bytes, 0o644)?;
    Ok(path)
}

/// The certificate file path under `state_dir`.
pub fn cert_file(state_dir: &Path) -> PathBuf {
    store::ca_dir(state_dir).join("ca.pem")
}

impl LocalCa {
    /// Load the CA from `state_dir`, creating it (for `hosts`, valid from
    /// `now`) if there is none.
    pub fn load_or_create(
        state_dir: &Path,
        hosts: &[HostPattern],
        choice: KeyStoreChoice,
        now: Timestamp,
    ) -> Result<LocalCa, CaError> {
        if cert_file(state_dir).exists() {
            LocalCa::load(state_dir)
        } else {
            LocalCa::create(state_dir, hosts, choice, now)
        }
    }

    /// Load an existing CA.
    pub fn load(state_dir: &Path) -> Result<LocalCa, CaError> {
        let path = cert_file(state_dir);
        let cert_pem = std::fs::read_to_string(&path).map_err(|source| StoreError::Io {
            path: path.clone(),
            source,
        })?;
        let corrupt = |message: String| CaError::Corrupt {
            path: path.display().to_string(),
            message,
        };
        let cert_der = pem_certificate(&cert_pem).map_err(corrupt)?;
        let (key_pem, key_location) = store::load_key(state_dir)?;
        let key = KeyPair::from_pem(&key_pem).map_err(|e| CaError::Corrupt {
            path: key_location.to_string(),
            message: format!("not a usable private key: {e}"),
        })?;
        if key.public_key_raw() != public_key_of(&cert_der).map_err(corrupt)? {
            return Err(corrupt(format!(
                "the certificate does not belong to the key in {key_location}; run `outpost ca rotate`"
            )));
        }
        LocalCa::from_parts(cert_der, cert_pem, key, key_location)
    }

    /// Generate a new CA for `hosts`, valid from `now`, replacing any
    /// previous one on disk.
    pub fn create(
        state_dir: &Path,
        hosts: &[HostPattern],
        choice: KeyStoreChoice,
        now: Timestamp,
    ) -> Result<LocalCa, CaError> {
        LocalCa::generate(hosts, now)?.store(state_dir, choice)
    }

    /// A new CA for `hosts`, valid from `now`, in memory only (rotation
    /// puts it into the trust stores before the agent signs with it).
    pub fn generate(hosts: &[HostPattern], now: Timestamp) -> Result<NewCa, CaError> {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
        let cert = ca_params(hosts, now)?.self_signed(&key)?;
        Ok(NewCa {
            cert_pem: cert.pem(),
            cert_der: cert.der().clone(),
            key,
        })
    }

    fn from_parts(
        cert_der: CertificateDer<'static>,
        cert_pem: String,
        key: KeyPair,
        key_location: KeyLocation,
    ) -> Result<LocalCa, CaError> {
        let facts = CaFacts::parse(&cert_der).map_err(|message| CaError::Corrupt {
            path: "CA certificate".to_string(),
            message,
        })?;
        let issuer = Issuer::from_ca_cert_der(&cert_der, key)?;
        Ok(LocalCa {
            cert_der,
            cert_pem,
            issuer,
            facts,
            key_location,
        })
    }

    /// What its certificate says (constraints, expiry).
    pub fn facts(&self) -> &CaFacts {
        &self.facts
    }

    /// Does the CA's certificate permit leaves for `host`?
    pub fn permits(&self, host: &str) -> bool {
        self.facts.permits(host)
    }

    /// Does the CA permit every name `pattern` can match?
    pub fn covers(&self, pattern: &HostPattern) -> bool {
        self.facts.covers(pattern)
    }

    /// The patterns of `hosts` this CA cannot serve (needs a rotate).
    pub fn uncovered<'a>(&self, hosts: &'a [HostPattern]) -> Vec<&'a HostPattern> {
        self.facts.uncovered(hosts)
    }

    /// Mint a leaf for `host` valid from `now`, with its own fresh key.
    pub fn mint_leaf(&self, host: &str, now: Timestamp) -> Result<Leaf, CaError> {
        if !self.permits(host) {
            return Err(CaError::NotPermitted(host.to_string()));
        }
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
        let mut params = CertificateParams::new(vec![host.to_string()])?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, host);
        params.distinguished_name = dn;
        let not_after = set_validity(&mut params, now, BACKDATE, LEAF_VALIDITY)?;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(Leaf {
            cert: cert.der().clone(),
            key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
            not_after,
        })
    }

    /// The certificate, DER.
    pub fn cert_der(&self) -> &CertificateDer<'static> {
        &self.cert_der
    }

    /// The certificate, PEM (what `outpost ca export` prints).
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// SHA-256 of the DER certificate, colon-separated upper-case hex (the
    /// form browsers and `openssl x509 -fingerprint -sha256` show).
    pub fn fingerprint(&self) -> String {
        Sha256::digest(&self.cert_der)
            .iter()
            .map(|b| format!("{b:02X}"))
            .collect::<Vec<_>>()
            .join(":")
    }

    /// DNS names the CA permits.
    pub fn permitted(&self) -> &[String] {
        &self.facts.permitted
    }

    /// Whether every IPv4 and IPv6 range is excluded.
    pub fn excludes_all_ips(&self) -> bool {
        self.facts.excludes_all_ips
    }

    /// Expiry.
    pub fn not_after(&self) -> Timestamp {
        self.facts.not_after
    }

    /// Where the key lives.
    pub fn key_location(&self) -> &KeyLocation {
        &self.key_location
    }
}

fn ca_params(hosts: &[HostPattern], now: Timestamp) -> Result<CertificateParams, CaError> {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "Outpost");
    // Distinct names per rotation, so a trust store shows which CA is which.
    // Numeric fields of a Timestamp only: formatting cannot fail.
    dn.push(
        DnType::CommonName,
        now.strftime("Outpost Local CA %Y-%m-%dT%H%M%SZ")
            .to_string(),
    );
    params.distinguished_name = dn;
    set_validity(&mut params, now, BACKDATE, CA_VALIDITY)?;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let mut names: Vec<String> = hosts.iter().map(|h| h.constraint().to_string()).collect();
    names.sort();
    names.dedup();
    params.custom_extensions = vec![server_auth_only()];
    params.name_constraints = Some(NameConstraints {
        permitted_subtrees: names.into_iter().map(GeneralSubtree::DnsName).collect(),
        excluded_subtrees: vec![
            GeneralSubtree::IpAddress(CidrSubnet::V4([0; 4], [0; 4])),
            GeneralSubtree::IpAddress(CidrSubnet::V6([0; 16], [0; 16])),
        ],
    });
    Ok(params)
}

/// Extended key usage `serverAuth` only, critical (rcgen's own EKU is not
/// marked critical). DER: `SEQUENCE { OID 1.3.6.1.5.5.7.3.1 }`.
fn server_auth_only() -> CustomExtension {
    const EXTENDED_KEY_USAGE: &[u64] = &[2, 5, 29, 37];
    const SERVER_AUTH: [u8; 12] = [
        0x30, 0x0a, 0x06, 0x08, 0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x01,
    ];
    let mut extension = CustomExtension::from_oid_content(EXTENDED_KEY_USAGE, SERVER_AUTH.to_vec());
    extension.set_criticality(true);
    extension
}

/// Make `params` valid from `backdate` before `now` until `validity` after
/// it, to the second; returns the expiry as the certificate states it.
///
/// rcgen's `not_before`/`not_after` are `time::OffsetDateTime`, the one place
/// Outpost meets that crate. They are built from rcgen's own Unix epoch
/// (`date_time_ymd`) plus whole seconds as a `std::time::Duration`, so
/// Outpost never names or depends on `time` itself. Whole seconds lose
/// nothing: X.509 times have no fraction (rcgen drops it too).
fn set_validity(
    params: &mut CertificateParams,
    now: Timestamp,
    backdate: SignedDuration,
    validity: SignedDuration,
) -> Result<Timestamp, CaError> {
    let out_of_range = || CaError::ClockOutOfRange(now);
    let whole_seconds = |t: Result<Timestamp, jiff::Error>| {
        t.and_then(|t| Timestamp::from_second(t.as_second()))
            .map_err(|_| out_of_range())
    };
    let from = whole_seconds(now.checked_sub(backdate))?;
    let until = whole_seconds(now.checked_add(validity))?;
    // 1970-01-01 is a valid date: rcgen's expect inside cannot fire.
    let epoch = rcgen::date_time_ymd(1970, 1, 1);
    let rcgen_time = |t: Timestamp| {
        let seconds = std::time::Duration::from_secs(t.as_second().unsigned_abs());
        if t.as_second() >= 0 {
            epoch.checked_add(seconds.try_into().ok()?)
        } else {
            epoch.checked_sub(seconds.try_into().ok()?)
        }
    };
    params.not_before = rcgen_time(from).ok_or_else(out_of_range)?;
    params.not_after = rcgen_time(until).ok_or_else(out_of_range)?;
    Ok(until)
}

fn pem_certificate(pem: &str) -> Result<CertificateDer<'static>, String> {
    use rustls_pki_types::pem::PemObject;
    CertificateDer::from_pem_slice(pem.as_bytes())
        .map_err(|e| format!("not a PEM certificate: {e}"))
}

fn public_key_of(cert: &CertificateDer<'_>) -> Result<Vec<u8>, String> {
    let (_, x509) =
        x509_parser::parse_x509_certificate(cert).map_err(|e| format!("cannot parse: {e}"))?;
    Ok(x509.public_key().subject_public_key.data.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hosts() -> Vec<HostPattern> {
        ["api.openai.com", "*.openai.azure.com"]
            .iter()
            .map(|h| HostPattern::parse(h).unwrap())
            .collect()
    }

    #[test]
    fn new_ca_is_constrained_and_reloads_identically() {
        let dir = tempfile::tempdir().unwrap();
        let ca =
            LocalCa::create(dir.path(), &hosts(), KeyStoreChoice::File, Timestamp::now()).unwrap();
        assert_eq!(ca.permitted(), ["api.openai.com", "openai.azure.com"]);
        assert!(ca.excludes_all_ips());
        assert!(ca.permits("api.openai.com"));
        assert!(ca.permits("x.openai.azure.com"));
        assert!(!ca.permits("api.anthropic.com"));
        assert!(!ca.permits("evilapi.openai.com"));
        assert!(!ca.permits("127.0.0.1"));
        let (_, x509) = x509_parser::parse_x509_certificate(ca.cert_der()).unwrap();
        let eku = x509
            .extensions()
            .iter()
            .find(|e| e.oid == x509_parser::oid_registry::OID_X509_EXT_EXTENDED_KEY_USAGE)
            .expect("an extended key usage");
        assert!(eku.critical, "the EKU limit must be critical");
        let x509_parser::extensions::ParsedExtension::ExtendedKeyUsage(usage) =
            eku.parsed_extension()
        else {
            panic!("unparsed EKU: {eku:?}");
        };
        assert!(usage.server_auth);
        assert!(!usage.client_auth && !usage.email_protection && !usage.code_signing && !usage.any);
        let again = LocalCa::load(dir.path()).unwrap();
        assert_eq!(again.fingerprint(), ca.fingerprint());
        assert_eq!(again.permitted(), ca.permitted());
        assert!(ca.not_after() > Timestamp::now() + SignedDuration::from_hours(24 * 4 * 365));
    }

    #[test]
    fn validity_and_name_come_from_the_given_time_to_the_second() {
        let dir = tempfile::tempdir().unwrap();
        let now: Timestamp = "2026-11-24T10:20:30.75Z".parse().unwrap();
        let ca = LocalCa::create(dir.path(), &hosts(), KeyStoreChoice::File, now).unwrap();
        let (_, x509) = x509_parser::parse_x509_certificate(ca.cert_der()).unwrap();
        let cn = x509.subject().iter_common_name().next().unwrap();
        assert_eq!(cn.as_str().unwrap(), "Outpost Local CA 2026-11-24T102030Z");
        let validity = x509.validity();
        let second = |text: &str| text.parse::<Timestamp>().unwrap().as_second();
        assert_eq!(
            validity.not_before.timestamp(),
            second("2026-11-24T09:20:30Z")
        );
        // 5 × 365 days, across the leap day of 2028.
        assert_eq!(
            validity.not_after.timestamp(),
            second("2031-11-23T10:20:30Z")
        );
        let reloaded = LocalCa::load(dir.path()).unwrap();
        assert_eq!(reloaded.not_after(), ca.not_after());
        assert_eq!(ca.not_after().as_second(), second("2031-11-23T10:20:30Z"));

        let leaf = ca.mint_leaf("api.openai.com", now).unwrap();
        let (_, x509) = x509_parser::parse_x509_certificate(&leaf.cert).unwrap();
        assert_eq!(
            x509.validity().not_before.timestamp(),
            second("2026-11-24T09:20:30Z")
        );
        assert_eq!(
            x509.validity().not_after.timestamp(),
            second("2026-12-01T10:20:30Z")
        );
        assert_eq!(leaf.not_after.as_second(), second("2026-12-01T10:20:30Z"));
    }

    #[test]
    fn a_clock_out_of_range_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let err = LocalCa::create(dir.path(), &hosts(), KeyStoreChoice::File, Timestamp::MAX)
            .err()
            .unwrap();
        assert!(matches!(err, CaError::ClockOutOfRange(_)), "{err}");
        let ca =
            LocalCa::create(dir.path(), &hosts(), KeyStoreChoice::File, Timestamp::now()).unwrap();
        let err = ca
            .mint_leaf("api.openai.com", Timestamp::MIN)
            .err()
            .unwrap();
        assert!(matches!(err, CaError::ClockOutOfRange(_)), "{err}");
    }

    #[test]
    fn uncovered_hosts_are_reported() {
        let dir = tempfile::tempdir().unwrap();
        let ca =
            LocalCa::create(dir.path(), &hosts(), KeyStoreChoice::File, Timestamp::now()).unwrap();
        let more = vec![
            HostPattern::parse("api.openai.com").unwrap(),
            HostPattern::parse("api.mistral.ai").unwrap(),
        ];
        let missing: Vec<String> = ca.uncovered(&more).iter().map(|p| p.to_string()).collect();
        assert_eq!(missing, ["api.mistral.ai"]);
    }

    #[test]
    fn leaf_has_own_key_and_names_host() {
        let dir = tempfile::tempdir().unwrap();
        let ca =
            LocalCa::create(dir.path(), &hosts(), KeyStoreChoice::File, Timestamp::now()).unwrap();
        let now = Timestamp::now();
        let leaf = ca.mint_leaf("api.openai.com", now).unwrap();
        let (_, x509) = x509_parser::parse_x509_certificate(&leaf.cert).unwrap();
        let ca_key = public_key_of(ca.cert_der()).unwrap();
        assert_ne!(x509.public_key().subject_public_key.data.to_vec(), ca_key);
        let san = x509.subject_alternative_name().unwrap().unwrap();
        assert_eq!(
            format!("{:?}", san.value.general_names),
            "[DNSName(\"api.openai.com\")]"
        );
        let (_, ca_x509) = x509_parser::parse_x509_certificate(ca.cert_der()).unwrap();
        assert_eq!(x509.issuer(), ca_x509.subject());
        assert!(leaf.not_after <= now + LEAF_VALIDITY);
        let left = x509.validity().not_after.timestamp() - Timestamp::now().as_second();
        assert!(left <= LEAF_VALIDITY.as_secs(), "{left} s left");
    }

    #[test]
    fn leaf_outside_constraints_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let ca =
            LocalCa::create(dir.path(), &hosts(), KeyStoreChoice::File, Timestamp::now()).unwrap();
        let err = ca
            .mint_leaf("www.examplebank.com", Timestamp::now())
            .err()
            .unwrap();
        assert!(matches!(err, CaError::NotPermitted(_)));
    }

    #[test]
    fn mismatched_key_is_detected() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        LocalCa::create(a.path(), &hosts(), KeyStoreChoice::File, Timestamp::now()).unwrap();
        LocalCa::create(b.path(), &hosts(), KeyStoreChoice::File, Timestamp::now()).unwrap();
        std::fs::copy(cert_file(a.path()), cert_file(b.path())).unwrap();
        let err = LocalCa::load(b.path()).unwrap_err().to_string();
        assert!(err.contains("does not belong"), "{err}");
    }
}
