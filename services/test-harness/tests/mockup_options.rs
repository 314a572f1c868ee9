//! The mockup server's options: `$expand`, paged collections and expiring sessions.

use std::path::PathBuf;
use std::time::Duration;

use reqwest::{Client, StatusCode};
use serde_json::{json, Value};
use test_harness::mockup::{serve_mockup, serve_mockup_with, MockupOptions};
use test_harness::paths::redfish_mockups_dir;

const DMTF_MEMORY: &str = "/redfish/v1/Systems/437XR1138R2/Memory";
const HPE_MEMORY: &str = "/redfish/v1/Systems/1/Memory/";

fn mockup(name: &str) -> PathBuf {
    redfish_mockups_dir().join(name)
}

fn dmtf() -> PathBuf {
    mockup("dmtf-public-rackmount1")
}

fn hpe() -> PathBuf {
    mockup("hpe-proliant-xl675d-gen10plus-a100")
}

fn file(dir: &std::path::Path, path: &str) -> Value {
    let file = dir.join(path.trim_matches('/')).join("index.json");
    serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap()
}

fn client() -> Client {
    Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

async fn get(base: &str, path: &str) -> Value {
    let response = client().get(format!("{base}{path}")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK, "{path}");
    response.json().await.unwrap()
}

#[tokio::test]
async fn expand_is_advertised_and_inlines_members_one_level() {
    let dir = dmtf();
    let server = serve_mockup_with(
        &dir,
        MockupOptions {
            expand: true,
            ..MockupOptions::default()
        },
    )
    .await;
    let base = server.base_url();

    let root = get(&base, "/redfish/v1/").await;
    let features = &root["ProtocolFeaturesSupported"];
    assert_eq!(
        features["ExpandQuery"],
        json!({"ExpandAll": true, "Levels": true, "Links": true, "NoLinks": true, "MaxLevels": 1})
    );
    assert_eq!(
        features["SelectQuery"],
        file(&dir, "redfish/v1")["ProtocolFeaturesSupported"]["SelectQuery"],
        "the file's other features stay"
    );

    let recorded = file(&dir, DMTF_MEMORY);
    for query in [
        "$expand=.",
        "$expand=*",
        "$expand=.($levels=1)",
        "$expand=*($levels=1)",
        "%24expand=%2E(%24levels%3D1)",
    ] {
        let expanded = get(&base, &format!("{DMTF_MEMORY}?{query}")).await;
        let members = expanded["Members"].as_array().unwrap();
        assert_eq!(members.len(), 4, "{query}");
        for (member, link) in members.iter().zip(recorded["Members"].as_array().unwrap()) {
            let id = link["@odata.id"].as_str().unwrap();
            assert_eq!(member, &file(&dir, id), "{query}: {id}");
        }
    }
    let unexpanded = get(&base, &format!("{DMTF_MEMORY}?$expand=~")).await;
    assert_eq!(unexpanded, recorded, "only one level of . or * is served");
    let plain = get(&base, DMTF_MEMORY).await;
    assert_eq!(plain, recorded);
    assert_eq!(server.expand_requests(), 6);
}

#[tokio::test]
async fn without_expand_the_root_is_as_recorded_and_expand_is_ignored() {
    let dir = dmtf();
    let server = serve_mockup(&dir).await;
    let base = server.base_url();
    let root = client()
        .get(format!("{base}/redfish/v1"))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(
        root,
        std::fs::read(dir.join("redfish/v1/index.json")).unwrap()
    );
    let ignored = get(&base, &format!("{DMTF_MEMORY}?$expand=.")).await;
    assert_eq!(ignored, file(&dir, DMTF_MEMORY));
    assert_eq!(server.expand_requests(), 1);
}

/// Follows `Members@odata.nextLink` from `path`, checking each page; returns every member.
async fn all_pages(base: &str, path: &str, page_size: usize, total: usize) -> Vec<Value> {
    let mut members = Vec::new();
    let mut next = Some(format!("{path}?$expand=."));
    let mut pages = 0;
    while let Some(page_path) = next {
        let page = get(base, &page_path).await;
        let page_members = page["Members"].as_array().unwrap();
        assert!(page_members.len() <= page_size);
        assert_eq!(page["Members@odata.count"], json!(total));
        members.extend(page_members.iter().cloned());
        next = page["Members@odata.nextLink"].as_str().map(str::to_string);
        pages += 1;
        assert!(pages <= total, "paging does not end");
    }
    assert_eq!(pages, total.div_ceil(page_size));
    members
}

#[tokio::test]
async fn collections_are_paged_with_next_links() {
    let dir = hpe();
    let server = serve_mockup_with(
        &dir,
        MockupOptions {
            page_size: Some(10),
            ..MockupOptions::default()
        },
    )
    .await;
    let base = server.base_url();
    let recorded = file(&dir, HPE_MEMORY);

    let first = get(&base, HPE_MEMORY).await;
    assert_eq!(first["Members"].as_array().unwrap().len(), 10);
    assert_eq!(
        first["Members@odata.nextLink"],
        json!(format!("{HPE_MEMORY}?$skip=10"))
    );
    let last = get(&base, &format!("{HPE_MEMORY}?$skip=30")).await;
    assert_eq!(last["Members"].as_array().unwrap().len(), 2);
    assert!(last.get("Members@odata.nextLink").is_none());

    let members = all_pages(&base, HPE_MEMORY, 10, 32).await;
    assert_eq!(&Value::Array(members), &recorded["Members"], "no expand");

    let short = "/redfish/v1/Systems/1/EthernetInterfaces/";
    assert_eq!(get(&base, short).await, file(&dir, short), "6 members fit");
    assert_eq!(server.expand_requests(), 1);
}

#[tokio::test]
async fn expand_applies_to_the_members_of_a_page() {
    let dir = hpe();
    let server = serve_mockup_with(
        &dir,
        MockupOptions {
            expand: true,
            page_size: Some(10),
            ..MockupOptions::default()
        },
    )
    .await;
    let members = all_pages(&server.base_url(), HPE_MEMORY, 10, 32).await;
    assert_eq!(server.expand_requests(), 4, "next links keep $expand");
    let recorded = file(&dir, HPE_MEMORY);
    assert_eq!(members.len(), 32);
    for (member, link) in members.iter().zip(recorded["Members"].as_array().unwrap()) {
        let id = link["@odata.id"].as_str().unwrap();
        assert_eq!(member, &file(&dir, id), "{id}");
    }
}

#[tokio::test]
async fn sessions_expire_after_n_requests() {
    let server = serve_mockup_with(
        &hpe(),
        MockupOptions {
            credentials: Some(("admin".to_string(), "secret".to_string())),
            session_expire_after_requests: Some(2),
            ..MockupOptions::default()
        },
    )
    .await;
    let base = server.base_url();
    let http = client();
    let login = || async {
        let created = http
            .post(format!("{base}/redfish/v1/SessionService/Sessions"))
            .json(&json!({"UserName": "admin", "Password": "secret"}))
            .send()
            .await
            .unwrap();
        assert_eq!(created.status(), StatusCode::CREATED);
        let header = |name: &str| created.headers()[name].to_str().unwrap().to_string();
        (header("x-auth-token"), header("location"))
    };
    let system = format!("{base}/redfish/v1/Systems/1/");
    let status = |token: String| {
        let request = http.get(&system).header("X-Auth-Token", token);
        async move { request.send().await.unwrap().status() }
    };

    let (token, _) = login().await;
    assert_eq!(status(token.clone()).await, StatusCode::OK);
    assert_eq!(status(token.clone()).await, StatusCode::OK);
    assert_eq!(status(token.clone()).await, StatusCode::UNAUTHORIZED);
    assert_eq!(server.sessions_expired(), 1);
    assert_eq!(server.sessions_open(), 0);

    let (token, location) = login().await;
    assert_eq!(status(token.clone()).await, StatusCode::OK);
    let deleted = http
        .delete(format!("{base}{location}"))
        .header("X-Auth-Token", &token)
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
    assert_eq!(server.sessions_created(), 2);
    assert_eq!(server.sessions_deleted(), 1);
    assert_eq!(server.sessions_open(), 0);

    let basic = http
        .get(&system)
        .basic_auth("admin", Some("secret"))
        .send()
        .await
        .unwrap();
    assert_eq!(basic.status(), StatusCode::OK, "basic auth never expires");
}
