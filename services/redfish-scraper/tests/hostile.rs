//! Hostile BMCs: small fake servers on loopback that misbehave in one way each. Every
//! failure must be bounded (short timeouts here) and classified for the handler.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use axum::Router;
use metal_core::config::{Credentials, RedfishConfig, Secret};
use metal_core::events::ScrapeFailureKind;
use redfish_scraper::http::{scrape, HttpSettings};
use redfish_scraper::RedfishError;

/// A fake BMC: every request goes to `behaviour`; counts requests; aborted on drop.
struct FakeBmc {
    addr: SocketAddr,
    requests: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeBmc {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeBmc {
    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn requests(&self) -> u64 {
        self.requests.load(Ordering::SeqCst)
    }
}

#[derive(Clone)]
struct Fake {
    requests: Arc<AtomicU64>,
    behaviour: fn(&Uri, u64) -> Response,
    hang: bool,
}

async fn fake_answer(State(fake): State<Fake>, uri: Uri) -> Response {
    let count = fake.requests.fetch_add(1, Ordering::SeqCst) + 1;
    if fake.hang {
        std::future::pending::<()>().await;
    }
    (fake.behaviour)(&uri, count)
}

async fn fake_bmc(behaviour: fn(&Uri, u64) -> Response, hang: bool) -> FakeBmc {
    let requests = Arc::new(AtomicU64::new(0));
    let fake = Fake {
        requests: requests.clone(),
        behaviour,
        hang,
    };
    let app = Router::new()
        .route("/{*path}", any(fake_answer))
        .with_state(fake);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    FakeBmc {
        addr,
        requests,
        task,
    }
}

fn settings() -> HttpSettings {
    HttpSettings {
        request_timeout: Duration::from_millis(300),
        scrape_deadline: Duration::from_secs(20),
        retries: 2,
        backoff: Duration::from_millis(5),
        max_response_bytes: 1024 * 1024,
        ..HttpSettings::from_config(&RedfishConfig::default())
    }
}

fn credentials() -> Credentials {
    Credentials {
        username: "root".to_string(),
        password: Secret::new("hunter2-secret".to_string()),
    }
}

async fn scrape_fake(bmc: &FakeBmc, settings: HttpSettings) -> RedfishError {
    let error = scrape(&bmc.url(), &credentials(), &settings)
        .await
        .expect_err("a hostile BMC cannot yield an inventory");
    assert!(
        !metal_core::error_chain(&error).contains("hunter2"),
        "password in error: {error}"
    );
    error
}

#[tokio::test]
async fn server_errors_are_retried_then_transient() {
    let bmc = fake_bmc(
        |_, _| (StatusCode::INTERNAL_SERVER_ERROR, "boom").into_response(),
        false,
    )
    .await;
    let error = scrape_fake(&bmc, settings()).await;
    assert!(
        matches!(error, RedfishError::ServerError { status: 500, .. }),
        "{error:?}"
    );
    assert!(error.is_transient());
    assert_eq!(error.kind(), ScrapeFailureKind::Unreachable);
    assert_eq!(bmc.requests(), 3, "one try and two retries");
}

#[tokio::test]
async fn a_hanging_bmc_times_out() {
    let bmc = fake_bmc(|_, _| StatusCode::OK.into_response(), true).await;
    let error = scrape_fake(
        &bmc,
        HttpSettings {
            retries: 1,
            ..settings()
        },
    )
    .await;
    assert!(matches!(error, RedfishError::Timeout { .. }), "{error:?}");
    assert!(error.is_transient());
    assert_eq!(error.kind(), ScrapeFailureKind::Timeout);
    assert_eq!(bmc.requests(), 2);
}

#[tokio::test]
async fn the_scrape_deadline_bounds_a_slow_bmc() {
    let bmc = fake_bmc(|_, _| StatusCode::OK.into_response(), true).await;
    let settings = HttpSettings {
        request_timeout: Duration::from_secs(30),
        scrape_deadline: Duration::from_millis(300),
        ..settings()
    };
    let error = scrape_fake(&bmc, settings).await;
    assert!(matches!(error, RedfishError::Deadline { .. }), "{error:?}");
    assert_eq!(error.kind(), ScrapeFailureKind::Timeout);
    assert!(error.is_transient());
}

#[tokio::test]
async fn a_redirect_loop_is_refused() {
    let bmc = fake_bmc(
        |uri, count| {
            let target = format!("{}?hop={count}", uri.path());
            (StatusCode::FOUND, [(header::LOCATION, target)]).into_response()
        },
        false,
    )
    .await;
    let error = scrape_fake(&bmc, settings()).await;
    assert_eq!(error.kind(), ScrapeFailureKind::Protocol, "{error:?}");
    assert!(!error.is_transient());
    assert!(bmc.requests() <= 5, "followed {} redirects", bmc.requests());
}

#[tokio::test]
async fn a_redirect_to_another_host_is_refused() {
    let bmc = fake_bmc(
        |uri, _| {
            // Same machine, different host name: still another host.
            let target = format!("http://localhost:1{}", uri.path());
            (StatusCode::TEMPORARY_REDIRECT, [(header::LOCATION, target)]).into_response()
        },
        false,
    )
    .await;
    let error = scrape_fake(&bmc, settings()).await;
    assert_eq!(error.kind(), ScrapeFailureKind::Protocol, "{error:?}");
    assert_eq!(bmc.requests(), 1);
}

#[tokio::test]
async fn a_gigabyte_body_is_cut_off() {
    let bmc = fake_bmc(
        |_, _| {
            // 1 GiB in 64 KiB chunks, produced only as the client reads.
            let chunk = Bytes::from(vec![b' '; 64 * 1024]);
            let chunks = futures::stream::iter(
                (0..16 * 1024).map(move |_| Ok::<_, std::io::Error>(chunk.clone())),
            );
            (
                StatusCode::OK,
                [(header::CONTENT_TYPE, "application/json")],
                Body::from_stream(chunks),
            )
                .into_response()
        },
        false,
    )
    .await;
    let error = scrape_fake(&bmc, settings()).await;
    assert!(
        matches!(error, RedfishError::TooLarge { limit: 1048576, .. }),
        "{error:?}"
    );
    assert_eq!(error.kind(), ScrapeFailureKind::TooLarge);
    assert!(!error.is_transient());
    assert_eq!(bmc.requests(), 1, "a too-large answer is not retried");
}

#[tokio::test]
async fn a_declared_gigabyte_is_refused_before_reading() {
    let bmc = fake_bmc(
        |_, _| {
            let chunk = Bytes::from(vec![b' '; 64 * 1024]);
            let chunks = futures::stream::iter(
                (0..16 * 1024).map(move |_| Ok::<_, std::io::Error>(chunk.clone())),
            );
            (
                StatusCode::OK,
                [(header::CONTENT_LENGTH, (1u64 << 30).to_string())],
                Body::from_stream(chunks),
            )
                .into_response()
        },
        false,
    )
    .await;
    let error = scrape_fake(&bmc, settings()).await;
    assert_eq!(error.kind(), ScrapeFailureKind::TooLarge, "{error:?}");
}

#[tokio::test]
async fn unauthorised_is_an_auth_error_and_not_retried() {
    let bmc = fake_bmc(|_, _| StatusCode::UNAUTHORIZED.into_response(), false).await;
    let error = scrape_fake(&bmc, settings()).await;
    assert!(
        matches!(error, RedfishError::Auth { status: 401, .. }),
        "{error:?}"
    );
    assert_eq!(error.kind(), ScrapeFailureKind::Auth);
    assert!(!error.is_transient());
    // The unauthenticated service root, then one session attempt.
    assert_eq!(bmc.requests(), 2);
}

#[tokio::test]
async fn garbage_json_is_a_protocol_error() {
    let bmc = fake_bmc(
        |_, _| {
            (
                StatusCode::OK,
                [(header::CONTENT_TYPE, "application/json")],
                "{\"Systems\": [oops",
            )
                .into_response()
        },
        false,
    )
    .await;
    let error = scrape_fake(&bmc, settings()).await;
    assert!(
        matches!(error, RedfishError::InvalidJson { .. }),
        "{error:?}"
    );
    assert_eq!(error.kind(), ScrapeFailureKind::Protocol);
    assert!(!error.is_transient());
    assert_eq!(bmc.requests(), 1);
}
