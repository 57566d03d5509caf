//! A real `redis-server` for the fleet tests: each test starts its own on a free 127.0.0.1 port,
//! with no persistence and its data in a temporary directory, and the harness injects the
//! faults the fleet must survive — SIGKILL, a restart with empty data on the same port, every
//! client connection dropped — with no container and no `redis-cli`.
//!
//! `CLERKGATE_REDIS_SERVER` picks another binary with the same flags (`valkey-server`, or a
//! path). Without one, [`RedisServer::start`] prints a skip line and gives `None`, unless
//! `CLERKGATE_REQUIRE_TOOLS=1` (`.ci/run`), where a missing server fails the test.
//!
//! ```ignore
//! let Some(redis) = RedisServer::start().await else { return };
//! redis.set_user("gw", "pw", &["~*", "+@all"]).await;
//! assert_eq!(redis.cli(&["XLEN", "clerkgate:{default}:events"]).await, "0");
//! redis.kill();
//! redis.restart().await;
//! ```

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use redis::aio::MultiplexedConnection;
use redis::Value;

/// The environment variable naming the server binary (default `redis-server`).
pub const SERVER_VAR: &str = "CLERKGATE_REDIS_SERVER";

/// How long a started server may take to answer PING.
const START_LIMIT: Duration = Duration::from_secs(15);

/// One `redis-server` child process, killed on drop.
pub struct RedisServer {
    binary: PathBuf,
    port: u16,
    /// The server's working directory (`--dir`) and its log, `redis.log`.
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl RedisServer {
    /// Starts a server on a free loopback port and waits until it answers PING. `None`, after
    /// printing why, when no server binary is installed.
    pub async fn start() -> Option<RedisServer> {
        let Some(binary) = binary() else {
            let wanted = std::env::var(SERVER_VAR).unwrap_or_else(|_| "redis-server".into());
            super::skip_without_tool(&format!(
                "fleet: `{wanted}` is not on PATH (.ci/run installs Debian's redis-server; {SERVER_VAR} picks another)"
            ));
            return None;
        };
        let dir = tempfile::tempdir().expect("a temporary directory for redis-server");
        let mut server = RedisServer { binary, port: 0, dir, child: None };
        // A port found free may be taken before the server binds it: then try another.
        for _ in 0..5 {
            server.port = free_port();
            if server.spawn_and_wait().await {
                return Some(server);
            }
        }
        panic!("redis-server did not start on any of 5 free ports; its log:\n{}", server.log());
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// The server's address.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// Kills the server with SIGKILL (no shutdown, no goodbye to clients) and waits for it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port, with empty data (persistence is off), after
    /// killing it if it still runs. A port taken meanwhile is retried for a few seconds: the
    /// gateways know this address and no other.
    pub async fn restart(&mut self) {
        self.kill();
        let deadline = Instant::now() + START_LIMIT;
        while !self.spawn_and_wait().await {
            assert!(
                Instant::now() < deadline,
                "redis-server did not start again on port {}; its log:\n{}",
                self.port,
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// A new connection as the `default` user.
    pub async fn connect(&self) -> redis::RedisResult<MultiplexedConnection> {
        redis::Client::open(self.url())?.get_multiplexed_async_connection().await
    }

    /// A new connection as an ACL user.
    pub async fn connect_as(&self, user: &str, password: &str) -> redis::RedisResult<MultiplexedConnection> {
        let info = redis::IntoConnectionInfo::into_connection_info(self.url())?;
        let settings = info.redis_settings().clone().set_username(user).set_password(password);
        redis::Client::open(info.set_redis_settings(settings))?.get_multiplexed_async_connection().await
    }

    /// Runs one command as the `default` user on a connection of its own, and gives the reply
    /// as [`reply_text`] writes it (an error reply as `(error) CODE detail`). Panics only when
    /// the server cannot be reached.
    pub async fn cli(&self, args: &[&str]) -> String {
        let mut conn = self.connect().await.unwrap_or_else(|e| panic!("connect to {}: {e}", self.url()));
        run(&mut conn, args).await
    }

    /// Drops every client connection but the one that asks (`CLIENT KILL TYPE normal`, which
    /// skips the caller); returns how many were dropped.
    pub async fn client_kill_all(&self) -> i64 {
        let reply = self.cli(&["CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes"]).await;
        reply.parse().unwrap_or_else(|_| panic!("CLIENT KILL answered {reply:?}"))
    }

    /// Creates (or resets) the ACL user `name` with `password` and `rules`, e.g.
    /// `&["resetkeys", "%R~app:*", "+get"]`. Panics when the server refuses a rule.
    pub async fn set_user(&self, name: &str, password: &str, rules: &[&str]) {
        let secret = format!(">{password}");
        let mut args = vec!["ACL", "SETUSER", name, "reset", "on", secret.as_str()];
        args.extend_from_slice(rules);
        let reply = self.cli(&args).await;
        assert_eq!(reply, "OK", "ACL SETUSER {name} {rules:?}");
    }

    /// What the server wrote to its log (for a failure message).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("redis.log")).unwrap_or_default()
    }

    /// Spawns the server on `self.port` and waits for PING; `false` when it exited first (the
    /// port was taken) or never answered.
    async fn spawn_and_wait(&mut self) -> bool {
        let log = std::fs::File::create(self.dir.path().join("redis.log")).expect("create redis.log");
        let port = self.port.to_string();
        let child = Command::new(&self.binary)
            .args(["--bind", "127.0.0.1", "--port", &port, "--save", "", "--appendonly", "no", "--dir"])
            .arg(self.dir.path())
            .args(["--enable-debug-command", "local"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone the log handle"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", self.binary.display()));
        self.child = Some(child);
        let deadline = Instant::now() + START_LIMIT;
        while Instant::now() < deadline {
            if let Some(child) = self.child.as_mut() {
                if child.try_wait().ok().flatten().is_some() {
                    self.child = None;
                    return false;
                }
            }
            if let Ok(mut conn) = self.connect().await {
                if run(&mut conn, &["PING"]).await == "PONG" {
                    return true;
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.kill();
        false
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Runs one command on `conn`; the reply as text, an error reply as `(error) CODE detail`.
pub async fn run(conn: &mut MultiplexedConnection, args: &[&str]) -> String {
    let Some((name, rest)) = args.split_first() else { return "(error) no command".into() };
    let mut cmd = redis::cmd(name);
    for arg in rest {
        cmd.arg(*arg);
    }
    match cmd.query_async::<Value>(conn).await {
        Ok(value) => reply_text(&value),
        Err(e) => match e.code() {
            Some(code) => format!("(error) {code} {}", e.detail().unwrap_or_default()),
            None => format!("(error) {e}"),
        },
    }
}

/// A reply as plain text, as `redis-cli --no-raw` would show its words: a status or bulk string
/// as is, an integer in decimal, nil as `(nil)`, the items of an array, set or map one per line.
pub fn reply_text(value: &Value) -> String {
    match value {
        Value::Nil => "(nil)".into(),
        Value::Okay => "OK".into(),
        Value::Int(n) => n.to_string(),
        Value::BulkString(bytes) => String::from_utf8_lossy(bytes).into_owned(),
        Value::SimpleString(s) => s.clone(),
        Value::Double(d) => d.to_string(),
        Value::Boolean(b) => b.to_string(),
        Value::VerbatimString { text, .. } => text.clone(),
        Value::Array(items) | Value::Set(items) => items.iter().map(reply_text).collect::<Vec<_>>().join("\n"),
        Value::Map(pairs) => {
            pairs.iter().flat_map(|(k, v)| [reply_text(k), reply_text(v)]).collect::<Vec<_>>().join("\n")
        }
        Value::Attribute { data, .. } => reply_text(data),
        other => format!("{other:?}"),
    }
}

/// The server binary: `$CLERKGATE_REDIS_SERVER` (a path, or a name on PATH), else
/// `redis-server` on PATH.
fn binary() -> Option<PathBuf> {
    match std::env::var(SERVER_VAR).ok().filter(|v| !v.is_empty()) {
        Some(v) if v.contains('/') => Some(PathBuf::from(v)).filter(|p| p.is_file()),
        Some(name) => super::on_path(&[&name]),
        None => super::on_path(&["redis-server"]),
    }
}

/// A port that was free a moment ago on 127.0.0.1.
fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local address").port()
}
