//! `ganpaint serve`: the editing server on port 5001.

pub fn run(config: crate::serve::ServeConfig) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(crate::serve::serve(config))
}
