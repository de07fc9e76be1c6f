//! The gRPC edge: generated types, services, conversions and the error mapping.
//!
//! Architecture invariant: nothing outside this module names a prost type.

/// Types and services generated from `proto/cairn/v1/cairn.proto`.
#[allow(missing_docs, clippy::all, reason = "generated code")]
pub mod pb {
    tonic::include_proto!("cairn.v1");

    /// The encoded file descriptor set, for gRPC reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("cairn_descriptor");
}
