//! The nodes' kubelet API, just enough for `kubectl logs`: the apiserver
//! proxies `GET /containerLogs/{namespace}/{pod}/{container}` (with
//! `tailLines`, `limitBytes` and `follow`) to the node's address on port
//! 10250, served here over TLS from the container log files. A stopped node's
//! address is gone, so its logs are unreachable, as on a crashed machine.
//! No exec, attach or port-forward.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::agent::container::exited_marker;
use crate::certs::Pki;
use crate::layout::{Layout, NodeSpec};
use crate::network;

/// The kubelet port the nodes advertise.
pub const KUBELET_PORT: u16 = 10250;

/// Why the kubelet API could not start.
#[derive(Debug, thiserror::Error)]
pub enum KubeletApiError {
    /// The certificate or key could not be read.
    #[error("failed to load the kubelet certificate: {0}")]
    Certificate(String),
    /// A node address could not be bound.
    #[error("failed to listen on {address}: {source}")]
    Listen {
        /// The address.
        address: String,
        /// What the OS said.
        source: std::io::Error,
    },
}

fn tls(pki: &Pki) -> Result<TlsAcceptor, KubeletApiError> {
    let fail = |e: &dyn std::fmt::Display| KubeletApiError::Certificate(e.to_string());
    let cert = std::fs::read(&pki.kubelet_cert).map_err(|e| fail(&e))?;
    let key = std::fs::read(&pki.kubelet_key).map_err(|e| fail(&e))?;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert)
        .collect::<Result<_, _>>()
        .map_err(|e| fail(&e))?;
    let key = PrivateKeyDer::from_pem_slice(&key).map_err(|e| fail(&e))?;
    // An explicit provider: the dependency graph may enable more than one.
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| fail(&e))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| fail(&e))?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Listens on every node's address and serves until the process ends.
pub async fn start(layout: &Layout, pki: &Pki, nodes: &[NodeSpec]) -> Result<(), KubeletApiError> {
    let acceptor = tls(pki)?;
    for node in nodes {
        let address = format!("{}:{KUBELET_PORT}", network::node_address(node.index));
        let listener = TcpListener::bind(&address)
            .await
            .map_err(|source| KubeletApiError::Listen { address, source })?;
        let (acceptor, layout) = (acceptor.clone(), layout.clone());
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let (acceptor, layout) = (acceptor.clone(), layout.clone());
                tokio::spawn(async move {
                    if let Ok(stream) = acceptor.accept(stream).await {
                        serve(stream, &layout).await;
                    }
                });
            }
        });
    }
    Ok(())
}

/// What a log request asks for.
#[derive(Debug, PartialEq, Eq)]
struct LogRequest {
    namespace: String,
    pod: String,
    container: String,
    tail_lines: Option<usize>,
    limit_bytes: Option<usize>,
    follow: bool,
}

/// Parses `GET /containerLogs/ns/pod/container?query HTTP/1.1`.
fn parse(head: &str) -> Option<LogRequest> {
    let target = head
        .lines()
        .next()?
        .strip_prefix("GET ")?
        .split(' ')
        .next()?;
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let mut parts = path.strip_prefix("/containerLogs/")?.split('/');
    let (namespace, pod, container) = (parts.next()?, parts.next()?, parts.next()?);
    let param = |name: &str| {
        query
            .split('&')
            .filter_map(|kv| kv.split_once('='))
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.to_owned())
    };
    Some(LogRequest {
        namespace: namespace.to_owned(),
        pod: pod.to_owned(),
        container: container.to_owned(),
        tail_lines: param("tailLines").and_then(|v| v.parse().ok()),
        limit_bytes: param("limitBytes").and_then(|v| v.parse().ok()),
        follow: param("follow").is_some_and(|v| v == "true" || v == "1"),
    })
}

/// The part of a log to send first.
fn select(text: &str, request: &LogRequest) -> String {
    let mut out = match request.tail_lines {
        Some(n) => {
            let lines: Vec<&str> = text.lines().collect();
            let start = lines.len().saturating_sub(n);
            lines[start..].iter().map(|l| format!("{l}\n")).collect()
        }
        None => text.to_owned(),
    };
    if let Some(limit) = request.limit_bytes {
        let mut cut = limit.min(out.len());
        while !out.is_char_boundary(cut) {
            cut -= 1;
        }
        out.truncate(cut);
    }
    out
}

async fn serve<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S, layout: &Layout) {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16 * 1024 {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let head = String::from_utf8_lossy(&head);
    let found = parse(&head)
        .ok_or_else(|| "only GET /containerLogs/... is served".to_owned())
        .and_then(|r| {
            crate::layout::log_file(layout, &r.namespace, &r.pod, Some(&r.container))
                .map(|file| (r, file))
        });
    let (request, file) = match found {
        Ok(found) => found,
        Err(message) => {
            let response = format!(
                "HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{message}",
                message.len()
            );
            let _ = stream.write_all(response.as_bytes()).await;
            let _ = stream.shutdown().await;
            return;
        }
    };
    let header = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\n";
    if stream.write_all(header.as_bytes()).await.is_err() {
        return;
    }
    let text = std::fs::read(&file).unwrap_or_default();
    let mut offset = text.len();
    let first = select(&String::from_utf8_lossy(&text), &request);
    if stream.write_all(first.as_bytes()).await.is_err() {
        return;
    }
    if request.follow {
        follow(&mut stream, &file, &mut offset).await;
    }
    let _ = stream.shutdown().await;
}

/// Streams what is appended to the log until the container exits, the
/// client goes away or the pod's directory is removed.
async fn follow<S: AsyncWrite + Unpin>(stream: &mut S, file: &Path, offset: &mut usize) {
    loop {
        // Checked before reading, so that the last lines are always sent.
        let exited = exited_marker(file).exists();
        let Ok(bytes) = std::fs::read(file) else {
            return;
        };
        if bytes.len() > *offset {
            if stream.write_all(&bytes[*offset..]).await.is_err() || stream.flush().await.is_err() {
                return;
            }
            *offset = bytes.len();
        }
        if exited {
            return;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_requests_parse_path_and_options() {
        let r = parse(
            "GET /containerLogs/ns/pod-0/main?follow=true&tailLines=5 HTTP/1.1\r\nHost: x\r\n\r\n",
        )
        .unwrap();
        assert_eq!(
            (r.namespace.as_str(), r.pod.as_str(), r.container.as_str()),
            ("ns", "pod-0", "main")
        );
        assert_eq!(r.tail_lines, Some(5));
        assert!(r.follow);
        assert!(parse("GET /exec/ns/pod/c HTTP/1.1\r\n\r\n").is_none());
    }

    #[test]
    fn tail_and_limit_cut_the_log() {
        let r =
            parse("GET /containerLogs/a/b/c?tailLines=2&limitBytes=4 HTTP/1.1\r\n\r\n").unwrap();
        assert_eq!(select("1\n2\n3\n4\n", &r), "3\n4\n");
        let r = parse("GET /containerLogs/a/b/c?tailLines=2 HTTP/1.1\r\n\r\n").unwrap();
        assert_eq!(select("1\n2\n3\n4\n", &r), "3\n4\n");
    }
}
