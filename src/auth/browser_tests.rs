//! Clerk's browser flow as tables: every numbered step of clerk-semantics §4.3, every
//! conversion of §4.4, every branch of §4.5–§4.6, with header and cookie carriers, suffixed and
//! un-suffixed cookies, development and production keys. The facts are read from real request
//! heads and the signed stage is the gate's (real keys, real cache); a Backend API answer is
//! fed in as the next pass would see it.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use http::request::Parts;
use serde_json::{json, Value};

use crate::auth::backend::{BackendCall, Resumed};
use crate::auth::decide::{decide, Decision, Snapshot};
use crate::auth::facts::{self, RequestFacts};
use crate::auth::public_url::parse_query;
use crate::auth::Gate;
use crate::config::{Config, Env};
use crate::mint::SigningKey;
use crate::mode::{Mode, ModeSetting, ModeSource};

const NOW_S: i64 = 1_700_000_000;
const NOW_MS: i64 = NOW_S * 1000;
/// Clerk's test fixtures: `clerk.inspired.puma-74.lcl.dev`, production and development.
const PK_LIVE: &str = "pk_live_Y2xlcmsuaW5zcGlyZWQucHVtYS03NC5sY2wuZGV2JA";
const PK_TEST: &str = "pk_test_Y2xlcmsuaW5zcGlyZWQucHVtYS03NC5sY2wuZGV2JA";
const SUFFIX_LIVE: &str = "MqCvchyS";
const SUFFIX_TEST: &str = "vWCgMp3A";
const FAPI: &str = "clerk.inspired.puma-74.lcl.dev";
const ISS: &str = "https://clerk.inspired.puma-74.lcl.dev";

fn signer() -> &'static SigningKey {
    static KEY: OnceLock<SigningKey> = OnceLock::new();
    KEY.get_or_init(|| SigningKey::generate().unwrap())
}

fn stranger() -> &'static SigningKey {
    static KEY: OnceLock<SigningKey> = OnceLock::new();
    KEY.get_or_init(|| SigningKey::generate().unwrap())
}

/// The instances the tables run against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Instance {
    /// `pk_live_`, a secret key (so an API client), no sign-in URL (the Account Portal's).
    Prod,
    /// `pk_test_`, a secret key.
    Dev,
    /// `pk_live_` without a secret key: no Backend API calls.
    ProdNoSecret,
    /// `pk_live_` with `sign_in_url = "/sign-in"`.
    ProdSignIn,
    /// No publishable key: the token alone, as before the browser flow.
    Plain,
}

fn config(instance: Instance) -> Arc<Config> {
    static CONFIGS: OnceLock<std::sync::Mutex<HashMap<Instance, Arc<Config>>>> = OnceLock::new();
    let mut all = CONFIGS.get_or_init(Default::default).lock().unwrap();
    all.entry(instance)
        .or_insert_with(|| {
            let clerk = match instance {
                Instance::Prod => format!("publishable_key = \"{PK_LIVE}\"\nsecret_key = \"sk_live_x\""),
                Instance::Dev => format!("publishable_key = \"{PK_TEST}\"\nsecret_key = \"sk_test_x\""),
                Instance::ProdNoSecret => format!("publishable_key = \"{PK_LIVE}\""),
                Instance::ProdSignIn => {
                    format!("publishable_key = \"{PK_LIVE}\"\nsecret_key = \"sk_live_x\"\nsign_in_url = \"/sign-in\"")
                }
                Instance::Plain => String::new(),
            };
            let text = format!(
                "[clerk]\njwks_url = \"http://127.0.0.1:9/v1/jwks\"\n{clerk}\n\
                 [mode]\ngrace_max_expired = \"1h\"\n\
                 [state]\ndir = \"/dev/null/clerkgate-state\"\n\
                 [routes]\ndefault = \"protected\"\npublic = [\"/public(.*)\", \"/sign-in(.*)\"]\n\
                 [[routes.rule]]\npath = \"/admin(.*)\"\nrole = \"org:admin\"\n"
            );
            Arc::new(Config::from_toml(&text, &Env::default()).unwrap_or_else(|e| panic!("{e}")))
        })
        .clone()
}

/// A gate over `instance` whose key set publishes the signer under `k1`.
fn gate(instance: Instance) -> Gate {
    crate::auth::decide::tests::gate_for(config(instance), signer(), NOW_MS)
}

/// Clerk-shaped claims of this instance, issued `age_s` ago, living 60 s.
fn claims(age_s: i64) -> serde_json::Map<String, Value> {
    let iat = NOW_S - age_s;
    let c = json!({"sub": "user_1", "sid": "sess_1", "iss": ISS, "iat": iat, "nbf": iat - 10, "exp": iat + 60});
    c.as_object().unwrap().clone()
}

/// A session token issued `age_s` ago, then `edit`ed, signed under `k1`.
fn tok_with(age_s: i64, edit: impl FnOnce(&mut serde_json::Map<String, Value>)) -> String {
    let mut c = claims(age_s);
    edit(&mut c);
    signer().sign(Some("k1"), &Value::Object(c))
}

fn tok(age_s: i64) -> String {
    tok_with(age_s, |_| {})
}

/// A request: method, target and headers.
#[derive(Debug, Clone)]
struct Req {
    method: &'static str,
    target: String,
    headers: Vec<(&'static str, String)>,
}

fn get(target: &str) -> Req {
    Req { method: "GET", target: target.into(), headers: vec![("host", "app.example.com".into())] }
}

impl Req {
    /// A page load (`Sec-Fetch-Dest: document`).
    fn doc(mut self) -> Self {
        self.headers.push(("sec-fetch-dest", "document".into()));
        self
    }
    /// A fetch (`Sec-Fetch-Dest: empty`, JSON).
    fn api(mut self) -> Self {
        self.headers.push(("sec-fetch-dest", "empty".into()));
        self.headers.push(("accept", "application/json".into()));
        self
    }
    fn post(mut self) -> Self {
        self.method = "POST";
        self
    }
    fn cookie(mut self, c: &str) -> Self {
        self.headers.push(("cookie", c.into()));
        self
    }
    fn header(mut self, k: &'static str, v: &str) -> Self {
        self.headers.push((k, v.into()));
        self
    }
    fn bearer(self, t: &str) -> Self {
        self.header("authorization", &format!("Bearer {t}"))
    }
    fn head(&self) -> Parts {
        let mut b = http::Request::builder().method(self.method).uri(&self.target);
        for (k, v) in &self.headers {
            b = b.header(*k, v);
        }
        b.body(()).unwrap().into_parts().0
    }
}

fn setting(mode: Mode) -> ModeSetting {
    ModeSetting {
        mode,
        source: ModeSource::Admin,
        reason: "t".into(),
        actor: "t".into(),
        since_ms: 0,
        expires_at_ms: None,
    }
}

/// What one pass decides.
fn decide_one(instance: Instance, mode: Mode, req: &Req, resumed: &Resumed) -> Decision {
    let gate = gate(instance);
    let config = config(instance);
    let mut parts = req.head();
    let routed = facts::prepare(&mut parts, &config).expect("a clean head");
    let mode = setting(mode);
    let facts = RequestFacts::read(&parts, routed, &mode, &config, NOW_MS, resumed);
    let signatures = gate.signatures(&config, NOW_MS);
    let snapshot =
        Snapshot { config: &config, now_ms: NOW_MS, revocations: &gate.revocations, signatures: &signatures };
    decide(&facts, &snapshot)
}

/// A decision in one line: `forward <status> <user> [cookies=<names>]`, `<code> <auth status>
/// <reason> [→ <where>]`, `call <which>`, `need-kid <kid>`.
fn render(d: Decision) -> String {
    match d {
        Decision::Forward(f) => {
            let who = f.identity.map_or("-".to_string(), |v| v.claims.user_id.clone());
            let cookies: Vec<String> = f
                .response_headers
                .iter()
                .filter(|(k, _)| k == http::header::SET_COOKIE)
                .map(|(_, v)| cookie_name(v.to_str().unwrap()))
                .collect();
            let mut s = format!("forward {} {who}", f.status.as_str());
            if !cookies.is_empty() {
                s.push_str(&format!(" cookies={}", cookies.join(",")));
            }
            s
        }
        Decision::Answer(a) => {
            let resp = a.into_response();
            let h = resp.headers();
            let get = |n: &str| h.get(n).map(|v| v.to_str().unwrap().to_string());
            let mut s = format!(
                "{} {} {}",
                resp.status().as_u16(),
                get("x-clerk-auth-status").unwrap_or_default(),
                get("x-clerk-auth-reason").unwrap_or_else(|| "-".into())
            );
            if let Some(loc) = get("location") {
                let place = if loc.contains("/v1/client/handshake?") {
                    "fapi".to_string()
                } else {
                    loc.split('?').next().unwrap_or_default().to_string()
                };
                s.push_str(&format!(" → {place}"));
            }
            let cookies: Vec<String> =
                h.get_all("set-cookie").iter().map(|v| cookie_name(v.to_str().unwrap())).collect();
            if !cookies.is_empty() {
                s.push_str(&format!(" cookies={}", cookies.join(",")));
            }
            s
        }
        Decision::Call(BackendCall::HandshakePayload { nonce }) => format!("call handshake_payload {nonce}"),
        Decision::Call(BackendCall::Refresh { session_id, suffixed, .. }) => {
            format!("call refresh {session_id} suffixed={suffixed}")
        }
        Decision::NeedKid(kid) => format!("need-kid {kid}"),
        Decision::VerifyWebhook => "verify-webhook".into(),
    }
}

fn cookie_name(directive: &str) -> String {
    directive.split(['=', ';']).next().unwrap_or_default().to_string()
}

fn run(instance: Instance, req: &Req) -> String {
    render(decide_one(instance, Mode::Enforce, req, &Resumed::first()))
}

/// The `Location` of an answer.
fn location(d: Decision) -> String {
    let Decision::Answer(a) = d else { panic!("not an answer: {d:?}") };
    a.into_response().headers()["location"].to_str().unwrap().to_string()
}

/// A handshake URL's query parameters, in order.
fn params(location: &str) -> Vec<(String, String)> {
    parse_query(location.split_once('?').map_or("", |(_, q)| q))
}

/// A `__client_uat` older than every token here.
fn uat() -> String {
    format!("__client_uat={}", NOW_S - 86_400)
}

/// Steps 3–15 of §4.3 and the conversions of §4.4, cookie carrier, un-suffixed.
#[test]
fn the_cookie_path_in_clerks_order() {
    use Instance::{Dev, Prod, ProdNoSecret};
    let good = tok(10);
    let expired = tok(600);
    let early = tok_with(-60, |_| {}); // iat and nbf a minute ahead
    let iat_future = tok_with(0, |c| {
        c.insert("iat".into(), (NOW_S + 60).into());
    });
    let forged = stranger().sign(Some("k1"), &Value::Object(claims(10)));
    let machine = tok_with(10, |c| {
        c.insert("sub".into(), "mch_1".into());
    });
    let u = uat();
    let db = "__clerk_db_jwt=dvb_1";
    #[rustfmt::skip]
    let table: Vec<(Instance, Req, &str)> = vec![
        // 3. A development instance with the dev browser in the query syncs it.
        (Dev, get("/x?__clerk_db_jwt=dvb_2").doc().cookie(&format!("{db}; {u}; __session={good}")), "307 handshake dev-browser-sync → fapi cookies=__clerk_redirect_count"),
        // 4. …and without any dev browser gets one.
        (Dev, get("/x").doc().cookie(&format!("{u}; __session={good}")), "307 handshake dev-browser-missing → fapi cookies=__clerk_redirect_count"),
        (Dev, get("/x").doc(), "307 handshake dev-browser-missing → fapi cookies=__clerk_redirect_count"),
        (Dev, get("/x").api(), "401 signed-out dev-browser-missing"),
        (Dev, get("/x").doc().cookie(&format!("{db}; {u}; __session={good}")), "forward signed-in user_1"),
        // 5. No `__client_uat` and no session: the anonymous visitor, never a handshake.
        (Prod, get("/x").api(), "401 signed-out session-token-and-uat-missing"),
        (Prod, get("/x").api().cookie("__client_uat=0"), "401 signed-out session-token-and-uat-missing"),
        (Prod, get("/x").doc(), "307 signed-out session-token-and-uat-missing → https://accounts.inspired.puma-74.lcl.dev/sign-in"),
        (Prod, get("/public/x").doc(), "forward signed-out -"),
        (Dev, get("/x").doc().cookie(db), "307 signed-out session-token-and-uat-missing → https://accounts.inspired.puma-74.lcl.dev/sign-in"),
        // 6. A session cookie without `__client_uat`.
        (Prod, get("/x").doc().cookie(&format!("__session={good}")), "307 handshake session-token-but-no-client-uat → fapi cookies=__clerk_redirect_count"),
        (Prod, get("/x").api().cookie(&format!("__session={good}")), "401 signed-out session-token-but-no-client-uat"),
        (Prod, get("/x").doc().cookie(&format!("__client_uat=0; __session={good}")), "307 handshake session-token-but-no-client-uat → fapi cookies=__clerk_redirect_count"),
        // 7. `__client_uat` without a session cookie.
        (Prod, get("/x").doc().cookie("__client_uat=12345"), "307 handshake client-uat-but-no-session-token → fapi cookies=__clerk_redirect_count"),
        (Prod, get("/x").doc().post().cookie("__client_uat=12345"), "401 signed-out client-uat-but-no-session-token"),
        // 8. A session cookie that does not decode.
        (Prod, get("/x").doc().cookie(&format!("{u}; __session=not.a.jwt")), "307 signed-out token-invalid → https://accounts.inspired.puma-74.lcl.dev/sign-in"),
        (Prod, get("/x").api().cookie(&format!("{u}; __session=garbage")), "401 signed-out token-invalid"),
        // 9. A machine token in the cookie.
        (Prod, get("/x").api().cookie(&format!("{u}; __session={machine}")), "401 signed-out token-type-mismatch"),
        // 10. A session cookie issued before the client's last change.
        (Prod, get("/x").doc().cookie(&format!("__client_uat={}; __session={good}", NOW_S)), "307 handshake session-token-iat-before-client-uat → fapi cookies=__clerk_redirect_count"),
        (Prod, get("/x").api().cookie(&format!("__client_uat={}; __session={good}", NOW_S)), "401 signed-out session-token-iat-before-client-uat"),
        (Prod, get("/x").api().cookie(&format!("__client_uat={}; __session={forged}", NOW_S)), "401 signed-out session-token-iat-before-client-uat"),
        (Prod, get("/x").api().cookie(&format!("__client_uat={}; __session={good}", NOW_S - 20)), "forward signed-in user_1"),
        // 11. Verification, and §4.4's conversions.
        (Prod, get("/x").doc().cookie(&format!("{u}; __session={expired}")), "307 handshake session-token-expired-refresh-non-eligible-no-refresh-cookie → fapi cookies=__clerk_redirect_count"),
        (Prod, get("/x").api().cookie(&format!("{u}; __session={expired}")), "401 signed-out session-token-expired-refresh-non-eligible-no-refresh-cookie"),
        (Prod, get("/x").api().post().cookie(&format!("{u}; __session={expired}")), "401 signed-out session-token-expired-refresh-non-eligible-non-get"),
        (Prod, get("/x").doc().cookie(&format!("{u}; __session={early}")), "307 handshake session-token-nbf → fapi cookies=__clerk_redirect_count"),
        (Prod, get("/x").api().cookie(&format!("{u}; __session={early}")), "401 signed-out session-token-nbf"),
        (Prod, get("/x").doc().cookie(&format!("{u}; __session={iat_future}")), "307 handshake session-token-iat-in-the-future → fapi cookies=__clerk_redirect_count"),
        (Prod, get("/x").doc().cookie(&format!("{u}; __session={forged}")), "307 signed-out token-invalid-signature → https://accounts.inspired.puma-74.lcl.dev/sign-in"),
        (Prod, get("/x").api().cookie(&format!("{u}; __session={forged}")), "401 signed-out token-invalid-signature"),
        (Prod, get("/public/x").doc().cookie(&format!("{u}; __session={forged}")), "forward signed-out -"),
        // A handshake candidate on a public route is a handshake too (Clerk's middleware runs everywhere).
        (Prod, get("/public/x").doc().cookie(&format!("{u}; __session={expired}")), "307 handshake session-token-expired-refresh-non-eligible-no-refresh-cookie → fapi cookies=__clerk_redirect_count"),
        // §4.4: a refresh cookie on a GET asks the Backend API first…
        (Prod, get("/x").doc().cookie(&format!("{u}; __session={expired}; __refresh_{SUFFIX_LIVE}=r1")), "call refresh sess_1 suffixed=false"),
        (Prod, get("/x").api().cookie(&format!("{u}; __session={expired}; __refresh_{SUFFIX_LIVE}=r1")), "call refresh sess_1 suffixed=false"),
        // …only a GET, only for an expired token, only with the suffixed refresh cookie…
        (Prod, get("/x").api().post().cookie(&format!("{u}; __session={expired}; __refresh_{SUFFIX_LIVE}=r1")), "401 signed-out session-token-expired-refresh-non-eligible-non-get"),
        (Prod, get("/x").api().cookie(&format!("{u}; __session={early}; __refresh_{SUFFIX_LIVE}=r1")), "401 signed-out session-token-nbf"),
        (Prod, get("/x").api().cookie(&format!("{u}; __session={expired}; __refresh=r1")), "401 signed-out session-token-expired-refresh-non-eligible-no-refresh-cookie"),
        // …and only with an API client.
        (ProdNoSecret, get("/x").doc().cookie(&format!("{u}; __session={expired}; __refresh_{SUFFIX_LIVE}=r1")), "307 handshake session-token-expired-refresh-missing-api-client → fapi cookies=__clerk_redirect_count"),
        // 13. A page load from another site syncs the primary domain first…
        (Prod, get("/x").doc().cookie(&format!("{u}; __session={good}")).header("referer", "https://satellite.com/signin"), "307 handshake primary-domain-cross-origin-sync → fapi cookies=__clerk_redirect_count"),
        // …but not from this origin, Clerk's own hosts, a bad referer, a fetch, a POST, or inside a loop.
        (Prod, get("/x").doc().cookie(&format!("{u}; __session={good}")).header("referer", "http://app.example.com/a"), "forward signed-in user_1"),
        (Prod, get("/x").doc().cookie(&format!("{u}; __session={good}")).header("referer", &format!("https://{FAPI}/v1/x")), "forward signed-in user_1"),
        (Prod, get("/x").doc().cookie(&format!("{u}; __session={good}")).header("referer", "https://accounts.inspired.puma-74.lcl.dev/sign-in"), "forward signed-in user_1"),
        (Prod, get("/x").doc().cookie(&format!("{u}; __session={good}")).header("referer", "::not a url"), "forward signed-in user_1"),
        (Prod, get("/x").api().cookie(&format!("{u}; __session={good}")).header("referer", "https://satellite.com/"), "forward signed-in user_1"),
        (Prod, get("/x").doc().post().cookie(&format!("{u}; __session={good}")).header("referer", "https://satellite.com/"), "forward signed-in user_1"),
        (Prod, get("/x").doc().cookie(&format!("{u}; __session={good}; __clerk_redirect_count=1")).header("referer", "https://satellite.com/"), "forward signed-in user_1"),
        (Prod, get("/x").header("accept", "text/html").cookie(&format!("{u}; __session={good}")).header("referer", "https://satellite.com/"), "forward signed-in user_1"),
        // A development instance trusts the development Account Portals; production does not.
        (Dev, get("/x").doc().cookie(&format!("{db}; {u}; __session={good}")).header("referer", "https://foo-bar-13.accounts.dev/"), "forward signed-in user_1"),
        (Prod, get("/x").doc().cookie(&format!("{u}; __session={good}")).header("referer", "https://foo-bar-13.accounts.dev/"), "307 handshake primary-domain-cross-origin-sync → fapi cookies=__clerk_redirect_count"),
        // 15. Signed in; the route's role still applies.
        (Prod, get("/x").doc().cookie(&format!("{u}; __session={good}")), "forward signed-in user_1"),
        (Prod, get("/admin/x").api().cookie(&format!("{u}; __session={good}")), "403 signed-in missing-role"),
    ];
    let mut wrong = Vec::new();
    for (instance, req, want) in &table {
        let got = run(*instance, req);
        if got != *want {
            wrong.push(format!(
                "{instance:?} {} {} {:?}\n   want {want}\n    got {got}",
                req.method, req.target, req.headers
            ));
        }
    }
    assert!(wrong.is_empty(), "{} of {} rows differ:\n{}", wrong.len(), table.len(), wrong.join("\n"));
}

/// The header path (§4.2): today's behaviour, except that a recoverable failure on a page load
/// is a handshake candidate too (§4.4), and its reason is Clerk's converted one.
#[test]
fn the_header_path() {
    use Instance::{Plain, Prod};
    let good = tok(10);
    let expired = tok(600);
    let early = tok_with(-60, |_| {});
    #[rustfmt::skip]
    let table: Vec<(Instance, Req, &str)> = vec![
        (Prod, get("/x").api().bearer(&good), "forward signed-in user_1"),
        // The header is used alone: no cookie rules (no `__client_uat` needed).
        (Prod, get("/x").doc().bearer(&good).cookie("__client_uat=0"), "forward signed-in user_1"),
        (Prod, get("/x").doc().bearer(&expired), "307 handshake session-token-expired-refresh-non-eligible-no-refresh-cookie → fapi cookies=__clerk_redirect_count"),
        (Prod, get("/x").api().bearer(&expired), "401 signed-out session-token-expired-refresh-non-eligible-no-refresh-cookie"),
        (Prod, get("/x").doc().bearer(&early), "307 handshake session-token-nbf → fapi cookies=__clerk_redirect_count"),
        (Prod, get("/x").api().bearer("garbage"), "401 signed-out token-invalid"),
        (Prod, get("/x").doc().bearer(&expired).cookie(&format!("__refresh_{SUFFIX_LIVE}=r1")), "call refresh sess_1 suffixed=false"),
        // Without a publishable key the token alone decides, with verifyToken's reasons.
        (Plain, get("/x").doc().bearer(&expired), "401 signed-out token-expired"),
        (Plain, get("/x").doc().cookie(&format!("__session={good}")), "forward signed-in user_1"),
        (Plain, get("/x").doc().cookie(&format!("__session={expired}")), "401 signed-out token-expired"),
        (Plain, get("/x").doc(), "401 signed-out session-token-missing"),
    ];
    for (instance, req, want) in &table {
        assert_eq!(run(*instance, req), *want, "{instance:?} {req:?}");
    }
}

/// §1.5 with the flow: a production instance's suffixed cookies are read and reported.
#[test]
fn suffixed_cookies_are_read_and_reported() {
    let good = tok(10);
    let expired = tok(600);
    let u = NOW_S - 86_400;
    let ok = get("/x").doc().cookie(&format!("__client_uat_{SUFFIX_LIVE}={u}; __session_{SUFFIX_LIVE}={good}"));
    assert_eq!(run(Instance::Prod, &ok), "forward signed-in user_1");
    let stale = get("/x").doc().cookie(&format!("__client_uat_{SUFFIX_LIVE}={u}; __session_{SUFFIX_LIVE}={expired}"));
    let loc = location(decide_one(Instance::Prod, Mode::Enforce, &stale, &Resumed::first()));
    let p = params(&loc);
    assert_eq!(p[2], ("suffixed_cookies".into(), "true".into()), "{loc}");
    assert_eq!(p[5], ("__session".into(), expired.clone()), "{loc}");
    // A plain session of another instance makes the suffixed family this one's, with no
    // fallback to the plain cookie.
    let theirs = tok_with(10, |c| {
        c.insert("iss".into(), "https://clerk.other.example".into());
    });
    let no_fallback = get("/x").api().cookie(&format!("__session={theirs}; __client_uat_{SUFFIX_LIVE}={u}"));
    assert_eq!(run(Instance::Prod, &no_fallback), "401 signed-out client-uat-but-no-session-token");
    // Suffixed says signed out, plain says signed in: the plain family.
    let downgrade =
        get("/x").api().cookie(&format!("__client_uat={u}; __session={good}; __client_uat_{SUFFIX_LIVE}=0"));
    assert_eq!(run(Instance::Prod, &downgrade), "forward signed-in user_1");
    // A refresh with suffixed cookies says so.
    let refresh = get("/x").cookie(&format!(
        "__client_uat_{SUFFIX_LIVE}={u}; __session_{SUFFIX_LIVE}={expired}; __refresh_{SUFFIX_LIVE}=r1"
    ));
    assert_eq!(run(Instance::Prod, &refresh), "call refresh sess_1 suffixed=true");
    // A development instance's suffix is its own.
    let dev = get("/x").doc().cookie(&format!(
        "__clerk_db_jwt_{SUFFIX_TEST}=dvb; __client_uat_{SUFFIX_TEST}={u}; __session_{SUFFIX_TEST}={good}"
    ));
    assert_eq!(run(Instance::Dev, &dev), "forward signed-in user_1");
}

/// §4.5: the handshake URL with Clerk's parameters in Clerk's order, the loop guard and the
/// headers.
#[test]
fn the_handshake_redirect() {
    let expired = tok(600);
    let u = uat();
    let req = get("/dash?tab=1&__clerk_db_jwt=old&x=%20y").doc().cookie(&format!("{u}; __session={expired}"));
    let d = decide_one(Instance::Prod, Mode::Enforce, &req, &Resumed::first());
    let Decision::Answer(a) = d else { panic!("{d:?}") };
    let resp = a.into_response();
    let h = resp.headers();
    assert_eq!(resp.status(), 307);
    assert_eq!(h["cache-control"], "no-store");
    assert_eq!(h["x-clerk-auth-status"], "handshake");
    assert_eq!(h["x-clerk-auth-reason"], "session-token-expired-refresh-non-eligible-no-refresh-cookie");
    assert!(h["x-clerk-auth-message"].to_str().unwrap().starts_with("JWT is expired."), "{h:?}");
    assert_eq!(h["set-cookie"], "__clerk_redirect_count=1; SameSite=Lax; HttpOnly; Max-Age=2");
    let loc = h["location"].to_str().unwrap();
    assert!(loc.starts_with(&format!("https://{FAPI}/v1/client/handshake?")), "{loc}");
    let want: Vec<(String, String)> = [
        ("redirect_url", "http://app.example.com/dash?tab=1&x=+y"),
        ("__clerk_api_version", "2026-05-12"),
        ("suffixed_cookies", "false"),
        ("__clerk_hs_reason", "session-token-expired-refresh-non-eligible-no-refresh-cookie"),
        ("format", "nonce"),
        ("__session", expired.as_str()),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    assert_eq!(params(loc), want, "{loc}");

    // Development: the dev browser rides along, last.
    let dev = get("/").doc().cookie(&format!("__clerk_db_jwt=dvb_1; {u}; __session={expired}"));
    let loc = location(decide_one(Instance::Dev, Mode::Enforce, &dev, &Resumed::first()));
    assert_eq!(params(&loc).last().unwrap(), &("__clerk_db_jwt".to_string(), "dvb_1".to_string()), "{loc}");
    // No session token: no `__session` parameter.
    let none = get("/").doc().cookie("__client_uat=12345");
    let loc = location(decide_one(Instance::Prod, Mode::Enforce, &none, &Resumed::first()));
    assert!(!params(&loc).iter().any(|(k, _)| k == "__session"), "{loc}");

    // The loop guard: the counter counts up to 3, then the request is signed out for the same
    // reason (a protected page goes to sign-in instead, a public one is forwarded).
    for (count, want) in [
        ("0", "307 handshake"),
        ("2", "307 handshake"),
        ("x", "307 handshake"),
        ("3", "307 signed-out session-token-expired-refresh-non-eligible-no-refresh-cookie → https://accounts.inspired.puma-74.lcl.dev/sign-in"),
        ("4", "307 handshake"),
    ] {
        let req = get("/x").doc().cookie(&format!("{u}; __session={expired}; __clerk_redirect_count={count}"));
        let got = run(Instance::Prod, &req);
        assert!(got.starts_with(want), "count {count}: {got}");
        if want == "307 handshake" {
            let next = if count == "x" { 1.0 } else { count.parse::<f64>().unwrap() + 1.0 };
            let d = decide_one(Instance::Prod, Mode::Enforce, &req, &Resumed::first());
            let Decision::Answer(a) = d else { panic!() };
            let resp = a.into_response();
            assert_eq!(resp.headers()["set-cookie"], format!("__clerk_redirect_count={next}; SameSite=Lax; HttpOnly; Max-Age=2"));
        }
    }
    let public = get("/public/x").doc().cookie(&format!("{u}; __session={expired}; __clerk_redirect_count=3"));
    assert_eq!(run(Instance::Prod, &public), "forward signed-out -");
    let api = get("/x").api().cookie(&format!("{u}; __session={expired}; __clerk_redirect_count=3"));
    assert_eq!(
        run(Instance::Prod, &api),
        "401 signed-out session-token-expired-refresh-non-eligible-no-refresh-cookie"
    );
}

/// A proxy URL and `clerk.frontend_api` move the handshake; the publishable key still names the
/// instance.
#[test]
fn the_frontend_api_comes_from_the_proxy_or_the_config() {
    let expired = tok(600);
    for (lines, want) in [
        ("proxy_url = \"https://example.com/__clerk/\"", "https://example.com/__clerk/v1/client/handshake?"),
        ("proxy_url = \"/__clerk\"", "http://app.example.com/__clerk/v1/client/handshake?"),
        ("frontend_api = \"clerk.example.com\"", "https://clerk.example.com/v1/client/handshake?"),
    ] {
        let text = format!(
            "[clerk]\njwks_url = \"http://127.0.0.1:9/v1/jwks\"\npublishable_key = \"{PK_LIVE}\"\n{lines}\n[state]\ndir = \"/dev/null/x\"\n"
        );
        let config = Arc::new(Config::from_toml(&text, &Env::default()).unwrap());
        let gate = gate(Instance::Prod);
        let req = get("/x").doc().cookie(&format!("{}; __session={expired}", uat()));
        let mut parts = req.head();
        let routed = facts::prepare(&mut parts, &config).unwrap();
        let mode = setting(Mode::Enforce);
        let resumed = Resumed::first();
        let facts = RequestFacts::read(&parts, routed, &mode, &config, NOW_MS, &resumed);
        let signatures = gate.signatures(&config, NOW_MS);
        let snap =
            Snapshot { config: &config, now_ms: NOW_MS, revocations: &gate.revocations, signatures: &signatures };
        let loc = location(decide(&facts, &snap));
        assert!(loc.starts_with(want), "{lines}: {loc}");
    }
}

/// §4.4: the refresh's answers, fed back as the next pass sees them.
#[test]
fn refresh_outcomes() {
    let expired = tok(600);
    let fresh = tok(0);
    let bad = stranger().sign(Some("k1"), &Value::Object(claims(0)));
    let u = uat();
    let doc = get("/x").doc().cookie(&format!("{u}; __session={expired}; __refresh_{SUFFIX_LIVE}=r1"));
    let api = get("/x").api().cookie(&format!("{u}; __session={expired}; __refresh_{SUFFIX_LIVE}=r1"));
    let with = |r: Result<Vec<String>, String>| Resumed { refresh: Some(r), ..Resumed::first() };
    let set = |t: &str| {
        Ok(vec![format!("__session_{SUFFIX_LIVE}={t}; Path=/; Secure; SameSite=Lax"), "__client_uat=1; Path=/".into()])
    };
    #[rustfmt::skip]
    let table: Vec<(&Req, Resumed, &str)> = vec![
        (&doc, with(set(&fresh)), "forward signed-in user_1 cookies=__session_MqCvchyS,__client_uat"),
        (&api, with(set(&fresh)), "forward signed-in user_1 cookies=__session_MqCvchyS,__client_uat"),
        (&doc, with(Err("fetch-error".into())), "307 handshake session-token-expired-refresh-fetch-error → fapi cookies=__clerk_redirect_count"),
        (&api, with(Err("session_not_found".into())), "401 signed-out session-token-expired-refresh-session_not_found"),
        (&api, with(Ok(vec![])), "401 signed-out session-token-expired-refresh-unexpected-sdk-error"),
        (&api, with(set(&bad)), "401 signed-out session-token-expired-refresh-invalid-session-token"),
        (&api, with(set(&expired)), "401 signed-out session-token-expired-refresh-invalid-session-token"),
        (&api, with(Ok(vec!["__client_uat=1".into()])), "401 signed-out session-token-expired-refresh-invalid-session-token"),
        (&api, with(Ok(vec!["bad\u{1}cookie".into()])), "401 signed-out session-token-expired-refresh-unexpected-sdk-error"),
    ];
    for (req, resumed, want) in table {
        assert_eq!(render(decide_one(Instance::Prod, Mode::Enforce, req, &resumed)), want, "{resumed:?}");
    }
    // The call itself: Clerk's body.
    let Decision::Call(BackendCall::Refresh { body, .. }) =
        decide_one(Instance::Prod, Mode::Enforce, &doc, &Resumed::first())
    else {
        panic!()
    };
    assert_eq!(body["format"], "cookie");
    assert_eq!(body["expired_token"], expired);
    assert_eq!(body["refresh_token"], "r1");
    assert_eq!(body["request_origin"], "http://app.example.com");
    assert_eq!(body["request_headers"]["sec-fetch-dest"], json!(["document"]));
    // A refresh cookie with an expired token that has no sid cannot be refreshed.
    let no_sid = tok_with(600, |c| {
        c.remove("sid");
    });
    let req = get("/x").api().cookie(&format!("{u}; __session={no_sid}; __refresh_{SUFFIX_LIVE}=r1"));
    assert_eq!(
        run(Instance::Prod, &req),
        "401 signed-out session-token-expired-refresh-expired-session-token-missing-sid-claim"
    );
}

/// §4.6: resolving a returning handshake — nonce (Backend API) and signed token, production
/// (the request proceeds) and development (307 to the clean URL).
#[test]
fn handshake_resolution() {
    let fresh = tok(0);
    let early = tok_with(-600, |_| {});
    let directives = |t: &str| vec![format!("__session={t}; Path=/"), format!("__client_uat={NOW_S}; Path=/")];
    let signed = |list: Vec<String>| signer().sign(Some("k1"), &json!({ "handshake": list }));
    let nonce = |r: Result<Vec<String>, String>| Resumed { handshake_payload: Some(r), ..Resumed::first() };
    let stale = format!("{}; __session={}", uat(), tok(600));
    let prod_nonce = get("/x?a=1").doc().cookie(&format!("{stale}; __clerk_handshake_nonce=n1"));
    let dev_nonce = get("/x?a=1&__clerk_handshake_nonce=n2&__clerk_db_jwt=dvb")
        .doc()
        .cookie(&format!("{stale}; __clerk_db_jwt=dvb"));
    let prod_token = |t: &str| get("/x").doc().cookie(&format!("{stale}; __clerk_handshake={t}"));
    let dev_token =
        |t: &str| get(&format!("/x?__clerk_handshake={t}&__clerk_help=1&b=2")).doc().cookie("__clerk_db_jwt=dvb");
    #[rustfmt::skip]
    let table: Vec<(Instance, Req, Resumed, &str)> = vec![
        // Nonce: the Backend API is asked (the query's nonce wins over a cookie's)…
        (Instance::Prod, prod_nonce.clone(), Resumed::first(), "call handshake_payload n1"),
        (Instance::Dev, dev_nonce.clone().cookie("__clerk_handshake_nonce=other"), Resumed::first(), "call handshake_payload n2"),
        // …and its directives set the cookies: production proceeds signed in…
        (Instance::Prod, prod_nonce.clone(), nonce(Ok(directives(&fresh))), "forward signed-in user_1 cookies=__session,__client_uat"),
        // …development goes back to the clean URL.
        (Instance::Dev, dev_nonce.clone(), nonce(Ok(directives(&fresh))), "307 signed-in - → http://app.example.com/x cookies=__session,__client_uat"),
        // No session directive (signed out elsewhere): signed out, cookies still cleared.
        (Instance::Prod, prod_nonce.clone(), nonce(Ok(vec!["__session=; Max-Age=0".into(), "__client_uat=0".into()])), "307 signed-out session-token-missing → https://accounts.inspired.puma-74.lcl.dev/sign-in cookies=__session,__client_uat"),
        // A Backend API outage: no directives, signed out (not a hang, not a handshake).
        (Instance::Prod, prod_nonce.clone(), nonce(Err("timeout".into())), "307 signed-out session-token-missing → https://accounts.inspired.puma-74.lcl.dev/sign-in"),
        (Instance::Prod, get("/public/x").doc().cookie(&format!("{stale}; __clerk_handshake_nonce=n1")), nonce(Err("timeout".into())), "forward signed-out -"),
        (Instance::Dev, dev_nonce.clone(), nonce(Err("timeout".into())), "307 signed-out session-token-missing → http://app.example.com/x"),
        // Without an API client the nonce resolves to nothing.
        (Instance::ProdNoSecret, prod_nonce.clone(), Resumed::first(), "307 signed-out session-token-missing → https://accounts.inspired.puma-74.lcl.dev/sign-in"),
        // A directive's token that does not verify: production goes on with the cookie path.
        (Instance::Prod, prod_nonce.clone(), nonce(Ok(directives("bad"))), "307 handshake session-token-expired-refresh-non-eligible-no-refresh-cookie → fapi cookies=__clerk_redirect_count"),
        // Signed token, production (cookie) and development (query).
        (Instance::Prod, prod_token(&signed(directives(&fresh))), Resumed::first(), "forward signed-in user_1 cookies=__session,__client_uat"),
        (Instance::Dev, dev_token(&signed(directives(&fresh))), Resumed::first(), "307 signed-in - → http://app.example.com/x cookies=__session,__client_uat"),
        // A token signed by another key: production goes on; development throws (500).
        (Instance::Prod, prod_token(&stranger().sign(Some("k1"), &json!({"handshake": directives(&fresh)}))), Resumed::first(), "307 handshake session-token-expired-refresh-non-eligible-no-refresh-cookie → fapi cookies=__clerk_redirect_count"),
        (Instance::Dev, dev_token(&stranger().sign(Some("k1"), &json!({"handshake": directives(&fresh)}))), Resumed::first(), "500 signed-out handshake-failed"),
        // A JWT-template category cannot carry directives.
        (Instance::Prod, prod_token(&signer().sign_with_header(&json!({"alg":"RS256","kid":"k1","cat":"cl_B7d4PD222AAA"}), &json!({"handshake": directives(&fresh)}))), Resumed::first(), "307 handshake session-token-expired-refresh-non-eligible-no-refresh-cookie → fapi cookies=__clerk_redirect_count"),
        // An unknown kid waits for the key refetch.
        (Instance::Prod, prod_token(&signer().sign(Some("k9"), &json!({"handshake": directives(&fresh)}))), Resumed::first(), "need-kid k9"),
        // Development forgives a clock off by less than a day; production does not.
        (Instance::Dev, dev_token(&signed(directives(&early))), Resumed::first(), "307 signed-in - → http://app.example.com/x cookies=__session,__client_uat"),
        (Instance::Prod, prod_token(&signed(directives(&early))), Resumed::first(), "307 handshake session-token-expired-refresh-non-eligible-no-refresh-cookie → fapi cookies=__clerk_redirect_count"),
        // A header token means the header path: no resolution.
        (Instance::Prod, prod_nonce.clone().bearer(&fresh), Resumed::first(), "forward signed-in user_1"),
    ];
    let mut wrong = Vec::new();
    for (instance, req, resumed, want) in &table {
        let got = render(decide_one(*instance, Mode::Enforce, req, resumed));
        if got != *want {
            wrong.push(format!(
                "{instance:?} {} {:?} {resumed:?}\n   want {want}\n    got {got}",
                req.target, req.headers
            ));
        }
    }
    assert!(wrong.is_empty(), "{} of {} rows differ:\n{}", wrong.len(), table.len(), wrong.join("\n"));
    // The development redirect keeps every other parameter and drops the handshake's.
    let loc =
        location(decide_one(Instance::Dev, Mode::Enforce, &dev_token(&signed(directives(&fresh))), &Resumed::first()));
    assert_eq!(loc, "http://app.example.com/x?b=2");
}

/// §4.10: a signed-out page load of a protected route goes to sign-in with `redirect_url`; a
/// pending session to its tasks; an API call keeps its 401.
#[test]
fn signed_out_page_loads_go_to_sign_in() {
    let pending = tok_with(10, |c| {
        c.insert("sts".into(), "pending".into());
    });
    let u = uat();
    let cases: Vec<(Instance, Req, &str)> = vec![
        (Instance::Prod, get("/x?a=1").doc(), "https://accounts.inspired.puma-74.lcl.dev/sign-in?redirect_url=http%3A%2F%2Fapp.example.com%2Fx%3Fa%3D1"),
        (Instance::ProdSignIn, get("/x").doc(), "http://app.example.com/sign-in?redirect_url=http%3A%2F%2Fapp.example.com%2Fx"),
        (Instance::ProdSignIn, get("/x").doc().cookie(&format!("{u}; __session={pending}")), "http://app.example.com/sign-in/tasks?redirect_url=http%3A%2F%2Fapp.example.com%2Fx"),
        (Instance::Dev, get("/x").doc().cookie("__clerk_db_jwt=dvb_1"), "https://accounts.inspired.puma-74.lcl.dev/sign-in?redirect_url=http%3A%2F%2Fapp.example.com%2Fx&__clerk_db_jwt=dvb_1"),
    ];
    for (instance, req, want) in cases {
        assert_eq!(
            location(decide_one(instance, Mode::Enforce, &req, &Resumed::first())),
            want,
            "{instance:?} {req:?}"
        );
    }
    assert_eq!(run(Instance::ProdSignIn, &get("/x").api()), "401 signed-out session-token-and-uat-missing");
    assert_eq!(
        run(Instance::ProdSignIn, &get("/x").api().cookie(&format!("{u}; __session={pending}"))),
        "401 signed-out session-pending"
    );
    // A revoked session is signed out too.
    let revoked = tok_with(10, |c| {
        c.insert("sid".into(), "sess_revoked".into());
    });
    assert_eq!(
        run(Instance::ProdSignIn, &get("/x").doc().cookie(&format!("{u}; __session={revoked}"))),
        "307 signed-out session-revoked → http://app.example.com/sign-in"
    );
}

/// Item 6: bypass skips the whole flow (no handshake, no call); grace accepts an expired but
/// correctly signed cookie within `grace_max_expired` without a handshake.
#[test]
fn modes_and_the_flow() {
    let u = uat();
    let expired = tok(600);
    let long_expired = tok(7200);
    let refreshable = format!("{u}; __session={expired}; __refresh_{SUFFIX_LIVE}=r1");
    let nonce = format!("{u}; __session={expired}; __clerk_handshake_nonce=n1");
    #[rustfmt::skip]
    let table: Vec<(Mode, Req, &str)> = vec![
        (Mode::Bypass, get("/x").doc().cookie(&format!("{u}; __session={expired}")), "forward bypass -"),
        (Mode::Bypass, get("/x").doc().cookie(&refreshable), "forward bypass -"),
        (Mode::Bypass, get("/x").doc().cookie(&nonce), "forward bypass -"),
        (Mode::Bypass, get("/x").doc().cookie(&format!("{u}; __session={}", tok(10))), "forward bypass user_1"),
        (Mode::Grace, get("/x").doc().cookie(&format!("{u}; __session={expired}")), "forward grace user_1"),
        (Mode::Grace, get("/x").doc().cookie(&refreshable), "forward grace user_1"),
        (Mode::Grace, get("/x").doc().cookie(&format!("{u}; __session={long_expired}")), "307 handshake session-token-expired-refresh-non-eligible-no-refresh-cookie → fapi cookies=__clerk_redirect_count"),
        (Mode::Grace, get("/x").doc().cookie(&format!("{u}; __session={}", tok(10))).header("referer", "https://satellite.com/"), "forward signed-in user_1"),
    ];
    for (mode, req, want) in &table {
        assert_eq!(render(decide_one(Instance::Prod, *mode, req, &Resumed::first())), *want, "{mode} {req:?}");
    }
}
