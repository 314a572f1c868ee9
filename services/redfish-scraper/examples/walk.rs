//! Prints the normalised inventory of a recorded mockup folder (DMTF layout) as JSON:
//! `cargo run -p redfish-scraper --example walk -- <dir>`.

use redfish_scraper::source::MockupDirSource;
use redfish_scraper::walk::{walk, WalkLimits};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let Some(dir) = std::env::args().nth(1) else {
        anyhow::bail!("usage: walk <mockup folder>");
    };
    let walked = walk(&MockupDirSource::new(&dir), WalkLimits::default()).await?;
    println!("{}", serde_json::to_string_pretty(&walked.inventory)?);
    Ok(())
}
