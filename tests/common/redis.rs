//! Real Redis for tests and benchmarks: `redis-server` processes on free loopback ports, alone
//! or made into a Redis Cluster with `redis-cli --cluster create`. Each process is watched by a
//! small shell loop that stops it when the process that started it exits, so no server outlives
//! its test run, even one held in a `static`.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const HOW_TO_INSTALL: &str = "the Redis tests need redis-server and redis-cli on the PATH: \
    run ./scripts/test (which installs them) or `apt-get install redis-server`";

/// A free loopback port whose cluster bus port (port + 10000) is free too.
pub fn free_port() -> u16 {
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        if port < 55_000 && TcpListener::bind(("127.0.0.1", port + 10_000)).is_ok() {
            return port;
        }
    }
}

/// Sends one command in RESP and reads one reply, as text (errors start with `-`).
pub fn command(port: u16, args: &[&str]) -> std::io::Result<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut request = format!("*{}\r\n", args.len());
    for arg in args {
        request.push_str(&format!("${}\r\n{arg}\r\n", arg.len()));
    }
    stream.write_all(request.as_bytes())?;
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let line = line.trim_end().to_owned();
    if let Some(len) = line.strip_prefix('$') {
        let len: i64 = len.parse().unwrap_or(-1);
        if len < 0 {
            return Ok(String::new());
        }
        let mut body = vec![0; len as usize + 2];
        reader.read_exact(&mut body)?;
        body.truncate(len as usize);
        return Ok(String::from_utf8_lossy(&body).into_owned());
    }
    Ok(line)
}

/// One `redis-server` on 127.0.0.1, keeping nothing on disk.
pub struct RedisServer {
    pub port: u16,
    dir: PathBuf,
    _tmp: Option<tempfile::TempDir>,
    extra: Vec<String>,
}

impl RedisServer {
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    pub fn start_with(extra: &[&str]) -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_path_buf();
        let mut last = String::new();
        for _ in 0..5 {
            let mut server = Self {
                port: free_port(),
                dir: dir.clone(),
                _tmp: None,
                extra: extra.iter().map(|s| s.to_string()).collect(),
            };
            match server.launch() {
                Ok(()) => {
                    server._tmp = Some(tmp);
                    return server;
                }
                Err(e) => last = e,
            }
        }
        panic!("cannot start redis-server: {last}");
    }

    /// Starts one on a given port (which a test left free on purpose).
    pub fn start_on(port: u16) -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let mut server = Self {
            port,
            dir: tmp.path().to_path_buf(),
            _tmp: Some(tmp),
            extra: Vec::new(),
        };
        server.launch().unwrap();
        server
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn launch(&mut self) -> Result<(), String> {
        if Command::new("redis-server")
            .arg("--version")
            .stdout(Stdio::null())
            .status()
            .is_err()
        {
            panic!("{HOW_TO_INSTALL}");
        }
        let mut args = vec![
            "--port".to_owned(),
            self.port.to_string(),
            "--bind".into(),
            "127.0.0.1".into(),
            "--save".into(),
            "''".into(),
            "--appendonly".into(),
            "no".into(),
            "--dir".into(),
            self.dir.display().to_string(),
            "--logfile".into(),
            self.dir
                .join(format!("redis-{}.log", self.port))
                .display()
                .to_string(),
        ];
        args.extend(self.extra.iter().cloned());
        // the loop stops the server once the process that started it is gone
        let script = format!(
            "redis-server {} & r=$!; while kill -0 {} 2>/dev/null && kill -0 $r 2>/dev/null; do sleep 0.2; done; kill -9 $r 2>/dev/null; wait $r",
            args.join(" "),
            std::process::id()
        );
        Command::new("sh")
            .arg("-c")
            .arg(script)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("{HOW_TO_INSTALL} ({e})"))?;
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(10) {
            if command(self.port, &["PING"]).is_ok_and(|r| r == "+PONG") {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Err(format!(
            "redis-server on port {} did not answer within 10 s; see {}",
            self.port,
            self.dir.display()
        ))
    }

    /// Stops the server at once, keeping nothing.
    pub fn stop(&self) {
        let _ = command(self.port, &["SHUTDOWN", "NOSAVE"]);
        let started = Instant::now();
        while TcpStream::connect(("127.0.0.1", self.port)).is_ok()
            && started.elapsed() < Duration::from_secs(10)
        {
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Starts it again on the same port, empty, as a Redis that keeps nothing on disk would be.
    pub fn restart(&mut self) {
        self.stop();
        let started = Instant::now();
        loop {
            match self.launch() {
                Ok(()) => return,
                Err(e) if started.elapsed() > Duration::from_secs(20) => {
                    panic!("cannot restart redis-server: {e}")
                }
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The server's process id, as it reports it.
    pub fn pid(&self) -> u32 {
        let info = command_text(self.port, &["INFO", "server"]);
        info.lines()
            .find_map(|l| l.strip_prefix("process_id:"))
            .and_then(|p| p.trim().parse().ok())
            .unwrap_or_else(|| panic!("no process_id in INFO of port {}", self.port))
    }

    /// Stops the server answering (SIGSTOP) until the guard is dropped (SIGCONT): commands sent
    /// meanwhile wait in its socket and run once it goes on, as with a master stalled by a
    /// long fork or a frozen VM.
    pub fn stall(&self) -> Stall {
        let pid = self.pid();
        signal(pid, "STOP");
        Stall { pid }
    }
}

fn signal(pid: u32, name: &str) {
    let status = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .status()
        .unwrap();
    assert!(status.success(), "kill -{name} {pid} failed");
}

/// A stalled server; it goes on when this is dropped.
#[must_use = "the server goes on as soon as the stall is dropped"]
pub struct Stall {
    pid: u32,
}

impl Drop for Stall {
    fn drop(&mut self) {
        signal(self.pid, "CONT");
    }
}

/// A bulk or status reply as text; the whole reply of a command like INFO.
fn command_text(port: u16, args: &[&str]) -> String {
    match query(port, args).unwrap() {
        Resp::Bulk(Some(s)) | Resp::Simple(s) => s,
        other => panic!("{args:?} on port {port}: {other:?}"),
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = command(self.port, &["SHUTDOWN", "NOSAVE"]);
    }
}

/// A Redis Cluster of `masters` masters (no replicas), made from fresh servers.
pub struct RedisCluster {
    pub nodes: Vec<RedisServer>,
}

impl RedisCluster {
    pub fn start(masters: usize) -> Self {
        assert!(masters >= 3, "Redis Cluster needs at least three masters");
        let nodes: Vec<RedisServer> = (0..masters)
            .map(|_| {
                RedisServer::start_with(&[
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                    "--cluster-node-timeout",
                    "2000",
                ])
            })
            .collect();
        let addrs: Vec<String> = nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        let output = Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(&addrs)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("{HOW_TO_INSTALL} ({e})"));
        assert!(
            output.status.success(),
            "redis-cli --cluster create failed: {}",
            String::from_utf8_lossy(&output.stdout)
        );
        let cluster = Self { nodes };
        let started = Instant::now();
        while !cluster.is_ok() {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "the cluster did not reach cluster_state:ok within 30 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        cluster
    }

    fn is_ok(&self) -> bool {
        self.nodes.iter().all(|n| {
            command(n.port, &["CLUSTER", "INFO"]).is_ok_and(|i| i.contains("cluster_state:ok"))
        })
    }

    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(RedisServer::url).collect()
    }

    pub fn ports(&self) -> Vec<u16> {
        self.nodes.iter().map(|n| n.port).collect()
    }

    /// The master that holds a key's slot.
    pub fn master_of(&self, key: &str) -> &RedisServer {
        let port = self.nodes[0].port;
        let Resp::Int(slot) = query(port, &["CLUSTER", "KEYSLOT", key]).unwrap() else {
            panic!("CLUSTER KEYSLOT {key} did not answer a number");
        };
        let Resp::Array(ranges) = query(port, &["CLUSTER", "SLOTS"]).unwrap() else {
            panic!("CLUSTER SLOTS did not answer a list");
        };
        for range in ranges {
            let Resp::Array(parts) = range else { continue };
            let (Some(Resp::Int(first)), Some(Resp::Int(last)), Some(Resp::Array(master))) =
                (parts.first(), parts.get(1), parts.get(2))
            else {
                continue;
            };
            if (*first..=*last).contains(&slot) {
                let Some(Resp::Int(owner)) = master.get(1) else {
                    continue;
                };
                return self
                    .nodes
                    .iter()
                    .find(|n| i64::from(n.port) == *owner)
                    .expect("a master of this cluster");
            }
        }
        panic!("no master holds slot {slot}");
    }
}

/// A RESP reply.
#[derive(Debug, Clone, PartialEq)]
pub enum Resp {
    Simple(String),
    Error(String),
    Int(i64),
    Bulk(Option<String>),
    Array(Vec<Resp>),
}

impl Resp {
    /// The reply as a list of strings (an array of bulk strings).
    pub fn strings(&self) -> Vec<String> {
        match self {
            Resp::Array(items) => items
                .iter()
                .filter_map(|i| match i {
                    Resp::Bulk(Some(s)) | Resp::Simple(s) => Some(s.clone()),
                    Resp::Int(n) => Some(n.to_string()),
                    _ => None,
                })
                .collect(),
            _ => Vec::new(),
        }
    }
}

fn read_resp(reader: &mut impl BufRead) -> std::io::Result<Resp> {
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let line = line.trim_end_matches(['\r', '\n']);
    let (kind, rest) = line.split_at(1.min(line.len()));
    Ok(match kind {
        "+" => Resp::Simple(rest.to_owned()),
        "-" => Resp::Error(rest.to_owned()),
        ":" => Resp::Int(rest.parse().unwrap_or(0)),
        "$" => {
            let len: i64 = rest.parse().unwrap_or(-1);
            if len < 0 {
                Resp::Bulk(None)
            } else {
                let mut body = vec![0; len as usize + 2];
                reader.read_exact(&mut body)?;
                body.truncate(len as usize);
                Resp::Bulk(Some(String::from_utf8_lossy(&body).into_owned()))
            }
        }
        "*" => {
            let n: i64 = rest.parse().unwrap_or(-1);
            let mut items = Vec::new();
            for _ in 0..n.max(0) {
                items.push(read_resp(reader)?);
            }
            Resp::Array(items)
        }
        _ => Resp::Error(format!("unexpected reply {line:?}")),
    })
}

/// Sends one command and reads its whole reply.
pub fn query(port: u16, args: &[&str]) -> std::io::Result<Resp> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut request = format!("*{}\r\n", args.len());
    for arg in args {
        request.push_str(&format!("${}\r\n{arg}\r\n", arg.len()));
    }
    stream.write_all(request.as_bytes())?;
    read_resp(&mut BufReader::new(stream))
}

fn hash(port: u16, key: &str) -> std::collections::HashMap<String, String> {
    let values = query(port, &["HGETALL", key]).unwrap().strings();
    values
        .chunks(2)
        .map(|p| (p[0].clone(), p[1].clone()))
        .collect()
}

/// Everything the store keeps under a prefix, read straight from Redis (every master of a
/// cluster), to check that stock and reservations agree.
#[derive(Debug, Default)]
pub struct Audit {
    /// (sku, node) → (on hand, reserved, pending)
    pub levels: std::collections::BTreeMap<(String, String), (i64, i64, i64)>,
    /// (sku, node) → units the sku's holds hash says are held
    pub held: std::collections::BTreeMap<(String, String), i64>,
    /// (sku, node) → units outstanding on held and committed reservation records
    pub outstanding: std::collections::BTreeMap<(String, String), i64>,
    /// reservation records by state
    pub states: std::collections::BTreeMap<String, usize>,
}

impl Audit {
    pub fn read(ports: &[u16], prefix: &str) -> Self {
        let mut audit = Audit::default();
        let pattern = format!("{prefix}:*");
        for &port in ports {
            for key in query(port, &["KEYS", &pattern]).unwrap().strings() {
                let rest = &key[prefix.len() + 1..];
                if let Some(sku) = rest
                    .strip_prefix("{s:")
                    .and_then(|r| r.strip_suffix("}:lv"))
                {
                    for (node, packed) in hash(port, &key) {
                        // on hand, reserved, safety stock, sequence, pending
                        let v: Vec<i64> = packed.split(',').map(|p| p.parse().unwrap()).collect();
                        audit
                            .levels
                            .insert((sku.to_owned(), node), (v[0], v[1], v[4]));
                    }
                } else if let Some(sku) = rest
                    .strip_prefix("{s:")
                    .and_then(|r| r.strip_suffix("}:ho"))
                {
                    for value in hash(port, &key).values() {
                        let h: serde_json::Value = serde_json::from_str(value).unwrap();
                        for e in h["a"].as_array().unwrap() {
                            let node = e[1].as_str().unwrap().to_owned();
                            *audit.held.entry((sku.to_owned(), node)).or_default() +=
                                e[2].as_i64().unwrap();
                        }
                    }
                } else if rest.starts_with("{o:") && rest.ends_with('}') {
                    let fields = hash(port, &key);
                    // gone between listing and reading
                    let Some(state) = fields.get("st").cloned() else {
                        continue;
                    };
                    if state == "held" || state == "committed" {
                        let al: Vec<serde_json::Value> =
                            serde_json::from_str(&fields["al"]).unwrap_or_default();
                        for a in al {
                            let out = a["quantity"].as_i64().unwrap()
                                - a["shipped"].as_i64().unwrap()
                                - a["released"].as_i64().unwrap();
                            if out > 0 {
                                *audit
                                    .outstanding
                                    .entry((
                                        a["sku"].as_str().unwrap().to_owned(),
                                        a["node_id"].as_str().unwrap().to_owned(),
                                    ))
                                    .or_default() += out;
                            }
                        }
                    }
                    if fields.contains_key("rel") {
                        *audit.states.entry("releasing".into()).or_default() += 1;
                    }
                    *audit.states.entry(state).or_default() += 1;
                }
            }
        }
        audit
    }

    /// Whether [`Audit::assert_consistent`] would pass.
    pub fn is_consistent(&self) -> bool {
        self.levels
            .iter()
            .all(|(key, (on_hand, reserved, pending))| {
                self.held.get(key).copied().unwrap_or(0) == *reserved
                    && self.outstanding.get(key).copied().unwrap_or(0) == *reserved
                    && reserved <= on_hand
                    && *pending == 0
            })
            && self
                .held
                .keys()
                .chain(self.outstanding.keys())
                .all(|k| self.levels.contains_key(k))
            && ["pending", "aborted", "releasing"]
                .iter()
                .all(|s| !self.states.contains_key(*s))
    }

    /// Stock, holds and records agree; nothing is reserved beyond on hand; no attempt is left
    /// unfinished.
    pub fn assert_consistent(&self) {
        for ((sku, node), (on_hand, reserved, pending)) in &self.levels {
            let key = (sku.clone(), node.clone());
            let held = self.held.get(&key).copied().unwrap_or(0);
            let outstanding = self.outstanding.get(&key).copied().unwrap_or(0);
            assert_eq!(
                *reserved, held,
                "{sku} at {node}: reserved {reserved} but the holds say {held}"
            );
            assert_eq!(
                *reserved, outstanding,
                "{sku} at {node}: reserved {reserved} but reservations say {outstanding}"
            );
            assert!(
                reserved <= on_hand,
                "{sku} at {node}: reserved {reserved} is more than on hand {on_hand}"
            );
            assert_eq!(*pending, 0, "{sku} at {node}: {pending} units left pending");
        }
        for key in self.held.keys().chain(self.outstanding.keys()) {
            assert!(
                self.levels.contains_key(key),
                "{key:?} is held without a level"
            );
        }
        for state in ["pending", "aborted", "releasing"] {
            assert!(
                !self.states.contains_key(state),
                "records left {state}: {:?}",
                self.states
            );
        }
    }
}
