//! Issue #14: the real-`redis-server` harness the fleet tests stand on does what it says (each
//! fault it injects is shown to happen), and the ACL lines that `deploy/k8s/fleet/redis-acl.md`
//! gives operators hold on a real server: read from that file, created, and tried command by
//! command.

use crate::support::redis::{run, RedisServer};

/// The key names of `redis-acl.md` (`key_prefix = "clerkgate"`, `fleet = "prod"`).
pub(crate) fn key(name: &str) -> String {
    format!("clerkgate:{{prod}}:{name}")
}

#[tokio::test]
async fn a_server_starts_answers_and_dies_by_sigkill() {
    let Some(mut redis) = RedisServer::start().await else { return };
    assert!(redis.url().starts_with("redis://127.0.0.1:"), "{}", redis.url());
    assert_eq!(redis.cli(&["PING"]).await, "PONG");
    assert_eq!(redis.cli(&["SET", "k", "v"]).await, "OK");
    assert_eq!(redis.cli(&["GET", "k"]).await, "v");
    // Started with the debug command, for the tests that stall the server.
    assert_eq!(redis.cli(&["DEBUG", "SLEEP", "0"]).await, "OK");
    // No persistence.
    assert_eq!(redis.cli(&["CONFIG", "GET", "appendonly"]).await, "appendonly\nno");

    let mut conn = redis.connect().await.expect("connect");
    redis.kill();
    let Err(refused) = redis.connect().await else { panic!("a connection after SIGKILL") };
    assert!(refused.is_connection_refusal(), "{refused}");
    assert!(run(&mut conn, &["PING"]).await.starts_with("(error)"));
}

#[tokio::test]
async fn a_restart_comes_back_empty_on_the_same_port() {
    let Some(mut redis) = RedisServer::start().await else { return };
    let url = redis.url();
    redis.cli(&["XADD", &key("events"), "*", "epoch", "1"]).await;
    assert_eq!(redis.cli(&["XLEN", &key("events")]).await, "1");

    redis.restart().await;
    assert_eq!(redis.url(), url);
    assert_eq!(redis.cli(&["XLEN", &key("events")]).await, "0");
    assert_eq!(redis.cli(&["DBSIZE"]).await, "0");
    // And again, after the server was killed first.
    redis.kill();
    redis.restart().await;
    assert_eq!(redis.cli(&["PING"]).await, "PONG");
}

#[tokio::test]
async fn client_kill_all_drops_every_connection_but_its_own() {
    let Some(redis) = RedisServer::start().await else { return };
    let mut a = redis.connect().await.expect("connect");
    let mut b = redis.connect().await.expect("connect");
    assert_eq!(run(&mut a, &["PING"]).await, "PONG");
    assert_eq!(run(&mut b, &["PING"]).await, "PONG");

    assert_eq!(redis.client_kill_all().await, 2);
    for conn in [&mut a, &mut b] {
        let reply = run(conn, &["PING"]).await;
        assert!(reply.starts_with("(error)"), "a killed connection answered {reply:?}");
    }
    // The server itself is fine: a new connection works.
    assert_eq!(redis.cli(&["PING"]).await, "PONG");
}

/// The two `ACL SETUSER` lines of redis-acl.md, split into words, with test passwords
/// (`gw-test-password`, `op-test-password`).
pub(crate) fn acl_lines() -> Vec<Vec<String>> {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/k8s/fleet/redis-acl.md"))
        .expect("read deploy/k8s/fleet/redis-acl.md");
    let lines: Vec<Vec<String>> = doc
        .lines()
        .filter(|l| l.starts_with("ACL SETUSER "))
        .map(|l| {
            l.replace(">GATEWAY-PASSWORD", ">gw-test-password")
                .replace(">OPERATOR-PASSWORD", ">op-test-password")
                .split_whitespace()
                .map(str::to_string)
                .collect()
        })
        .collect();
    let users: Vec<&str> = lines.iter().map(|l| l[2].as_str()).collect();
    assert_eq!(users, ["clerkgate-gw", "clerkgate-operator"], "the ACL lines of redis-acl.md");
    lines
}

fn refused(reply: &str) -> bool {
    reply.starts_with("(error) NOPERM")
}

#[tokio::test]
async fn the_acl_lines_of_the_deploy_docs_hold_on_a_real_server() {
    let Some(redis) = RedisServer::start().await else { return };
    for line in acl_lines() {
        let words: Vec<&str> = line.iter().map(String::as_str).collect();
        assert_eq!(redis.cli(&words).await, "OK", "{}", line.join(" "));
    }
    // Some state, as the operator's script leaves it.
    redis.cli(&["SET", &key("mode"), r#"{"mode":"bypass"}"#]).await;
    redis.cli(&["HSET", &key("revocations"), "sid:sess_1", "{}"]).await;
    redis.cli(&["XADD", &key("events"), "*", "epoch", "1", "kind", "mode.set"]).await;
    redis.cli(&["SET", "unrelated", "x"]).await;

    // The gateway: reads the state, follows the events, appends audit, writes its ack.
    let mut gw = redis.connect_as("clerkgate-gw", "gw-test-password").await.expect("connect as clerkgate-gw");
    let (mode, revocations, events, audit, acks) =
        (key("mode"), key("revocations"), key("events"), key("audit"), key("acks"));
    for (args, expected) in [
        (vec!["GET", &mode], Some(r#"{"mode":"bypass"}"#)),
        (vec!["HGETALL", &revocations], Some("sid:sess_1\n{}")),
        (vec!["MGET", &mode, &key("epoch")], None),
        (vec!["XREAD", "COUNT", "10", "STREAMS", &events, "0"], None),
        (vec!["XREAD", "BLOCK", "10", "STREAMS", &events, "$"], Some("(nil)")),
        (vec!["XRANGE", &events, "-", "+"], None),
        (vec!["XADD", &audit, "*", "action", "mode.set", "origin", "gw-1"], None),
        (vec!["XRANGE", &audit, "-", "+"], None),
        (vec!["HSET", &acks, "gw-1", r#"{"epoch":1}"#], Some("1")),
        (vec!["CLIENT", "SETNAME", "cg-gw-1"], Some("OK")),
    ] {
        let reply = run(&mut gw, &args).await;
        assert!(!reply.starts_with("(error)"), "clerkgate-gw {args:?}: {reply}");
        if let Some(expected) = expected {
            assert_eq!(reply, expected, "clerkgate-gw {args:?}");
        }
    }
    // ... and may change nothing else.
    for args in [
        vec!["SET", &mode, r#"{"mode":"enforce"}"#],
        vec!["HSET", &revocations, "sid:sess_2", "{}"],
        vec!["HDEL", &revocations, "sid:sess_1"],
        vec!["XADD", &events, "*", "epoch", "2"],
        vec!["DEL", &mode],
        vec!["INCR", &key("epoch")],
        vec!["EVAL", "return redis.call('SET', KEYS[1], 'x')", "1", &mode],
        vec!["GET", "unrelated"],
        vec!["CLIENT", "KILL", "TYPE", "normal"],
        vec!["FLUSHALL"],
        vec!["CONFIG", "SET", "maxmemory-policy", "allkeys-lru"],
    ] {
        let reply = run(&mut gw, &args).await;
        assert!(refused(&reply), "clerkgate-gw {args:?} was not refused: {reply}");
    }
    assert_eq!(redis.cli(&["GET", &mode]).await, r#"{"mode":"bypass"}"#);

    // The operator: one script writes state and event together; WAIT; nothing dangerous.
    let mut op = redis.connect_as("clerkgate-operator", "op-test-password").await.expect("connect as operator");
    let script = "local e = redis.call('INCR', KEYS[1]); redis.call('SET', KEYS[2], ARGV[1]); \
                  redis.call('HSET', KEYS[3], 'sid:sess_2', '{}'); \
                  redis.call('XADD', KEYS[4], '*', 'epoch', e); redis.call('XADD', KEYS[5], '*', 'epoch', e); return e";
    let epoch = key("epoch");
    let args = ["EVAL", script, "5", &epoch, &mode, &revocations, &events, &audit, r#"{"mode":"enforce"}"#];
    assert_eq!(run(&mut op, &args).await, "1");
    assert_eq!(redis.cli(&["GET", &mode]).await, r#"{"mode":"enforce"}"#);
    assert_eq!(run(&mut op, &["HGETALL", &acks]).await, "gw-1\n{\"epoch\":1}");
    assert_eq!(run(&mut op, &["WAIT", "0", "10"]).await, "0");
    for args in [
        vec!["FLUSHALL"],
        vec!["KEYS", "*"],
        vec!["CLIENT", "KILL", "TYPE", "normal"],
        vec!["CONFIG", "SET", "maxmemory-policy", "allkeys-lru"],
        vec!["SET", "unrelated", "y"],
    ] {
        let reply = run(&mut op, &args).await;
        assert!(refused(&reply), "clerkgate-operator {args:?} was not refused: {reply}");
    }
    let outside = run(&mut op, &["EVAL", "return redis.call('SET', 'unrelated', 'y')", "0"]).await;
    assert!(outside.starts_with("(error)"), "{outside}");
    assert_eq!(redis.cli(&["GET", "unrelated"]).await, "x");
}

/// The harness's ACL helper makes a user that can log in with exactly its rules.
#[tokio::test]
async fn set_user_makes_a_user_with_exactly_its_rules() {
    let Some(redis) = RedisServer::start().await else { return };
    redis.set_user("reader", "pw", &["resetkeys", "-@all", "%R~app:*", "+get", "+hello", "+ping"]).await;
    let mut conn = redis.connect_as("reader", "pw").await.expect("connect as reader");
    assert_eq!(run(&mut conn, &["GET", "app:x"]).await, "(nil)");
    assert!(refused(&run(&mut conn, &["SET", "app:x", "1"]).await));
    assert!(redis.connect_as("reader", "wrong").await.is_err());
}
