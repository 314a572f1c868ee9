//! BMC certificates: verified by default (against the public roots and `ca_file`), and
//! accepted unverified only for a BMC configured with `insecure_tls`.

use std::time::Duration;

use metal_core::config::{Credentials, RedfishConfig, Secret};
use metal_core::events::ScrapeFailureKind;
use redfish_scraper::http::{HttpSettings, Scraper, Target};
use test_harness::tls::TlsFront;

fn settings() -> HttpSettings {
    HttpSettings {
        request_timeout: Duration::from_secs(5),
        retries: 0,
        ..HttpSettings::from_config(&RedfishConfig::default())
    }
}

fn credentials() -> Credentials {
    Credentials {
        username: "root".to_string(),
        password: Secret::new("tls-test-password".to_string()),
    }
}

fn target<'a>(url: &'a str, credentials: &'a Credentials, insecure_tls: bool) -> Target<'a> {
    Target {
        base_url: url,
        credentials: Some(credentials),
        no_credentials_reason: None,
        insecure_tls,
    }
}

#[tokio::test]
async fn certificates_are_verified_unless_the_bmc_is_configured_otherwise() {
    let folder = test_harness::paths::mockup_folders()
        .into_iter()
        .find(|f| f.ends_with("dmtf-public-rackmount1"))
        .unwrap();
    let server = test_harness::mockup::serve_mockup(&folder).await;
    let front = TlsFront::start(server.addr()).await;
    let url = front.url();
    let credentials = credentials();

    // Default: an unknown CA is refused, and the reason says it is the certificate.
    let error = Scraper::new(settings())
        .unwrap()
        .scrape(target(&url, &credentials, false))
        .await
        .expect_err("an unknown CA must be refused");
    assert_eq!(error.kind(), ScrapeFailureKind::Unreachable);
    let reason = metal_core::error_chain(&error);
    assert!(
        reason.to_lowercase().contains("certificate"),
        "reason names the certificate: {reason}"
    );
    assert!(!reason.contains("tls-test-password"));

    // The CA in ca_file: verified and scraped.
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("bmc-ca.pem");
    std::fs::write(&ca_file, front.ca_pem()).unwrap();
    let walked = Scraper::new(HttpSettings {
        ca_file: Some(ca_file),
        ..settings()
    })
    .unwrap()
    .scrape(target(&url, &credentials, false))
    .await
    .unwrap();
    assert_eq!(walked.inventory.systems.len(), 1);

    // This BMC configured with insecure_tls: scraped without verification.
    let walked = Scraper::new(settings())
        .unwrap()
        .scrape(target(&url, &credentials, true))
        .await
        .unwrap();
    assert_eq!(walked.inventory.systems.len(), 1);

    // A CA file that is not PEM is a clear start-up error.
    let garbage = dir.path().join("garbage.pem");
    std::fs::write(&garbage, "not a certificate").unwrap();
    let error = Scraper::new(HttpSettings {
        ca_file: Some(garbage),
        ..settings()
    })
    .err()
    .expect("garbage CA file refused");
    assert!(metal_core::error_chain(&error).contains("garbage.pem"));
}

#[test]
fn per_bmc_insecure_tls_applies_to_that_bmc_only() {
    let config: metal_core::config::Config = metal_core::config::Config::from_parts(
        r#"
[redfish]
credentials = [ { bmc_mac = "aa:bb:cc:00:00:01", insecure_tls = true } ]
"#,
        None,
        &[],
    )
    .unwrap();
    let mac = |text: &str| metal_core::Mac::parse_any(text).unwrap();
    assert!(
        config
            .redfish
            .access_for(&mac("aa:bb:cc:00:00:01"))
            .insecure_tls
    );
    assert!(
        !config
            .redfish
            .access_for(&mac("aa:bb:cc:00:00:02"))
            .insecure_tls
    );
}
