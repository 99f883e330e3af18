//! How EC2's errors read (the client is made from `ebisu_aws::config`, the
//! standard AWS credential chain: IRSA, EKS Pod Identity, environment). A
//! leaf: the features that call EC2 (`volumes`, `fencing`, `backups`,
//! `restore`) share it.

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
