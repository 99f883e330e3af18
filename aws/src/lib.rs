//! What the operator and the sidecar share about AWS: one SDK
//! configuration (the standard credential chain: IRSA, EKS Pod Identity,
//! environment; rustls on ring; bounded calls) and the binary log
//! archive in S3 as both read it ([`archive`]).

pub mod archive;

use std::time::Duration;

/// The SDK configuration from the standard chain, each call bounded by
/// `operation_timeout` (connecting by 3 s). `AWS_REGION` and the
/// `AWS_ENDPOINT_URL_*` variables are honoured as usual.
pub async fn config(operation_timeout: Duration) -> aws_config::SdkConfig {
    use aws_smithy_http_client::tls::{Provider, rustls_provider::CryptoMode};
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(Provider::Rustls(CryptoMode::Ring))
        .build_https();
    let timeouts = aws_config::timeout::TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(3))
        .operation_timeout(operation_timeout)
        .build();
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .http_client(http)
        .timeout_config(timeouts)
        .load()
        .await
}

/// An S3 client on `config`; path-style addressing when an endpoint is
/// set (S3-compatible stores, the local cluster).
pub fn s3(config: &aws_config::SdkConfig) -> aws_sdk_s3::Client {
    let path_style = std::env::var_os("AWS_ENDPOINT_URL_S3").is_some()
        || std::env::var_os("AWS_ENDPOINT_URL").is_some();
    aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(config)
            .force_path_style(path_style)
            .build(),
    )
}
