//! `dom-router serve` as a process of its own on Redis, as operators run replicas: killed for
//! real (SIGKILL) when a test needs a replica to die mid-work.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tonic::transport::Channel;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use super::redis::free_port;
use super::{InventoryClient, SourcingClient};

pub async fn health(channel: &Channel) -> Option<ServingStatus> {
    let reply = HealthClient::new(channel.clone())
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .ok()?;
    ServingStatus::try_from(reply.into_inner().status).ok()
}

pub async fn wait_for_health(channel: &Channel, want: ServingStatus) {
    for _ in 0..400 {
        if health(channel).await == Some(want) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("health did not become {want:?} within 20 s");
}

pub struct Replica {
    pub child: Child,
    pub channel: Channel,
    /// Its log file.
    pub log: std::path::PathBuf,
}

/// Where a replica keeps its data and reads its config.
pub struct Setup<'a> {
    pub urls: &'a [String],
    pub cluster: bool,
    pub prefix: &'a str,
    /// Where its log goes.
    pub logs: &'a Path,
    /// A config directory; none: the embedded demo.
    pub config: Option<&'a Path>,
}

impl Replica {
    pub async fn start(setup: &Setup<'_>) -> Self {
        let port = free_port();
        let log_path = setup.logs.join(format!("replica-{port}.log"));
        let log = std::fs::File::create(&log_path).unwrap();
        let urls = format!(
            "[{}]",
            setup
                .urls
                .iter()
                .map(|u| format!("\"{u}\""))
                .collect::<Vec<_>>()
                .join(",")
        );
        let mut command = Command::new(env!("CARGO_BIN_EXE_dom-router"));
        command.args(["serve", "--listen", &format!("127.0.0.1:{port}")]);
        if let Some(dir) = setup.config {
            command.arg("--config").arg(dir);
        }
        let child = command
            .env("DOM_ROUTER__STORE__KIND", "redis")
            .env("DOM_ROUTER__METRICS__LISTEN", "127.0.0.1:0")
            .env("DOM_ROUTER__STORE__SEED_STOCK", "false")
            .env("DOM_ROUTER__STORE__REDIS__URLS", urls)
            .env(
                "DOM_ROUTER__STORE__REDIS__CLUSTER",
                if setup.cluster { "true" } else { "false" },
            )
            .env("DOM_ROUTER__STORE__REDIS__KEY_PREFIX", setup.prefix)
            .env("DOM_ROUTER__STORE__REDIS__PENDING_TIMEOUT_MS", "1000")
            .env("DOM_ROUTER__HOLDS__SWEEP_INTERVAL_MS", "50")
            .env("DOM_ROUTER__HOLDS__FILL_INTERVAL_MS", "200")
            .env("DOM_ROUTER__SERVER__HEALTH_CHECK_INTERVAL_MS", "100")
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let endpoint = Channel::from_shared(format!("http://127.0.0.1:{port}")).unwrap();
        let started = Instant::now();
        let channel = loop {
            if let Ok(channel) = endpoint.connect().await {
                break channel;
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "replica on port {port} did not start; see {}",
                setup.logs.display()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        wait_for_health(&channel, ServingStatus::Serving).await;
        Self {
            child,
            channel,
            log: log_path,
        }
    }

    pub fn sourcing(&self) -> SourcingClient<Channel> {
        SourcingClient::new(self.channel.clone())
    }

    pub fn inventory(&self) -> InventoryClient<Channel> {
        InventoryClient::new(self.channel.clone())
    }

    /// SIGTERM, then up to 20 s for the process to exit, successfully: a graceful stop.
    pub fn terminate(&mut self) {
        let sent = std::process::Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(sent.success());
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(exit) = self.child.try_wait().unwrap() {
                assert!(exit.success(), "{exit:?}");
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no exit after SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGKILL: no drain, no lease let go, nothing flushed.
    pub fn kill(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
