//! The `dom-router` binary as a process: config checking, and serving until SIGTERM.

use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

const BIN: &str = env!("CARGO_BIN_EXE_dom-router");

#[test]
fn check_config_accepts_the_shipped_config() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/config");
    let out = Command::new(BIN)
        .args(["check-config", dir])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("nodes: 31"), "{stdout}");
    assert!(stdout.trim_end().ends_with("ok"), "{stdout}");
}

#[test]
fn check_config_names_the_file_and_field_of_a_mistake() {
    let dir = tempfile::tempdir().unwrap();
    let network =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config/network.toml"))
            .unwrap()
            .replacen("kind = \"store\"", "kind = \"shop\"", 1);
    std::fs::write(dir.path().join("network.toml"), network).unwrap();
    std::fs::copy(
        concat!(env!("CARGO_MANIFEST_DIR"), "/config/segments.toml"),
        dir.path().join("segments.toml"),
    )
    .unwrap();
    let out = Command::new(BIN)
        .arg("check-config")
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("network.toml"), "{stderr}");
    assert!(stderr.contains("unknown variant `shop`"), "{stderr}");
}

#[test]
fn check_config_refuses_a_bad_environment_override() {
    let out = Command::new(BIN)
        .arg("check-config")
        .env("DOM_ROUTER__HOLDS__MAX_TTL_SECS", "-1")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("DOM_ROUTER__HOLDS__MAX_TTL_SECS"),
        "{stderr}"
    );
    assert!(stderr.contains("holds.max_ttl_secs"), "{stderr}");
}

#[tokio::test]
async fn serve_answers_and_stops_cleanly_on_sigterm() {
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut child = Command::new(BIN)
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let status = loop {
        let attempt = async {
            let channel =
                tonic::transport::Channel::from_shared(format!("http://127.0.0.1:{port}"))
                    .ok()?
                    .connect()
                    .await
                    .ok()?;
            let mut health = HealthClient::new(channel);
            let r = health
                .check(HealthCheckRequest {
                    service: String::new(),
                })
                .await
                .ok()?;
            Some(r.into_inner().status())
        };
        match attempt.await {
            Some(ServingStatus::Serving) => break ServingStatus::Serving,
            _ if started.elapsed() > Duration::from_secs(30) => break ServingStatus::Unknown,
            _ => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    };
    assert_eq!(status, ServingStatus::Serving);
    let kill = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let deadline = Instant::now() + Duration::from_secs(20);
    let exit = loop {
        if let Some(exit) = child.try_wait().unwrap() {
            break Some(exit);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            break None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let exit = exit.expect("server exits after SIGTERM");
    assert!(exit.success(), "{exit:?}");
}
