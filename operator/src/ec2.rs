//! The EC2 client (aws-sdk-ec2 from the standard AWS credential chain:
//! IRSA, EKS Pod Identity, environment) and how its errors read. A leaf:
//! the features that call EC2 (`volumes`, `fencing`) share it.

use aws_sdk_ec2::Client;
use aws_sdk_ec2::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};

/// Why an EC2 call failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The call failed.
    #[error("failed to {action}: {message}")]
    Call {
        /// What we tried.
        action: String,
        /// EC2's error code and message, or the transport's.
        message: String,
    },
}

/// Maps a failed call to [`Error::Call`], with EC2's code and message when
/// it gave them.
pub fn call<E>(action: impl Into<String>) -> impl FnOnce(SdkError<E>) -> Error
where
    E: std::error::Error + Send + Sync + ProvideErrorMetadata + 'static,
{
    move |error| {
        let message = match (error.code(), error.message()) {
            (Some(code), Some(message)) => format!("{code}: {message}"),
            (Some(code), None) => code.to_owned(),
            _ => DisplayErrorContext(&error).to_string(),
        };
        Error::Call {
            action: action.into(),
            message,
        }
    }
}

/// An EC2 client from the standard AWS configuration chain, with rustls on
/// ring. `AWS_REGION` and `AWS_ENDPOINT_URL_EC2` are honoured as usual.
pub async fn client() -> Client {
    use aws_smithy_http_client::tls::{Provider, rustls_provider::CryptoMode};
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(Provider::Rustls(CryptoMode::Ring))
        .build_https();
    // Bounded calls: a fencing step runs inside a reconcile.
    let timeouts = aws_config::timeout::TimeoutConfig::builder()
        .connect_timeout(std::time::Duration::from_secs(3))
        .operation_timeout(std::time::Duration::from_secs(10))
        .build();
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .http_client(http)
        .timeout_config(timeouts)
        .load()
        .await;
    Client::new(&config)
}
