//! TLS to `https://` upstreams (feature `rustls`): the client's configuration
//! and the roots it trusts.

use super::client::ClientBuilder;
use std::sync::Arc;

impl ClientBuilder {
    /// Speaks TLS to `https://` endpoints with `config` (its roots, its crypto
    /// provider), verified against the endpoint's name; the ALPN protocols are set
    /// for the version spoken. Only a client of [`build_for`](Self::build_for)
    /// speaks TLS.
    #[cfg_attr(docsrs, doc(cfg(feature = "rustls")))]
    pub fn tls(mut self, config: rustls::ClientConfig) -> Self {
        self.tls = Some(Arc::new(config));
        self
    }

    /// Speaks TLS to `https://` endpoints with the crypto `provider`, trusting
    /// `roots` (see [`tls`](Self::tls)); with the roots of a PEM file, see
    /// [`pem_roots`](Self::pem_roots).
    ///
    /// ```
    /// # fn main() -> Result<(), rustls::Error> {
    /// let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    /// let roots = rustls::RootCertStore::empty(); // add the CAs to trust
    /// let builder = tower_bad_gateway::proxy::ClientBuilder::new().tls_roots(provider, roots)?;
    /// # let _ = builder; Ok(()) }
    /// ```
    #[cfg_attr(docsrs, doc(cfg(feature = "rustls")))]
    pub fn tls_roots(
        self,
        provider: Arc<rustls::crypto::CryptoProvider>,
        roots: rustls::RootCertStore,
    ) -> Result<Self, rustls::Error> {
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(self.tls(config))
    }

    /// The certificates of the PEM file at `path`, as roots to trust: an error
    /// names what could not be read or parsed (the file's path is the caller's
    /// to add).
    #[cfg_attr(docsrs, doc(cfg(feature = "rustls")))]
    pub fn pem_roots(path: &std::path::Path) -> Result<rustls::RootCertStore, String> {
        use rustls::pki_types::{CertificateDer, pem::PemObject};
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_file_iter(path).map_err(|e| e.to_string())? {
            let cert = cert.map_err(|e| e.to_string())?;
            roots.add(cert).map_err(|e| e.to_string())?;
        }
        Ok(roots)
    }

    /// The roots to trust, as a gateway's `--ca-file` flag means them: the
    /// certificates of the PEM file at `ca_file` ([`pem_roots`](Self::pem_roots)),
    /// or without one the system's, as `rustls-native-certs` finds them (the
    /// platform's store; `SSL_CERT_FILE` and `SSL_CERT_DIR` when set). The
    /// system's certificates that cannot be read or parsed are left out: with
    /// none at all, every `https://` endpoint fails verification
    /// ([`TlsCertificateError`](crate::ErrorKind::TlsCertificateError)). An error
    /// names the file, then what could not be read or parsed in it.
    ///
    /// ```
    /// use tower_bad_gateway::proxy::ClientBuilder;
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let ca_file: Option<&std::path::Path> = None; // say, from the command line
    /// let roots = ClientBuilder::ca_roots(ca_file)?;
    /// let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    /// let builder = ClientBuilder::new().tls_roots(provider, roots)?;
    /// # let _ = builder;
    /// let missing = ClientBuilder::ca_roots(Some("/nonexistent/ca.pem".as_ref()));
    /// assert!(missing.unwrap_err().starts_with("/nonexistent/ca.pem: "));
    /// # Ok(()) }
    /// ```
    #[cfg_attr(docsrs, doc(cfg(feature = "rustls")))]
    pub fn ca_roots(ca_file: Option<&std::path::Path>) -> Result<rustls::RootCertStore, String> {
        if let Some(path) = ca_file {
            return Self::pem_roots(path).map_err(|e| format!("{}: {e}", path.display()));
        }
        let mut roots = rustls::RootCertStore::empty();
        roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
        Ok(roots)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pem_file_that_cannot_be_read_or_parsed_is_an_error() {
        let missing = ClientBuilder::pem_roots(std::path::Path::new("/nonexistent/ca.pem"));
        assert!(missing.is_err());
        let dir = std::env::temp_dir().join(format!("tbg-pem-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "no certificate here\n").unwrap();
        assert_eq!(ClientBuilder::pem_roots(&empty).unwrap().len(), 0);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_roots_are_the_ca_files_or_else_the_systems() {
        let missing = ClientBuilder::ca_roots(Some(std::path::Path::new("/nonexistent/ca.pem")));
        assert!(missing.unwrap_err().starts_with("/nonexistent/ca.pem: "));
        let dir = std::env::temp_dir().join(format!("tbg-ca-roots-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (empty, bad) = (dir.join("empty.pem"), dir.join("bad.pem"));
        std::fs::write(&empty, "no certificate here\n").unwrap();
        let pem = "-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n";
        std::fs::write(&bad, pem).unwrap();
        assert_eq!(ClientBuilder::ca_roots(Some(&empty)).unwrap().len(), 0);
        let err = ClientBuilder::ca_roots(Some(&bad)).unwrap_err();
        assert!(err.starts_with(&format!("{}: ", bad.display())), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
        // No file: the system's roots, whatever this machine has (none is no error).
        assert!(ClientBuilder::ca_roots(None).is_ok());
    }
}
