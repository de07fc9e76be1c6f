//! Compiles `proto/` with protox (pure Rust), so building needs no `protoc` on the machine.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    // `sqlx::migrate!` embeds the migrations when the crate compiles: a migration added with no
    // change to the Rust code must rebuild it too.
    println!("cargo:rerun-if-changed=migrations");
    let fds = protox::compile(["cairn/v1/cairn.proto"], ["proto"])?;
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out.join("cairn_descriptor.bin"),
        prost::Message::encode_to_vec(&fds),
    )?;
    // Serialize lets the CLI print any response as JSON (`--json`) and the HTTP API answer in
    // it; ToSchema describes the same types in the HTTP API's OpenAPI document
    // (`src/api/http/`), so its responses are documented from the definitions they are made of.
    // The HTTP API reads the two nested option messages of its request bodies straight into
    // these types (unknown fields refused, absent ones zero as in protobuf).
    tonic_prost_build::configure()
        .type_attribute(".cairn.v1", "#[derive(serde::Serialize, utoipa::ToSchema)]")
        .message_attribute(
            ".cairn.v1.RetryPolicy",
            "#[derive(serde::Deserialize)] #[serde(default, deny_unknown_fields)]",
        )
        .message_attribute(
            ".cairn.v1.Timeouts",
            "#[derive(serde::Deserialize)] #[serde(default, deny_unknown_fields)]",
        )
        .compile_fds(fds)?;
    Ok(())
}
