//! Pure diagnoses read off Kubernetes objects: why a data claim waits for a
//! volume, why a pod's init container keeps failing. Each turns what the
//! reconcile read into problems; none reads or writes anything itself.

pub mod claims;
pub mod init_failures;
