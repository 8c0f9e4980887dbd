//! TLS on a listener: a certificate and key from PEM files, read again when
//! either file changes (a renewal by certbot or cert-manager replaces them
//! in place), so a renewed certificate needs no restart. A file that fails
//! to load at start stops the start; one that fails later is logged and the
//! previous certificate keeps serving.

use std::path::Path;
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result, anyhow};
use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

use crate::config::TlsFiles;

/// How often the files' modification times are looked at.
const CHECK_EVERY: Duration = Duration::from_secs(1);

/// The certificate a listener serves now.
pub struct Certificates {
    files: TlsFiles,
    current: RwLock<(Stamp, TlsAcceptor)>,
}

type Stamp = (Option<SystemTime>, Option<SystemTime>);

impl Certificates {
    /// Loads the files (an error names the key at fault) and watches them
    /// for as long as the returned value lives.
    pub fn load(files: TlsFiles, key: &str) -> Result<Arc<Certificates>> {
        let stamp = stamp(&files);
        let acceptor = acceptor(&files).context(key.to_string())?;
        let me = Arc::new(Certificates {
            files,
            current: RwLock::new((stamp, acceptor)),
        });
        let weak = Arc::downgrade(&me);
        let key = key.to_string();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(CHECK_EVERY).await;
                let Some(me) = weak.upgrade() else { return };
                me.reload_if_changed(&key);
            }
        });
        Ok(me)
    }

    pub fn acceptor(&self) -> TlsAcceptor {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .1
            .clone()
    }

    fn reload_if_changed(&self, key: &str) {
        let now = stamp(&self.files);
        if self.current.read().unwrap_or_else(|e| e.into_inner()).0 == now {
            return;
        }
        // Remember the stamp even when loading fails, so a broken file is
        // reported once per change, not every second.
        let mut current = self.current.write().unwrap_or_else(|e| e.into_inner());
        current.0 = now;
        match acceptor(&self.files) {
            Ok(a) => {
                current.1 = a;
                tracing::info!(cert = %self.files.cert.display(), "TLS certificate reloaded");
            }
            Err(e) => tracing::error!(
                key,
                error = format!("{e:#}"),
                "TLS certificate not reloaded; the previous one keeps serving"
            ),
        }
    }
}

fn stamp(files: &TlsFiles) -> Stamp {
    let m = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    (m(&files.cert), m(&files.key))
}

fn acceptor(files: &TlsFiles) -> Result<TlsAcceptor> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&files.cert)
        .map_err(|e| anyhow!("cannot read {}: {e}", files.cert.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| {
            anyhow!(
                "{} is not a PEM certificate chain: {e}",
                files.cert.display()
            )
        })?;
    if certs.is_empty() {
        return Err(anyhow!("{} holds no certificate", files.cert.display()));
    }
    let key = PrivateKeyDer::from_pem_file(&files.key).map_err(|e| {
        anyhow!(
            "cannot read a PEM private key from {}: {e}",
            files.key.display()
        )
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| anyhow!("the certificate and key do not make a usable pair: {e}"))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}
