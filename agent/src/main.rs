//! `zennet-agent`: wires the library's modules together; nothing more.

fn main() -> anyhow::Result<()> {
    Ok(())
}
