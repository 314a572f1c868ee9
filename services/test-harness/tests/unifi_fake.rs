//! The fake UniFi controller is as strict as the real ones the shared README describes.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use reqwest::header::HeaderMap;
use reqwest::{Client, StatusCode};
use serde_json::{json, Value};
use test_harness::paths::unifi_fixtures_dir;
use test_harness::unifi::{
    FakeUnifi, Fault, KnownIp, UnifiOptions, API_KEY, DEFAULT_SITE, INTEGRATION_CLIENTS, PASSWORD,
    REST_USER, STAT_STA, USERNAME,
};

fn fixture(name: &str) -> Value {
    let path = unifi_fixtures_dir().join(name);
    let text = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_slice(&text).unwrap()
}

/// rustls/webpki refuses a CA:TRUE certificate as a server's own (see the handshake test), so
/// these fake-only tests skip verification; the locator's client pins or trusts it itself.
fn client() -> Client {
    Client::builder()
        .danger_accept_invalid_certs(true)
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

async fn get(
    client: &Client,
    url: String,
    headers: &[(&str, &str)],
) -> (StatusCode, HeaderMap, Vec<u8>) {
    let mut request = client.get(url);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    (status, headers, response.bytes().await.unwrap().to_vec())
}

fn json_of(body: &[u8]) -> Value {
    serde_json::from_slice(body)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(body)))
}

async fn login(client: &Client, url: String, username: &str, password: &str) -> reqwest::Response {
    client
        .post(url)
        .json(&json!({"username": username, "password": password, "rememberMe": true}))
        .send()
        .await
        .unwrap()
}

fn set_cookies(headers: &HeaderMap) -> Vec<String> {
    headers
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn a_refused_certificate_does_not_stop_the_server() {
    let fake = FakeUnifi::start(UnifiOptions::classic()).await;
    let fingerprint = fake.cert_sha256();
    assert_eq!(fingerprint.len(), 32 * 3 - 1);
    assert!(fingerprint.split(':').all(|pair| pair.len() == 2
        && pair
            .chars()
            .all(|c| c.is_ascii_digit() || c.is_ascii_uppercase())));
    assert!(fake.ca_pem().starts_with("-----BEGIN CERTIFICATE-----"));
    assert!(fake.url().starts_with("https://127.0.0.1:"));

    // Trusting the certificate as a root is not enough for webpki: it is CA:TRUE yet presented
    // as the server's own certificate, exactly the case the real client must handle itself.
    let strict = Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(fake.ca_pem().as_bytes()).unwrap())
        .build()
        .unwrap();
    let refused = strict.get(fake.url()).send().await;
    assert!(
        refused.is_err(),
        "webpki accepted a CA:TRUE end-entity certificate"
    );
    let error = format!("{:?}", refused.err());
    assert!(error.contains("CaUsedAsEndEntity"), "{error}");
    // The client gives up before the server has read its alert.
    let deadline = Instant::now() + Duration::from_secs(2);
    while fake.handshake_failures() == 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(fake.handshake_failures(), 1);

    let (status, headers, _) = get(&client(), fake.url(), &[]).await;
    assert_eq!(status, StatusCode::FOUND);
    assert_eq!(headers["location"], "/manage");
    assert_eq!(fake.probes(), 1);
}

#[tokio::test]
async fn classic_needs_a_session_and_serves_the_fixture_clients() {
    let fake = FakeUnifi::start(UnifiOptions::classic().site("lab")).await;
    let client = client();
    let sta = format!("{}/api/s/default/stat/sta", fake.url());

    let (status, _, body) = get(&client, sta.clone(), &[]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(json_of(&body), fixture("classic-login-required.json"));

    let wrong = login(
        &client,
        format!("{}/api/login", fake.url()),
        USERNAME,
        "nope",
    )
    .await;
    assert_eq!(wrong.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        wrong.json::<Value>().await.unwrap(),
        fixture("classic-login-invalid.json")
    );
    // UniFi OS paths don't exist on a classic controller.
    let os = login(
        &client,
        format!("{}/api/auth/login", fake.url()),
        USERNAME,
        PASSWORD,
    )
    .await;
    assert_eq!(os.status(), StatusCode::NOT_FOUND);

    let ok = login(
        &client,
        format!("{}/api/login", fake.url()),
        USERNAME,
        PASSWORD,
    )
    .await;
    assert_eq!(ok.status(), StatusCode::OK);
    let cookies = set_cookies(ok.headers());
    let session = cookies
        .iter()
        .find(|c| c.starts_with("unifises="))
        .expect("unifises cookie");
    assert!(session.ends_with("; Path=/; Secure; HttpOnly"), "{session}");
    assert!(
        !session.contains("Q2xhc3NpY1Nlc3Npb25JZEV4YW1wbGUw"),
        "the session is fresh"
    );
    assert!(cookies.iter().any(|c| c.starts_with("csrf_token=")));
    assert_eq!(
        ok.json::<Value>().await.unwrap(),
        fixture("classic-login-ok.json")
    );
    // A second login is a second, different session.
    let again = login(
        &self::client(),
        format!("{}/api/login", fake.url()),
        USERNAME,
        PASSWORD,
    )
    .await;
    assert_eq!(again.status(), StatusCode::OK);
    let other = set_cookies(again.headers())
        .into_iter()
        .find(|c| c.starts_with("unifises="));
    assert_ne!(other.as_deref(), Some(session.as_str()));

    let (status, _, body) = get(&client, sta.clone(), &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(json_of(&body), fixture("classic-stat-sta.json"));
    for (path, name) in [
        ("rest/user", "classic-rest-user.json"),
        ("stat/device", "classic-stat-device.json"),
    ] {
        let (status, _, body) =
            get(&client, format!("{}/api/s/default/{path}", fake.url()), &[]).await;
        assert_eq!(status, StatusCode::OK, "{path}");
        assert_eq!(json_of(&body), fixture(name), "{path}");
    }
    let (status, _, body) = get(&client, format!("{}/api/s/lab/stat/sta", fake.url()), &[]).await;
    assert_eq!(
        (status, json_of(&body)),
        (StatusCode::OK, fixture("classic-stat-sta-empty.json"))
    );
    let (status, _, body) = get(
        &client,
        format!("{}/api/s/nowhere/stat/sta", fake.url()),
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(json_of(&body), fixture("classic-no-site-context.json"));

    let out = client
        .post(format!("{}/api/logout", fake.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), StatusCode::OK);
    let (status, _, _) = get(&client, sta, &[]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    assert_eq!((fake.logins(), fake.failed_logins()), (2, 1));
    assert_eq!(fake.list_calls(STAT_STA), 5);
    assert_eq!(fake.list_calls(REST_USER), 1);
    assert_eq!(fake.probes(), 0);
}

#[tokio::test]
async fn second_factor_accounts_never_get_a_session() {
    let classic =
        FakeUnifi::start(UnifiOptions::classic().account_with_second_factor("mfa", "pw")).await;
    let answer = login(
        &client(),
        format!("{}/api/login", classic.url()),
        "mfa",
        "pw",
    )
    .await;
    assert_eq!(answer.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        answer.json::<Value>().await.unwrap(),
        fixture("classic-login-2fa-required.json")
    );

    let os =
        FakeUnifi::start(UnifiOptions::unifi_os().account_with_second_factor("mfa", "pw")).await;
    let answer = login(
        &client(),
        format!("{}/api/auth/login", os.url()),
        "mfa",
        "pw",
    )
    .await;
    assert_eq!(answer.status().as_u16(), 499);
    assert_eq!(
        answer.json::<Value>().await.unwrap(),
        fixture("unifios-login-sso-mfa-499.json")
    );
    assert_eq!(
        (
            os.second_factor_challenges(),
            os.logins(),
            os.sessions_open()
        ),
        (1, 0, 0)
    );
}

/// Logs in to UniFi OS and returns the CSRF token, checking it is the one inside the JWT.
async fn os_login(client: &Client, fake: &FakeUnifi) -> String {
    let response = login(
        client,
        format!("{}/api/auth/login", fake.url()),
        USERNAME,
        PASSWORD,
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    let csrf = response.headers()["x-csrf-token"]
        .to_str()
        .unwrap()
        .to_string();
    let token = set_cookies(response.headers())
        .into_iter()
        .find_map(|c| c.strip_prefix("TOKEN=").map(str::to_string))
        .expect("TOKEN cookie");
    assert!(
        token.ends_with("; path=/; samesite=none; secure; httponly"),
        "{token}"
    );
    let jwt = token.split(';').next().unwrap();
    let payload = jwt.split('.').nth(1).unwrap();
    let payload: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
    assert_eq!(payload["csrfToken"], csrf.as_str());
    assert_eq!(
        response.json::<Value>().await.unwrap(),
        fixture("unifios-login-ok.json")
    );
    csrf
}

#[tokio::test]
async fn unifi_os_needs_the_csrf_token_on_every_call() {
    let fake = FakeUnifi::start(UnifiOptions::unifi_os()).await;
    let client = client();
    let (status, headers, body) = get(&client, fake.url(), &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert!(headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    assert!(String::from_utf8_lossy(&body).contains("<html"));

    let wrong = login(
        &client,
        format!("{}/api/auth/login", fake.url()),
        USERNAME,
        "nope",
    )
    .await;
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    assert!(wrong.json::<Value>().await.unwrap()["code"].is_string());
    let classic = login(
        &client,
        format!("{}/api/login", fake.url()),
        USERNAME,
        PASSWORD,
    )
    .await;
    assert_eq!(classic.status(), StatusCode::NOT_FOUND);

    let csrf = os_login(&client, &fake).await;
    let sta = format!("{}/proxy/network/api/s/default/stat/sta", fake.url());
    let (status, _, body) = get(&client, sta.clone(), &[]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(json_of(&body), fixture("unifios-401.json"));
    let (status, _, _) = get(&client, sta.clone(), &[("X-CSRF-Token", "not-it")]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _, body) = get(&client, sta.clone(), &[("X-CSRF-Token", &csrf)]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(json_of(&body), fixture("classic-stat-sta.json"));
    // The CSRF header alone is not a session.
    let (status, _, _) = get(&self::client(), sta.clone(), &[("X-CSRF-Token", &csrf)]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // Classic paths are not served unprefixed, and the Integration API is not there at all.
    let (status, _, _) = get(
        &client,
        format!("{}/api/s/default/stat/sta", fake.url()),
        &[("X-CSRF-Token", &csrf)],
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let integration = format!("{}/proxy/network/integration/v1/info", fake.url());
    let (status, _, _) = get(&client, integration, &[("X-API-KEY", API_KEY)]).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let out = client
        .post(format!("{}/api/auth/logout", fake.url()))
        .header("X-CSRF-Token", &csrf)
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), StatusCode::OK);
    let (status, _, _) = get(&client, sta, &[("X-CSRF-Token", &csrf)]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_rotated_csrf_token_replaces_the_old_one() {
    let fake = FakeUnifi::start(UnifiOptions::unifi_os().rotate_csrf(true)).await;
    let client = client();
    let first = os_login(&client, &fake).await;
    let sta = format!("{}/proxy/network/api/s/default/stat/sta", fake.url());
    let (status, headers, _) = get(&client, sta.clone(), &[("X-CSRF-Token", &first)]).await;
    assert_eq!(status, StatusCode::OK);
    let second = headers["x-updated-csrf-token"]
        .to_str()
        .unwrap()
        .to_string();
    assert_ne!(second, first);
    let (status, _, _) = get(&client, sta.clone(), &[("X-CSRF-Token", &first)]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, headers, _) = get(&client, sta, &[("X-CSRF-Token", &second)]).await;
    assert_eq!(status, StatusCode::OK);
    assert!(headers.contains_key("x-updated-csrf-token"));
}

#[tokio::test]
async fn sessions_expire() {
    let fake =
        FakeUnifi::start(UnifiOptions::unifi_os().session_ttl(Duration::from_millis(300))).await;
    let client = client();
    let csrf = os_login(&client, &fake).await;
    let sta = format!("{}/proxy/network/api/s/default/stat/sta", fake.url());
    let (status, _, _) = get(&client, sta.clone(), &[("X-CSRF-Token", &csrf)]).await;
    assert_eq!(status, StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(350)).await;
    let (status, _, _) = get(&client, sta.clone(), &[("X-CSRF-Token", &csrf)]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    let classic = FakeUnifi::start(UnifiOptions::classic()).await;
    let client = self::client();
    let ok = login(
        &client,
        format!("{}/api/login", classic.url()),
        USERNAME,
        PASSWORD,
    )
    .await;
    assert_eq!(ok.status(), StatusCode::OK);
    let sta = format!("{}/api/s/default/stat/sta", classic.url());
    assert_eq!(get(&client, sta.clone(), &[]).await.0, StatusCode::OK);
    assert_eq!(classic.sessions_open(), 1);
    classic.expire_sessions();
    assert_eq!(get(&client, sta, &[]).await.0, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn repeated_failed_logins_are_rate_limited() {
    let options = UnifiOptions::unifi_os().login_limit(
        3,
        Duration::from_secs(60),
        Duration::from_millis(400),
    );
    let fake = FakeUnifi::start(options).await;
    let client = client();
    let url = format!("{}/api/auth/login", fake.url());
    for _ in 0..3 {
        assert_eq!(
            login(&client, url.clone(), USERNAME, "nope").await.status(),
            StatusCode::UNAUTHORIZED
        );
    }
    // Locked: even the right password is refused.
    let limited = login(&client, url.clone(), USERNAME, PASSWORD).await;
    assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(limited.headers()["retry-after"], "1");
    assert_eq!(
        limited.json::<Value>().await.unwrap(),
        fixture("unifios-login-rate-limited.json")
    );
    assert_eq!(
        (fake.failed_logins(), fake.rate_limited(), fake.logins()),
        (3, 1, 0)
    );
    tokio::time::sleep(Duration::from_millis(450)).await;
    assert_eq!(
        login(&client, url, USERNAME, PASSWORD).await.status(),
        StatusCode::OK
    );
    assert_eq!(fake.logins(), 1);
}

#[tokio::test]
async fn integration_api_needs_the_key_and_pages_like_the_fixtures() {
    let fake = FakeUnifi::start(UnifiOptions::integration()).await;
    let client = client();
    let base = format!("{}/proxy/network/integration/v1", fake.url());
    let site = fake.site_id(DEFAULT_SITE).unwrap();
    assert_eq!(site, fixture("integration-sites.json")["data"][0]["id"]);

    for headers in [&[][..], &[("X-API-KEY", "wrong")][..]] {
        let (status, _, body) = get(&client, format!("{base}/sites"), headers).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        let body = json_of(&body);
        let expected = fixture("integration-error-401.json");
        assert_eq!(body["statusCode"], 401);
        assert_eq!(body["code"], expected["code"]);
        assert_eq!(body["requestPath"], "/integration/v1/sites");
        let keys = |v: &Value| v.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
        assert_eq!(keys(&body), keys(&expected));
    }
    let key = [("x-api-key", API_KEY)];
    let (status, _, body) = get(&client, format!("{base}/info"), &key).await;
    assert_eq!(
        (status, json_of(&body)["applicationVersion"].clone()),
        (StatusCode::OK, json!("9.1.0"))
    );
    let (_, _, body) = get(&client, format!("{base}/sites"), &key).await;
    assert_eq!(json_of(&body), fixture("integration-sites.json"));

    let clients = format!("{base}/sites/{site}/clients");
    let (status, headers, body) = get(&client, format!("{clients}?offset=0&limit=2"), &key).await;
    assert_eq!(status, StatusCode::OK);
    assert!(headers.get("set-cookie").is_none());
    assert_eq!(json_of(&body), fixture("integration-clients-page1.json"));
    let (_, _, body) = get(&client, format!("{clients}?offset=2&limit=2"), &key).await;
    assert_eq!(json_of(&body), fixture("integration-clients-page2.json"));
    // The field order of a live answer is kept.
    let text = String::from_utf8(body).unwrap();
    assert!(text.starts_with(
        r#"{"offset":2,"limit":2,"count":1,"totalCount":3,"data":[{"type":"WIRED","id":"#
    ));

    let filter = client
        .get(&clients)
        .header("X-API-Key", API_KEY)
        .query(&[("filter", "macAddress.eq('02:00:5e:10:00:02')")])
        .send()
        .await
        .unwrap();
    assert_eq!(
        filter.json::<Value>().await.unwrap(),
        fixture("integration-clients-filtered.json")
    );
    let upper = client
        .get(&clients)
        .header("X-API-Key", API_KEY)
        .query(&[("filter", "macAddress.eq('02:00:5E:10:00:02')")])
        .send()
        .await
        .unwrap();
    assert_eq!(
        upper.json::<Value>().await.unwrap(),
        fixture("integration-clients-empty.json")
    );

    let (status, _, body) = get(&client, format!("{clients}?limit=500"), &key).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(json_of(&body)["statusCode"], 400);
    let (status, _, body) = get(&client, format!("{clients}?limit=200"), &key).await;
    assert_eq!(
        (status, json_of(&body)["count"].clone()),
        (StatusCode::OK, json!(3))
    );
    let unknown = format!("{base}/sites/00000000-0000-0000-0000-000000000000/clients");
    let (status, _, body) = get(&client, unknown, &key).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let body = json_of(&body);
    assert_eq!(body["code"], fixture("integration-error-404.json")["code"]);
    assert_eq!(
        body["requestPath"],
        "/integration/v1/sites/00000000-0000-0000-0000-000000000000/clients"
    );
    // By internalReference instead of the UUID: not a site id.
    let (status, _, _) = get(&client, format!("{base}/sites/default/clients"), &key).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(fake.list_calls(INTEGRATION_CLIENTS), 8);
}

#[tokio::test]
async fn clients_are_managed_at_runtime_and_keep_the_fixture_shape() {
    let fake = FakeUnifi::start(
        UnifiOptions::integration()
            .without_fixture_clients()
            .site("lab"),
    )
    .await;
    let client = client();
    let csrf = os_login(&client, &fake).await;
    let list = |site: &str, path: &str| format!("{}/proxy/network/api/s/{site}/{path}", fake.url());
    let (_, _, body) = get(
        &client,
        list("default", "stat/sta"),
        &[("X-CSRF-Token", &csrf)],
    )
    .await;
    assert_eq!(json_of(&body), fixture("classic-stat-sta-empty.json"));

    let started = Instant::now();
    for n in 0..2_000u32 {
        let mac = format!("02:00:5e:20:{:02x}:{:02x}", n >> 8, n & 0xff);
        fake.add_client(
            "default",
            &mac,
            Ipv4Addr::new(127, 1, (n >> 8) as u8, (n & 0xff) as u8),
        );
    }
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "adding clients took {:?}",
        started.elapsed()
    );
    fake.add_client("lab", "02:00:5E:30:00:01", Ipv4Addr::new(127, 0, 0, 9));
    fake.add_known_client(
        "lab",
        "02:00:5e:30:00:02",
        KnownIp::Fixed(Ipv4Addr::new(127, 0, 0, 10)),
        1_717_000_000,
    );
    fake.add_known_client(
        "lab",
        "02:00:5e:30:00:03",
        KnownIp::Last(Ipv4Addr::new(127, 0, 0, 11)),
        1_716_000_000,
    );

    let (_, _, body) = get(
        &client,
        list("default", "stat/sta"),
        &[("X-CSRF-Token", &csrf)],
    )
    .await;
    let data = json_of(&body)["data"].as_array().unwrap().clone();
    assert_eq!(data.len(), 2_000);
    let template = fixture("classic-stat-sta.json")["data"][1].clone();
    let keys = |v: &Value| v.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
    assert_eq!(keys(&data[0]), keys(&template));
    assert_eq!(data[0]["mac"], "02:00:5e:20:00:00");
    assert_eq!(data[0]["ip"], "127.1.0.0");
    assert_ne!(data[0]["_id"], template["_id"]);
    assert_ne!(data[0]["_id"], data[1]["_id"]);
    assert_eq!(data[0]["oui"], template["oui"]);

    let (_, _, body) = get(&client, list("lab", "stat/sta"), &[("X-CSRF-Token", &csrf)]).await;
    let lab = json_of(&body);
    assert_eq!(lab["data"].as_array().unwrap().len(), 1);
    assert_eq!(
        lab["data"][0]["mac"], "02:00:5e:30:00:01",
        "stored lowercase"
    );
    let (_, _, body) = get(
        &client,
        list("lab", "rest/user"),
        &[("X-CSRF-Token", &csrf)],
    )
    .await;
    let known = json_of(&body)["data"].as_array().unwrap().clone();
    assert_eq!(known.len(), 2);
    assert_eq!(
        (
            known[0]["use_fixedip"].clone(),
            known[0]["fixed_ip"].clone()
        ),
        (json!(true), json!("127.0.0.10"))
    );
    assert!(known[0].get("last_ip").is_none() && known[0].get("ip").is_none());
    assert_eq!(
        (known[1]["last_ip"].clone(), known[1]["last_seen"].clone()),
        (json!("127.0.0.11"), json!(1_716_000_000))
    );
    assert!(known[1].get("fixed_ip").is_none());

    let key = [("X-API-KEY", API_KEY)];
    let lab_id = fake.site_id("lab").unwrap();
    let integration = format!(
        "{}/proxy/network/integration/v1/sites/{lab_id}/clients",
        fake.url()
    );
    let (_, _, body) = get(&client, integration.clone(), &key).await;
    let page = json_of(&body);
    assert_eq!(
        (page["count"].clone(), page["totalCount"].clone()),
        (json!(1), json!(1))
    );
    let template = fixture("integration-clients-page1.json")["data"][0].clone();
    assert_eq!(keys(&page["data"][0]), keys(&template));
    assert_eq!(page["data"][0]["ipAddress"], "127.0.0.9");
    let sites = format!("{}/proxy/network/integration/v1/sites", fake.url());
    let (_, _, body) = get(&client, sites, &key).await;
    assert_eq!(json_of(&body)["data"][1]["internalReference"], "lab");

    fake.remove_client("lab", "02:00:5e:30:00:01");
    let (_, _, body) = get(&client, integration, &key).await;
    assert_eq!(json_of(&body)["totalCount"], 0);
    fake.clear_clients("default");
    let (_, _, body) = get(
        &client,
        list("default", "stat/sta"),
        &[("X-CSRF-Token", &csrf)],
    )
    .await;
    assert_eq!(json_of(&body), fixture("classic-stat-sta-empty.json"));
}

#[tokio::test]
async fn faults_answer_as_switched_on() {
    let fake = FakeUnifi::start(UnifiOptions::classic()).await;
    let client = client();
    let ok = login(
        &client,
        format!("{}/api/login", fake.url()),
        USERNAME,
        PASSWORD,
    )
    .await;
    assert_eq!(ok.status(), StatusCode::OK);
    let sta = format!("{}/api/s/default/stat/sta", fake.url());

    fake.set_fault(Some(Fault::Html));
    let (status, headers, _) = get(&client, sta.clone(), &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert!(headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    let html_login = login(
        &client,
        format!("{}/api/login", fake.url()),
        USERNAME,
        PASSWORD,
    )
    .await;
    assert!(html_login.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));

    fake.set_fault(Some(Fault::ErrorEnvelope {
        status: StatusCode::FORBIDDEN,
        msg: "api.err.NoPermission".to_string(),
    }));
    let (status, _, body) = get(&client, sta.clone(), &[]).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(
        json_of(&body),
        json!({"meta": {"rc": "error", "msg": "api.err.NoPermission"}, "data": []})
    );

    fake.set_fault(Some(Fault::HugeList { bytes: 10 << 20 }));
    let (status, headers, body) = get(&client, sta.clone(), &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert!(headers.get("content-length").is_none(), "streamed");
    assert!(
        body.len() >= 10 << 20 && body.len() < (10 << 20) + 4096,
        "{}",
        body.len()
    );
    let huge = json_of(&body);
    let data = huge["data"].as_array().unwrap();
    assert!(data.len() > 5_000);
    assert_ne!(data[0]["mac"], data[1]["mac"]);

    fake.set_fault(Some(Fault::Delay(Duration::from_millis(200))));
    let started = Instant::now();
    let (status, _, _) = get(&client, sta.clone(), &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert!(started.elapsed() >= Duration::from_millis(200));

    fake.set_fault(Some(Fault::Unavailable));
    assert_eq!(
        get(&client, sta.clone(), &[]).await.0,
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(
        get(&client, fake.url(), &[]).await.0,
        StatusCode::SERVICE_UNAVAILABLE
    );

    fake.set_fault(None);
    let (status, _, body) = get(&client, sta, &[]).await;
    assert_eq!(
        (status, json_of(&body)),
        (StatusCode::OK, fixture("classic-stat-sta.json"))
    );
    assert!(fake.requests() >= 9);
}

#[tokio::test]
async fn integration_faults_keep_the_error_shape() {
    let fake = FakeUnifi::start(UnifiOptions::integration()).await;
    let client = client();
    let site = fake.site_id(DEFAULT_SITE).unwrap();
    let clients = format!(
        "{}/proxy/network/integration/v1/sites/{site}/clients",
        fake.url()
    );
    let key = [("X-API-KEY", API_KEY)];
    fake.set_fault(Some(Fault::ErrorEnvelope {
        status: StatusCode::FORBIDDEN,
        msg: "api.authorization.forbidden".to_string(),
    }));
    let (status, _, body) = get(&client, clients.clone(), &key).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let body = json_of(&body);
    assert_eq!(
        (body["statusCode"].clone(), body["statusName"].clone()),
        (json!(403), json!("FORBIDDEN"))
    );
    assert_eq!(body["code"], "api.authorization.forbidden");

    fake.set_fault(Some(Fault::HugeList { bytes: 1 << 20 }));
    let (_, _, body) = get(&client, clients, &key).await;
    let page = json_of(&body);
    let count = page["data"].as_array().unwrap().len();
    assert_eq!(
        (page["count"].clone(), page["totalCount"].clone()),
        (json!(count), json!(count))
    );
    assert!(body.len() >= 1 << 20);
}
