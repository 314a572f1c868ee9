//! `onboard --file`: many BMC MACs at once, one request each, followed together with a
//! progress bar (on a terminal) until every machine is inventoried or has failed.

use std::collections::{HashMap, HashSet};
use std::process::ExitCode;
use std::time::Duration;

use futures::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};
use metal_core::query::Status;
use metal_core::{subjects, Decoded, Mac};
use uuid::Uuid;

use crate::client::{self, CliError};
use crate::commands::{print_json, request_onboarding, OnboardOptions};
use crate::render;

/// The BMC MACs of a file: one a line in any notation `onboard` takes, `#` starting a
/// comment, blank lines skipped, a MAC given twice kept once. Every line that is not a
/// MAC is an error naming it.
pub fn read_macs(text: &str) -> Result<Vec<Mac>, Vec<String>> {
    let mut macs = Vec::new();
    let mut seen = HashSet::new();
    let mut problems = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let number = index + 1;
        let word = line.split('#').next().unwrap_or_default().trim();
        if word.is_empty() {
            continue;
        }
        match Mac::parse_device(word) {
            Ok(mac) => {
                if seen.insert(mac) {
                    macs.push(mac);
                }
            }
            Err(error) => problems.push(format!(
                "line {number}: {:?} is not a BMC MAC: {error}",
                metal_core::one_line(word)
            )),
        }
    }
    if problems.is_empty() {
        Ok(macs)
    } else {
        Err(problems)
    }
}

/// The MACs of the file at `path` ([`read_macs`]), or what is wrong with it in words.
pub fn load_macs(path: &std::path::Path) -> Result<Vec<Mac>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    match read_macs(&text) {
        Ok(macs) if macs.is_empty() => Err(format!("{} holds no MAC", path.display())),
        Ok(macs) => Ok(macs),
        Err(problems) => Err(format!(
            "nothing onboarded: {} has lines that are not MACs:\n  {}",
            path.display(),
            problems.join("\n  ")
        )),
    }
}

/// How one request ended, as the stream tells.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Ended {
    Inventoried,
    Failed(String),
}

/// A bar of `len` steps on stderr, drawn only when stderr is a terminal.
pub(crate) fn bar(len: u64, what: &str) -> ProgressBar {
    let bar = ProgressBar::new(len);
    if let Ok(style) =
        ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} ({elapsed}, {eta} left)")
    {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(what.to_string());
    bar
}

/// Requests every MAC of `macs` (from [`load_macs`]) and follows them all (unless
/// `no_wait`): exit 0 when every machine is inventoried (and, with `--expect`, meets its
/// spec), 1 when some failed or the time ran out.
pub async fn onboard_many(
    client: &async_nats::Client,
    macs: Vec<Mac>,
    options: OnboardOptions,
) -> Result<ExitCode, CliError> {
    let deadline = tokio::time::Instant::now() + options.timeout;
    let requesting = bar(macs.len() as u64, "requesting ");
    let mut requests: HashMap<Uuid, Mac> = HashMap::new();
    let mut first_sequence = None;
    for mac in &macs {
        let (request_id, ack) = request_onboarding(client, *mac, &options, deadline).await?;
        first_sequence.get_or_insert(ack.sequence);
        requests.insert(request_id, *mac);
        if options.json {
            print_json(&serde_json::json!({
                "request_id": request_id, "bmc_mac": mac, "sequence": ack.sequence
            }));
        } else if options.no_wait {
            println!("{mac} {request_id}");
        }
        requesting.inc(1);
    }
    requesting.finish_and_clear();
    eprintln!("requested  {} machines", macs.len());
    if options.no_wait {
        return Ok(ExitCode::SUCCESS);
    }
    let Some(from) = first_sequence else {
        return Ok(ExitCode::SUCCESS);
    };
    let following = bar(macs.len() as u64, "onboarding");
    let followed = tokio::time::timeout_at(
        deadline,
        follow_all(client, from, &requests, &options, &following),
    )
    .await;
    following.finish_and_clear();
    let (ended, last_sequence) = match followed {
        Ok(result) => result?,
        Err(_) => {
            eprintln!(
                "metal-cli: not every machine was onboarded within {:?}; `metal-cli machines` shows where each is",
                options.timeout
            );
            return Ok(ExitCode::FAILURE);
        }
    };
    // Success means the inventory shows it: wait for the projection to reach the last answer.
    loop {
        let status: Result<Status, _> = client::query(
            client,
            subjects::QUERY_STATUS,
            &serde_json::json!({}),
            Duration::from_secs(5),
        )
        .await;
        if status.is_ok_and(|s| s.last_sequence >= last_sequence) {
            break;
        }
        if tokio::time::Instant::now() > deadline {
            eprintln!("metal-cli: the inventory has not caught up with the answers yet");
            return Ok(ExitCode::FAILURE);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let failed: Vec<(Mac, String)> = macs
        .iter()
        .filter_map(|mac| match ended.get(mac) {
            Some(Ended::Failed(why)) => Some((*mac, why.clone())),
            _ => None,
        })
        .collect();
    eprintln!(
        "onboarded  {} inventoried, {} failed",
        macs.len() - failed.len(),
        failed.len()
    );
    if failed.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        for (mac, why) in &failed {
            eprintln!("failed     {mac}: {why}");
        }
        Ok(ExitCode::FAILURE)
    }
}

/// Follows the stream from `from` until every request has ended; how each did, and the
/// sequence of the last answer.
async fn follow_all(
    client: &async_nats::Client,
    from: u64,
    requests: &HashMap<Uuid, Mac>,
    options: &OnboardOptions,
    progress: &ProgressBar,
) -> Result<(HashMap<Mac, Ended>, u64), CliError> {
    let js = client::jetstream(client);
    let stream = js
        .get_stream(subjects::STREAM)
        .await
        .map_err(|e| CliError::Other(format!("cannot open the MACHINES stream: {e}")))?;
    let messages = metal_core::jetstream::follow_stream(&stream, from).await?;
    let mut messages = std::pin::pin!(messages);
    let mut ended = HashMap::new();
    let mut last_sequence = from;
    while ended.len() < requests.len() {
        let Some(item) = messages.next().await else {
            break;
        };
        let message = item?;
        let Decoded::Event(event) = message.decode() else {
            continue;
        };
        let Some(mac) = requests.get(&event.correlation_id) else {
            continue;
        };
        let outcome = match event.event_type.as_str() {
            subjects::HARDWARE_SCRAPED if options.expect.is_none() => Ended::Inventoried,
            subjects::HARDWARE_VALIDATED => Ended::Inventoried,
            subjects::HARDWARE_INVALID
            | subjects::LOCATE_FAILED
            | subjects::SCRAPE_FAILED
            | subjects::ONBOARD_REJECTED => Ended::Failed(render::progress(&event)),
            _ => continue,
        };
        if ended.contains_key(mac) {
            continue;
        }
        last_sequence = message.sequence;
        if options.json {
            progress.suspend(|| print_json(&event));
        } else if let Ended::Failed(why) = &outcome {
            progress.suspend(|| eprintln!("failed     {mac}: {why}"));
        }
        ended.insert(*mac, outcome);
        progress.inc(1);
    }
    Ok((ended, last_sequence))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_of_macs_in_any_notation_with_comments_and_repeats() {
        let text = "# rack 12\naa:bb:cc:00:00:01\n\nAA-BB-CC-00-00-02  # top\naabb.cc00.0003\naa:bb:cc:00:00:01\n";
        let macs = read_macs(text).unwrap();
        let shown: Vec<String> = macs.iter().map(Mac::to_string).collect();
        assert_eq!(
            shown,
            [
                "aa:bb:cc:00:00:01",
                "aa:bb:cc:00:00:02",
                "aa:bb:cc:00:00:03"
            ]
        );
    }

    #[test]
    fn every_line_that_is_not_a_mac_is_named() {
        let problems = read_macs("aa:bb:cc:00:00:01\nnot-a-mac\n01:00:5e:00:00:01\n").unwrap_err();
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(
            problems[0].starts_with("line 2: \"not-a-mac\""),
            "{problems:?}"
        );
        assert!(problems[1].starts_with("line 3: "), "{problems:?}");
    }
}
