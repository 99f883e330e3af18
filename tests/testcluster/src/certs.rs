//! The cluster's keys and certificates, made with the `openssl` CLI: a CA, the
//! apiserver's serving certificate (valid for the bridge address pods use),
//! the service-account signing key pair and the admin's bearer token.

use std::path::{Path, PathBuf};

use crate::command::{self, CommandError};
use crate::layout::BRIDGE_ADDR;

/// Why the keys could not be made.
#[derive(Debug, thiserror::Error)]
pub enum CertsError {
    /// An openssl command failed.
    #[error("failed to generate keys: {0}")]
    Openssl(#[from] CommandError),
    /// A file could not be written.
    #[error("failed to write {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
}

/// Paths of the generated material.
#[derive(Debug, Clone)]
pub struct Pki {
    /// The CA certificate (pods get it as ca.crt).
    pub ca_cert: PathBuf,
    /// The CA key.
    pub ca_key: PathBuf,
    /// The apiserver's serving certificate.
    pub apiserver_cert: PathBuf,
    /// The apiserver's key.
    pub apiserver_key: PathBuf,
    /// Service-account signing key (private).
    pub sa_key: PathBuf,
    /// Service-account verification key (public).
    pub sa_pub: PathBuf,
    /// The apiserver's static token file (the admin token).
    pub token_file: PathBuf,
    /// The admin token itself.
    pub admin_token: String,
    /// The nodes' kubelet API serving certificate (every node address).
    pub kubelet_cert: PathBuf,
    /// Its key.
    pub kubelet_key: PathBuf,
}

impl Pki {
    /// The file names under `dir`; `admin_token` is filled by [`generate`].
    pub fn paths(dir: &Path) -> Self {
        Self {
            ca_cert: dir.join("ca.crt"),
            ca_key: dir.join("ca.key"),
            apiserver_cert: dir.join("apiserver.crt"),
            apiserver_key: dir.join("apiserver.key"),
            sa_key: dir.join("sa.key"),
            sa_pub: dir.join("sa.pub"),
            token_file: dir.join("tokens.csv"),
            admin_token: String::new(),
            kubelet_cert: dir.join("kubelet.crt"),
            kubelet_key: dir.join("kubelet.key"),
        }
    }
}

fn write(path: &Path, contents: &str) -> Result<(), CertsError> {
    std::fs::write(path, contents).map_err(|source| CertsError::Write {
        path: path.to_owned(),
        source,
    })
}

fn s(path: &Path) -> &str {
    path.to_str().unwrap_or_default()
}

/// Generates everything into `dir` (which must exist); the kubelet API's
/// certificate covers `node_addresses`.
pub async fn generate(dir: &Path, node_addresses: &[String]) -> Result<Pki, CertsError> {
    let mut pki = Pki::paths(dir);
    command::run(
        "openssl",
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "3650",
            "-subj",
            "/CN=ebisu-testcluster-ca",
            "-keyout",
            s(&pki.ca_key),
            "-out",
            s(&pki.ca_cert),
        ],
    )
    .await?;

    // The names clients use: the bridge address (pods and the host), loopback,
    // and the in-cluster names of the `kubernetes` Service.
    let apiserver_sans = format!(
        "IP:{BRIDGE_ADDR},IP:127.0.0.1,IP:10.96.0.1,DNS:localhost,DNS:kubernetes,\
         DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
    );
    let (key, cert) = (pki.apiserver_key.clone(), pki.apiserver_cert.clone());
    serving_cert(&pki, "apiserver", &apiserver_sans, &key, &cert).await?;
    // The apiserver reaches each node's kubelet API at the node's address.
    let kubelet_sans: Vec<String> = node_addresses.iter().map(|a| format!("IP:{a}")).collect();
    let (key, cert) = (pki.kubelet_key.clone(), pki.kubelet_cert.clone());
    serving_cert(&pki, "kubelet", &kubelet_sans.join(","), &key, &cert).await?;

    command::run("openssl", &["genrsa", "-out", s(&pki.sa_key), "2048"]).await?;
    command::run(
        "openssl",
        &[
            "rsa",
            "-in",
            s(&pki.sa_key),
            "-pubout",
            "-out",
            s(&pki.sa_pub),
        ],
    )
    .await?;

    pki.admin_token = command::run("openssl", &["rand", "-hex", "24"])
        .await?
        .trim()
        .to_owned();
    write(
        &pki.token_file,
        &format!("{},admin,admin,system:masters\n", pki.admin_token),
    )?;
    Ok(pki)
}

/// A serving key and certificate signed by the CA, valid for `sans`
/// (`IP:...,DNS:...`); `name` names the intermediate files.
async fn serving_cert(
    pki: &Pki,
    name: &str,
    sans: &str,
    key: &Path,
    cert: &Path,
) -> Result<(), CertsError> {
    let dir = key.parent().unwrap_or(Path::new("."));
    let csr = dir.join(format!("{name}.csr"));
    let subject = format!("/CN=ebisu-testcluster-{name}");
    command::run(
        "openssl",
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            &subject,
            "-keyout",
            s(key),
            "-out",
            s(&csr),
        ],
    )
    .await?;
    let ext = dir.join(format!("{name}.ext"));
    write(
        &ext,
        &format!(
            "subjectAltName={sans}\nextendedKeyUsage=serverAuth\nkeyUsage=digitalSignature,keyEncipherment\n"
        ),
    )?;
    command::run(
        "openssl",
        &[
            "x509",
            "-req",
            "-days",
            "3650",
            "-in",
            s(&csr),
            "-CA",
            s(&pki.ca_cert),
            "-CAkey",
            s(&pki.ca_key),
            "-CAcreateserial",
            "-extfile",
            s(&ext),
            "-out",
            s(cert),
        ],
    )
    .await?;
    Ok(())
}

/// The admin kubeconfig: bearer token, the bridge address, our CA.
pub fn kubeconfig(pki: &Pki, server: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: ebisu-testcluster\n  cluster:\n    \
         server: {server}\n    certificate-authority: {ca}\ncontexts:\n- name: ebisu-testcluster\n  \
         context:\n    cluster: ebisu-testcluster\n    user: admin\ncurrent-context: ebisu-testcluster\n\
         users:\n- name: admin\n  user:\n    token: {token}\n",
        ca = s(&pki.ca_cert),
        token = pki.admin_token,
    )
}
