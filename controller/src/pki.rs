//! The fleet's certificates: the controller holds one CA key (a file or an environment
//! variable, never logged) and issues each VM its Docker API server certificate and itself a
//! client certificate, so a VM's engine answers only the controller and the controller talks
//! only to engines it made.
//!
//! The CA certificate is *derived* from the key (fixed name and validity), not stored: a
//! restarted controller re-derives a certificate with the same subject and public key, which
//! verifies everything the previous one issued. A VM's certificate names
//! `<vm-name>.vm.conductor` (its address is not known when the cloud-init is written); the
//! client checks that name whatever address it dials.

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SerialNumber,
};
use sha2::{Digest, Sha256};

#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("CA key: {0}")]
    Key(String),
    #[error("issuing a certificate for {name}: {message}")]
    Issue { name: String, message: String },
}

/// A value that must not reach logs or events: its `Debug` says only that it is there.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: String) -> Secret {
        Secret(value)
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// A certificate with its key, as PEM (the key a [`Secret`]).
#[derive(Clone, Debug)]
pub struct Issued {
    pub cert_pem: String,
    pub key_pem: Secret,
    /// Hex of the certificate's serial number (events name it, never the key).
    pub serial: String,
}

/// What a TLS Docker client needs: the CA it trusts, its own certificate and key, and the
/// name the engine's certificate must carry (`None`: the dialled host's name).
#[derive(Clone, Debug)]
pub struct TlsIdentity {
    pub ca_pem: String,
    pub cert_pem: String,
    pub key_pem: Secret,
    pub server_name: Option<String>,
}

/// The role a certificate is issued for: a server certificate cannot act as a client (a VM
/// that is taken over cannot talk to another VM's engine as the controller).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Server,
    Client,
}

pub struct Pki {
    issuer: Issuer<'static, KeyPair>,
    ca_pem: String,
}

impl std::fmt::Debug for Pki {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pki").field("ca_pem", &self.ca_pem).finish_non_exhaustive()
    }
}

/// The name a VM's engine certificate carries.
pub fn vm_server_name(vm: &str) -> String {
    format!("{vm}.vm.conductor")
}

fn ca_params(cluster: &str) -> CertificateParams {
    let mut p = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "conductor fleet CA");
    dn.push(DnType::OrganizationName, cluster);
    p.distinguished_name = dn;
    p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    p.not_before = rcgen::date_time_ymd(2025, 1, 1);
    p.not_after = rcgen::date_time_ymd(2125, 1, 1);
    p
}

impl Pki {
    /// A new CA key, as PEM (`conductor pki init`).
    pub fn generate_key() -> Result<Secret, PkiError> {
        let key = KeyPair::generate().map_err(|e| PkiError::Key(e.to_string()))?;
        Ok(Secret(key.serialize_pem()))
    }

    /// The CA of `cluster` from its key (PKCS#8 PEM, as `generate_key` writes).
    pub fn from_key_pem(key_pem: &str, cluster: &str) -> Result<Pki, PkiError> {
        let key = KeyPair::from_pem(key_pem).map_err(|e| PkiError::Key(e.to_string()))?;
        let mut params = ca_params(cluster);
        // The serial is the key's: every derivation of this CA is the same certificate but
        // for its signature.
        let digest = Sha256::digest(key.public_key_raw());
        params.serial_number = Some(SerialNumber::from_slice(&digest[..16]));
        let cert = params.self_signed(&key).map_err(|e| PkiError::Key(e.to_string()))?;
        Ok(Pki { ca_pem: cert.pem(), issuer: Issuer::new(params, key) })
    }

    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// A fresh key and a certificate for `name`, valid `days` from `now_unix_s`.
    pub fn issue(&self, name: &str, role: Role, now_unix_s: i64, days: u32) -> Result<Issued, PkiError> {
        let fail = |e: rcgen::Error| PkiError::Issue { name: name.to_owned(), message: e.to_string() };
        let key = KeyPair::generate().map_err(fail)?;
        let mut p = CertificateParams::new(vec![name.to_owned()]).map_err(fail)?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, name);
        p.distinguished_name = dn;
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
        p.extended_key_usages = vec![match role {
            Role::Server => ExtendedKeyUsagePurpose::ServerAuth,
            Role::Client => ExtendedKeyUsagePurpose::ClientAuth,
        }];
        p.use_authority_key_identifier_extension = true;
        let start = rcgen::date_time_ymd(1970, 1, 1) + time_span(now_unix_s - 3600);
        p.not_before = start;
        p.not_after = start + time_span(i64::from(days) * 86_400 + 3600);
        // A fresh key each time: its digest is a unique serial.
        let mut serial: [u8; 16] = Sha256::digest(key.public_key_raw())[..16].try_into().expect("16 bytes");
        serial[0] &= 0x7f;
        p.serial_number = Some(SerialNumber::from_slice(&serial));
        let cert = p.signed_by(&key, &self.issuer).map_err(fail)?;
        let serial = serial.iter().map(|b| format!("{b:02x}")).collect();
        Ok(Issued { cert_pem: cert.pem(), key_pem: Secret(key.serialize_pem()), serial })
    }

    /// The controller's client identity towards engines whose certificates name `server_name`.
    pub fn client(&self, client: &Issued, server_name: Option<String>) -> TlsIdentity {
        TlsIdentity {
            ca_pem: self.ca_pem.clone(),
            cert_pem: client.cert_pem.clone(),
            key_pem: client.key_pem.clone(),
            server_name,
        }
    }
}

fn time_span(secs: i64) -> std::time::Duration {
    std::time::Duration::from_secs(secs.max(0) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::client::danger::ServerCertVerifier;
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, ServerName, UnixTime};

    const NOW: i64 = 1_796_083_200; // 2026-12-01

    fn verifier(ca_pem: &str) -> std::sync::Arc<rustls::client::WebPkiServerVerifier> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(CertificateDer::from_pem_slice(ca_pem.as_bytes()).unwrap()).unwrap();
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        rustls::client::WebPkiServerVerifier::builder_with_provider(std::sync::Arc::new(roots), provider)
            .build()
            .unwrap()
    }

    fn verify(ca_pem: &str, cert_pem: &str, name: &str) -> Result<(), rustls::Error> {
        let cert = CertificateDer::from_pem_slice(cert_pem.as_bytes()).unwrap();
        let name = ServerName::try_from(name.to_owned()).unwrap();
        let at = UnixTime::since_unix_epoch(std::time::Duration::from_secs(NOW as u64));
        verifier(ca_pem).verify_server_cert(&cert, &[], &name, &[], at).map(|_| ())
    }

    #[test]
    fn a_server_certificate_verifies_for_its_name_under_its_ca_only() {
        let pki = Pki::from_key_pem(Pki::generate_key().unwrap().expose(), "prod").unwrap();
        let vm = vm_server_name("cdt-prod-vm-3");
        let issued = pki.issue(&vm, Role::Server, NOW, 365).unwrap();
        verify(pki.ca_pem(), &issued.cert_pem, &vm).unwrap();
        let other_name = verify(pki.ca_pem(), &issued.cert_pem, &vm_server_name("cdt-prod-vm-4"));
        assert!(other_name.is_err(), "{other_name:?}");
        let foreign = Pki::from_key_pem(Pki::generate_key().unwrap().expose(), "prod").unwrap();
        let under_foreign = verify(foreign.ca_pem(), &issued.cert_pem, &vm);
        assert!(under_foreign.is_err(), "{under_foreign:?}");
    }

    #[test]
    fn a_ca_derived_again_from_its_key_verifies_what_the_first_issued() {
        let key = Pki::generate_key().unwrap();
        let first = Pki::from_key_pem(key.expose(), "prod").unwrap();
        let issued = first.issue("n.vm.conductor", Role::Server, NOW, 30).unwrap();
        let again = Pki::from_key_pem(key.expose(), "prod").unwrap();
        verify(again.ca_pem(), &issued.cert_pem, "n.vm.conductor").unwrap();
    }

    #[test]
    fn a_client_certificate_is_not_a_server_certificate_and_validity_is_bounded() {
        let pki = Pki::from_key_pem(Pki::generate_key().unwrap().expose(), "prod").unwrap();
        let client = pki.issue("controller.conductor", Role::Client, NOW, 365).unwrap();
        assert!(verify(pki.ca_pem(), &client.cert_pem, "controller.conductor").is_err());
        // Issued a year before now for 30 days: expired now.
        let old = pki.issue("old.vm.conductor", Role::Server, NOW - 365 * 86_400, 30).unwrap();
        let expired = verify(pki.ca_pem(), &old.cert_pem, "old.vm.conductor");
        assert!(
            matches!(expired, Err(rustls::Error::InvalidCertificate(rustls::CertificateError::ExpiredContext { .. }))),
            "{expired:?}"
        );
    }

    #[test]
    fn keys_never_show_in_debug_output_and_bad_keys_are_refused() {
        let key = Pki::generate_key().unwrap();
        let pki = Pki::from_key_pem(key.expose(), "prod").unwrap();
        let issued = pki.issue("a.vm.conductor", Role::Server, NOW, 1).unwrap();
        let shown = format!("{key:?} {pki:?} {issued:?} {:?}", pki.client(&issued, None));
        assert!(!shown.contains("PRIVATE KEY"), "{shown}");
        assert!(shown.contains("BEGIN CERTIFICATE"));
        let bad = Pki::from_key_pem("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n", "prod");
        assert!(matches!(bad, Err(PkiError::Key(_))));
    }
}
