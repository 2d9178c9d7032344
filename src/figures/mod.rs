//! `starvation figures`.
#[derive(Debug, Clone, clap::Args)]
pub struct FiguresOpts {}
pub async fn run(_opts: FiguresOpts) -> anyhow::Result<()> {
    Ok(())
}
