//! trivial-boot-server: boot-bench's baseline. One axum route on boot-api's path,
//! `GET /v1/boot/{mac}`, answering a fixed JSON boot spec (read once from `--body-file`)
//! without looking at the MAC, on the same runtime boot-api uses (`#[tokio::main]`).
//! boot-bench runs it as a process beside the boot-api binary, so both are measured alike.

use std::path::PathBuf;

use anyhow::Context;
use axum::http::header;
use axum::routing::get;
use bytes::Bytes;
use clap::Parser;

/// Answers `GET /v1/boot/{mac}` with the same JSON body every time.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// Address to listen on, e.g. 127.0.0.1:8082.
    #[arg(long)]
    listen: String,
    /// The JSON body of every answer.
    #[arg(long)]
    body_file: PathBuf,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let body = Bytes::from(
        std::fs::read(&args.body_file)
            .with_context(|| format!("reading {}", args.body_file.display()))?,
    );
    let router = axum::Router::new().route(
        "/v1/boot/{mac}",
        get(move || {
            let body = body.clone();
            async move { ([(header::CONTENT_TYPE, "application/json")], body) }
        }),
    );
    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    axum::serve(listener, router).await?;
    Ok(())
}
