//! Compiles `proto/` with protox (pure Rust), so building needs no `protoc` on the machine.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    let fds = protox::compile(["cairn/v1/cairn.proto"], ["proto"])?;
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out.join("cairn_descriptor.bin"),
        prost::Message::encode_to_vec(&fds),
    )?;
    // Serialize lets the CLI print any response as JSON (`--json`).
    tonic_prost_build::configure()
        .type_attribute(".cairn.v1", "#[derive(serde::Serialize)]")
        .compile_fds(fds)?;
    Ok(())
}
