//! `xencoind`: the XenCoin node. Parses arguments and runs the library.

fn main() -> anyhow::Result<()> {
    anyhow::bail!("xencoind: the node is not built yet (see issue: XenCoin chain node)")
}
