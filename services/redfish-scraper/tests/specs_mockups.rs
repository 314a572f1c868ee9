mod common;

#[tokio::test]
async fn dump() {
    for folder in test_harness::paths::mockup_folders() {
        let inventory = common::walk_folder(&folder).await;
        let out = format!("/tmp/specs_dump_{}.json", common::folder_name(&folder));
        std::fs::write(out, serde_json::to_string_pretty(&inventory).unwrap()).unwrap();
    }
}
