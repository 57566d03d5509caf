//! The verdict-cache differential property: a cache hit never decides differently from a fresh
//! verification.
//!
//! Each case warms one gate's cache with a request at `t0`, then changes the world — config
//! (and so the mode), key set, revocations, time — and asks again at `t1`. A second gate with
//! exactly the same state at `t1` but an empty cache answers the same request. The two
//! decisions must be identical: same kind of decision, same status, headers and body for answers,
//! same forwarded request head (identity headers included) for forwards.
//!
//! RSA signing is the cost, so the tokens come from a pool signed once, up front, with a
//! deterministic generator; the property varies everything else.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, OnceLock};

use futures_util::FutureExt;
use http_body_util::BodyExt;
use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, TestCaseError, TestRunner};
use serde_json::{json, Map, Value};

use super::*;
use crate::config::{Config, Env};
use crate::keys::{KeyStore, VerifyingKey};
use crate::mint::SigningKey;
use crate::revocation::{Entry, RevocationList};
use crate::state::Runtime;

/// Token times are drawn around this moment (seconds).
const BASE_S: i64 = 1_700_000_000;
const BASE_MS: i64 = BASE_S * 1000;
const POOL: usize = 384;
const CASES: u32 = 10_000;

const PARTY_A: &str = "https://a.example";
const PARTY_B: &str = "https://b.example";
const ISSUER: &str = "https://clerk.example.com";

// === Keys ===

/// A: the instance's key (kid k1). B: a second published key (kid k2). C: a stranger's key,
/// which only becomes trusted when a key-set change publishes it.
fn signers() -> &'static [SigningKey; 3] {
    static KEYS: OnceLock<[SigningKey; 3]> = OnceLock::new();
    KEYS.get_or_init(|| {
        [SigningKey::generate().unwrap(), SigningKey::generate().unwrap(), SigningKey::generate().unwrap()]
    })
}

/// The parsed public key of `signer` under `kid`, parsed once.
fn verifying(signer: usize, kid: &str) -> Arc<VerifyingKey> {
    static PARSED: OnceLock<HashMap<(usize, &'static str), Arc<VerifyingKey>>> = OnceLock::new();
    let parsed = PARSED.get_or_init(|| {
        let mut m = HashMap::new();
        for signer in 0..3 {
            for kid in ["k1", "k2", "k3"] {
                let jwk = signers()[signer].jwk(kid);
                let key = VerifyingKey::from_jwk_components(
                    jwk["n"].as_str().unwrap(),
                    jwk["e"].as_str().unwrap(),
                    Some(kid.into()),
                )
                .unwrap();
                m.insert((signer, kid), Arc::new(key));
            }
        }
        m
    });
    parsed[&(signer, kid)].clone()
}

type Keys = HashMap<String, Arc<VerifyingKey>>;

fn key_map(entries: &[(&str, usize)]) -> Keys {
    entries.iter().map(|(kid, signer)| (kid.to_string(), verifying(*signer, kid))).collect()
}

// === The token pool ===

/// SplitMix64: a tiny deterministic generator, so the pool is the same on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    /// Picks an index by weight.
    fn weighted(&mut self, weights: &[u64]) -> usize {
        let total: u64 = weights.iter().sum();
        let mut r = self.below(total);
        for (i, w) in weights.iter().enumerate() {
            if r < *w {
                return i;
            }
            r -= w;
        }
        weights.len() - 1
    }
    fn range(&mut self, lo: i64, hi: i64) -> i64 {
        lo + self.below((hi - lo + 1) as u64) as i64
    }
}

/// A token and the moment its times are drawn around (its `iat`, when it has a usable one).
fn one_token(rng: &mut Rng) -> (String, i64) {
    let mut header = Map::new();
    // Who signs, under which kid.
    let (signer, kid, corrupt) = match rng.weighted(&[60, 12, 6, 6, 4, 4, 4, 3, 2]) {
        0 => (0, Some("k1"), false),
        1 => (1, Some("k2"), false),
        2 => (0, Some("k2"), false), // wrong key for the kid
        3 => (0, Some("k_unknown"), false),
        4 => (0, Some("k1"), true),  // corrupted signature
        5 => (2, Some("k1"), false), // stranger claims k1
        6 => (2, Some("k3"), false), // stranger's kid, trusted only after it is published
        7 => (0, None, false),
        _ => (2, None, false),
    };
    if let Some(kid) = kid {
        header.insert("kid".into(), kid.into());
    }
    let alg = ["RS256", "RS512", "ES256", "none"][rng.weighted(&[92, 3, 3, 2])];
    header.insert("alg".into(), alg.into());
    match rng.weighted(&[88, 9, 3]) {
        0 => {
            header.insert("typ".into(), "JWT".into());
        }
        1 => {}
        _ => {
            header.insert("typ".into(), "at+jwt".into());
        }
    }
    match rng.weighted(&[75, 19, 3, 3]) {
        0 => {
            header.insert("cat".into(), verify::CAT_SESSION.into());
        }
        1 => {}
        2 => {
            header.insert("cat".into(), verify::CAT_M2M.into());
        }
        _ => {
            header.insert("cat".into(), "cl_B7d4PD222AAA".into());
        }
    }

    let mut c = Map::new();
    let user = rng.below(4);
    match rng.weighted(&[88, 3, 3, 3, 3]) {
        0 => c.insert("sub".into(), format!("user_{user}").into()),
        1 => None,
        2 => c.insert("sub".into(), 42.into()),
        3 => c.insert("sub".into(), "mch_machine".into()),
        _ => c.insert("sub".into(), "".into()),
    };
    if rng.weighted(&[85, 15]) == 0 {
        c.insert("sid".into(), format!("sess_{}", rng.below(4)).into());
    }
    let iat = BASE_S + rng.range(-3600, 3600);
    match rng.weighted(&[92, 5, 3]) {
        0 => c.insert("iat".into(), iat.into()),
        1 => None,
        _ => c.insert("iat".into(), "yesterday".into()),
    };
    match rng.weighted(&[70, 20, 5, 5]) {
        0 => c.insert("nbf".into(), (iat - 10).into()),
        1 => None,
        2 => c.insert("nbf".into(), (iat + 30).into()),
        _ => c.insert("nbf".into(), "x".into()),
    };
    match rng.weighted(&[70, 10, 10, 5, 5]) {
        0 => {
            let ttl = [60, 600, 7200, 2 * 86_400][rng.weighted(&[40, 25, 25, 10])];
            c.insert("exp".into(), (iat + ttl).into())
        }
        1 => c.insert("exp".into(), (iat - 5).into()),
        2 => None,
        3 => c.insert("exp".into(), "never".into()),
        _ => c.insert("exp".into(), (iat + 1).into()),
    };
    match rng.weighted(&[50, 20, 15, 10, 5]) {
        0 => c.insert("azp".into(), PARTY_A.into()),
        1 => c.insert("azp".into(), PARTY_B.into()),
        2 => None,
        3 => c.insert("azp".into(), "".into()),
        _ => c.insert("azp".into(), 5.into()),
    };
    match rng.weighted(&[60, 10, 15, 15]) {
        0 => c.insert("iss".into(), ISSUER.into()),
        1 => c.insert("iss".into(), format!("{ISSUER}/").into()),
        2 => c.insert("iss".into(), "https://clerk.evil.example".into()),
        _ => None,
    };
    match rng.weighted(&[70, 20, 10]) {
        0 => c.insert("sts".into(), "active".into()),
        1 => c.insert("sts".into(), "pending".into()),
        _ => None,
    };
    if rng.weighted(&[70, 30]) == 1 {
        c.insert("org_id".into(), format!("org_{}", rng.below(2)).into());
        c.insert("org_role".into(), ["org:admin", "org:member"][rng.weighted(&[1, 1])].into());
        c.insert("org_slug".into(), "acme".into());
        c.insert("org_permissions".into(), json!(["org:billing:manage"]));
    }
    if rng.weighted(&[90, 10]) == 1 {
        c.insert("act".into(), json!({"sub": "user_admin"}));
    }

    let token = signers()[signer].sign_with_header(&Value::Object(header), &Value::Object(c));
    if !corrupt {
        return (token, iat);
    }
    // Change one character in the middle of the signature.
    let mut bytes = token.into_bytes();
    let i = bytes.len() - 40;
    bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
    (String::from_utf8(bytes).unwrap(), iat)
}

fn pool() -> &'static [(String, i64)] {
    static POOL_TOKENS: OnceLock<Vec<(String, i64)>> = OnceLock::new();
    POOL_TOKENS.get_or_init(|| {
        let mut rng = Rng(0x5EED_C1E7_6A7E);
        (0..POOL).map(|_| one_token(&mut rng)).collect()
    })
}

// === Configs ===

/// One point of the config space; every field is a small index so cases shrink well.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct ConfigSpec {
    parties: u8,
    issuer: bool,
    reject_pending: bool,
    skew: u8,
    jwt_key: u8,
    max_stale: u8,
    mode: u8,
    grace: u8,
}

fn config_spec() -> impl Strategy<Value = ConfigSpec> {
    (
        0..3u8,
        any::<bool>(),
        any::<bool>(),
        0..3u8,
        0..3u8,
        0..2u8,
        prop_oneof![5 => Just(0u8), 4 => Just(1u8), 1 => Just(2u8)],
        0..2u8,
    )
        .prop_map(|(parties, issuer, reject_pending, skew, jwt_key, max_stale, mode, grace)| ConfigSpec {
            parties,
            issuer,
            reject_pending,
            skew,
            jwt_key,
            max_stale,
            mode,
            grace,
        })
}

fn toml_string(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

fn build_config(spec: ConfigSpec) -> Arc<Config> {
    let parties = [vec![], vec![PARTY_A], vec![PARTY_A, PARTY_B]][spec.parties as usize]
        .iter()
        .map(|p| toml_string(p))
        .collect::<Vec<_>>()
        .join(", ");
    let mut text = format!(
        "[clerk]\njwks_url = \"http://127.0.0.1:9/v1/jwks\"\nauthorized_parties = [{parties}]\nclock_skew = \"{}\"\nreject_pending_sessions = {}\n",
        ["0s", "5s", "60s"][spec.skew as usize],
        spec.reject_pending,
    );
    if spec.issuer {
        text.push_str(&format!("issuer = \"{ISSUER}\"\n"));
    }
    match spec.jwt_key {
        0 => {}
        n => {
            text.push_str(&format!("jwt_key = {}\n", toml_string(&signers()[if n == 1 { 0 } else { 2 }].public_pem())))
        }
    }
    text.push_str(&format!(
        "[clerk.keys]\nmax_stale = \"{}\"\n[mode]\nmode = \"{}\"\nreason = \"differential test\"\ngrace_max_expired = \"{}\"\n",
        ["24h", "10m"][spec.max_stale as usize],
        ["enforce", "grace", "bypass"][spec.mode as usize],
        ["1h", "30s"][spec.grace as usize],
    ));
    // The state dir is under a file: persisting the key set fails at once instead of fsyncing.
    text.push_str(
        "[state]\ndir = \"/dev/null/clerkgate-state\"\n[routes]\ndefault = \"protected\"\npublic = [\"/public(.*)\"]\n\
         [[routes.rule]]\npath = \"/api/admin(.*)\"\nrole = \"org:admin\"\n",
    );
    Arc::new(Config::from_toml(&text, &Env::default()).unwrap_or_else(|e| panic!("{e}\n{text}")))
}

/// The runtime snapshot for `config`, its file mode taking effect at `since_ms`.
fn runtime(config: Arc<Config>, since_ms: i64) -> Runtime {
    Runtime { file_mode: Runtime::file_mode_for(&config, since_ms), env_mode: None, admin_override: None, config }
}

// === World changes ===

#[derive(Debug, Clone, Copy)]
enum KeyChange {
    /// No fetch between the two requests.
    Keep,
    /// A refresh that brings the same keys (no key-set generation change), `age` ms before t1.
    Refresh { age: i64 },
    /// k1 removed from the JWKS.
    RemoveK1 { age: i64 },
    /// k1 rotated to the stranger's key under the same kid.
    RotateK1 { age: i64 },
    /// k1 now holds B's key.
    SwapK1 { age: i64 },
    /// The stranger's key published as k3.
    AddK3 { age: i64 },
    /// A fetch that leaves nothing.
    Empty { age: i64 },
}

fn key_change() -> impl Strategy<Value = KeyChange> {
    let age = prop_oneof![Just(0i64), 0..60_000i64];
    prop_oneof![
        6 => Just(KeyChange::Keep),
        4 => age.clone().prop_map(|age| KeyChange::Refresh { age }),
        1 => age.clone().prop_map(|age| KeyChange::RemoveK1 { age }),
        1 => age.clone().prop_map(|age| KeyChange::RotateK1 { age }),
        1 => age.clone().prop_map(|age| KeyChange::SwapK1 { age }),
        1 => age.clone().prop_map(|age| KeyChange::AddK3 { age }),
        1 => age.prop_map(|age| KeyChange::Empty { age }),
    ]
}

fn initial_keys() -> Keys {
    key_map(&[("k1", 0), ("k2", 1)])
}

impl KeyChange {
    /// The set after the change and when it was fetched; `None` when nothing was fetched.
    fn apply(self, t1: i64) -> Option<(Keys, i64)> {
        let (keys, age) = match self {
            KeyChange::Keep => return None,
            KeyChange::Refresh { age } => (initial_keys(), age),
            KeyChange::RemoveK1 { age } => (key_map(&[("k2", 1)]), age),
            KeyChange::RotateK1 { age } => (key_map(&[("k1", 2), ("k2", 1)]), age),
            KeyChange::SwapK1 { age } => (key_map(&[("k1", 1), ("k2", 1)]), age),
            KeyChange::AddK3 { age } => (key_map(&[("k1", 0), ("k2", 1), ("k3", 2)]), age),
            KeyChange::Empty { age } => (Keys::new(), age),
        };
        Some((keys, t1 - age))
    }
}

#[derive(Debug, Clone, Copy)]
enum Rev {
    None,
    User(u8),
    Session(u8),
    /// Tokens issued before `BASE + s` seconds.
    IssuedBefore(i64),
    UserAndSession(u8, u8),
}

fn rev() -> impl Strategy<Value = Rev> {
    prop_oneof![
        4 => Just(Rev::None),
        2 => (0..4u8).prop_map(Rev::User),
        2 => (0..4u8).prop_map(Rev::Session),
        2 => (-3600..3600i64).prop_map(Rev::IssuedBefore),
        1 => (0..4u8, 0..4u8).prop_map(|(u, s)| Rev::UserAndSession(u, s)),
    ]
}

impl Rev {
    fn list(self) -> RevocationList {
        let entry = || Entry { added_at_ms: BASE_MS, actor: "test".into(), reason: String::new() };
        let mut l = RevocationList::default();
        match self {
            Rev::None => {}
            Rev::User(u) => {
                l.users.insert(format!("user_{u}"), entry());
            }
            Rev::Session(s) => {
                l.sessions.insert(format!("sess_{s}"), entry());
            }
            Rev::IssuedBefore(s) => l.issued_before_ms = Some((BASE_S + s) * 1000),
            Rev::UserAndSession(u, s) => {
                l.users.insert(format!("user_{u}"), entry());
                l.sessions.insert(format!("sess_{s}"), entry());
            }
        }
        l
    }
}

// === One case ===

#[derive(Debug, Clone)]
struct Case {
    token: usize,
    config0: ConfigSpec,
    /// The config swapped in between the requests, if any.
    config1: Option<ConfigSpec>,
    /// How old the key set is at t0 (ms).
    keys_age0: i64,
    keys: KeyChange,
    rev0: Rev,
    /// The revocation list swapped in between the requests, if any.
    rev1: Option<Rev>,
    /// t0 relative to the token's `iat` (ms).
    t0: i64,
    /// t1 − t0 (ms).
    dt: i64,
    /// Path of each request (0 protected, 1 public, 2 admin rule).
    path0: u8,
    path1: u8,
    /// Carrier of each request (false header, true cookie).
    cookie0: bool,
    cookie1: bool,
}

fn case() -> impl Strategy<Value = Case> {
    let dt = prop_oneof![
        3 => Just(0i64),
        3 => 0..2_000i64,
        4 => 0..120_000i64,
        4 => 0..7_200_000i64,
        2 => 82_800_000..93_600_000i64, // 23 h to 26 h: across max_stale
        1 => -5_000..0i64,
    ];
    // Mostly around the token's own lifetime, so that many tokens are valid at t0.
    let t0 = prop_oneof![4 => -20_000..70_000i64, 3 => -120_000..7_300_000i64, 1 => -7_200_000..7_200_000i64];
    let keys_age0 = prop_oneof![2 => Just(0i64), 3 => 0..600_000i64, 2 => 0..108_000_000i64];
    (
        (0..POOL, config_spec(), prop::option::weighted(0.15, config_spec()), keys_age0, key_change()),
        (rev(), prop::option::weighted(0.25, rev()), t0, dt),
        (
            prop_oneof![6 => Just(0u8), 2 => Just(1u8), 2 => Just(2u8)],
            prop_oneof![6 => Just(0u8), 2 => Just(1u8), 2 => Just(2u8)],
        ),
        (prop::bool::weighted(0.2), prop::bool::weighted(0.2)),
    )
        .prop_map(
            |((token, config0, config1, keys_age0, keys), (rev0, rev1, t0, dt), (path0, path1), (cookie0, cookie1))| {
                Case { token, config0, config1, keys_age0, keys, rev0, rev1, t0, dt, path0, path1, cookie0, cookie1 }
            },
        )
}

/// A decision, carried out, in comparable form.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    Forward { tag_response: bool, uri: String, headers: BTreeMap<String, Vec<String>> },
    Answer { status: u16, headers: BTreeMap<String, Vec<String>>, body: String },
}

impl Outcome {
    fn is_forward(&self) -> bool {
        matches!(self, Outcome::Forward { .. })
    }
}

fn header_map(h: &http::HeaderMap) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (name, value) in h {
        out.entry(name.as_str().to_string()).or_default().push(String::from_utf8_lossy(value.as_bytes()).into_owned());
    }
    out
}

fn request(token: &str, path: u8, cookie: bool) -> http::request::Parts {
    let uri = ["/api/x", "/public/x", "/api/admin/x"][path as usize];
    let builder = http::Request::builder().uri(uri).header("host", "app.example.com");
    let builder = if cookie {
        builder.header("cookie", format!("__session={token}"))
    } else {
        builder.header("authorization", format!("Bearer {token}"))
    };
    builder.body(()).unwrap().into_parts().0
}

/// What the service does: admit, and after an unknown-kid refetch (none happens here: the
/// JWKS is unreachable) admit again with `refetched`.
fn decide(gate: &Gate, token: &str, path: u8, cookie: bool) -> Outcome {
    let mut parts = request(token, path, cookie);
    let decision = match gate.admit(&mut parts, false) {
        Decision::NeedKid(_) => gate.admit(&mut parts, true),
        other => other,
    };
    match decision {
        Decision::Forward(f) => Outcome::Forward {
            tag_response: f.tags_response(),
            uri: parts.uri.to_string(),
            headers: header_map(&parts.headers),
        },
        Decision::Answer(answer) => {
            let (head, body) = answer.into_response().into_parts();
            let bytes = body
                .collect()
                .now_or_never()
                .expect("gate answers have a ready body")
                .expect("body collects")
                .to_bytes();
            Outcome::Answer {
                status: head.status.as_u16(),
                headers: header_map(&head.headers),
                body: String::from_utf8_lossy(&bytes).into_owned(),
            }
        }
        Decision::NeedKid(kid) => panic!("admit(.., true) asked for kid {kid} again"),
        Decision::VerifyWebhook => panic!("no webhook route is configured in this test"),
        Decision::Call(c) => panic!("no publishable key is configured in this test, yet it asked for {c:?}"),
    }
}

/// Two gates reused across cases (a key store holds an HTTP client, costly to build); each
/// case resets every piece of their state.
struct Harness {
    warm: Gate,
    fresh: Gate,
    configs: RefCell<HashMap<ConfigSpec, Arc<Config>>>,
    stats: RefCell<Stats>,
}

#[derive(Debug, Default)]
struct Stats {
    cases: u32,
    warmed: u32,
    hits: u32,
    hit_forward: u32,
    hit_answer: u32,
    hit_signed_in: u32,
    hit_after_time_change: u32,
    hit_after_refresh: u32,
}

fn gate(config: &Arc<Config>, clock: Clock) -> Gate {
    let shared = Arc::new(crate::state::Shared::new(runtime(config.clone(), BASE_MS)));
    let keys = Arc::new(KeyStore::new(config, clock.clone()));
    Gate::new(shared, keys, Arc::new(Revocations::default()), clock)
}

impl Harness {
    fn new() -> Self {
        let base = build_config(ConfigSpec {
            parties: 0,
            issuer: false,
            reject_pending: false,
            skew: 1,
            jwt_key: 0,
            max_stale: 0,
            mode: 0,
            grace: 0,
        });
        Harness {
            warm: gate(&base, Clock::manual(BASE_MS)),
            fresh: gate(&base, Clock::manual(BASE_MS)),
            configs: RefCell::new(HashMap::new()),
            stats: RefCell::new(Stats::default()),
        }
    }

    fn config(&self, spec: ConfigSpec) -> Arc<Config> {
        self.configs.borrow_mut().entry(spec).or_insert_with(|| build_config(spec)).clone()
    }

    fn run(&self, c: &Case) -> Result<(), TestCaseError> {
        let (token, iat) = &pool()[c.token];
        let t0 = iat * 1000 + c.t0;
        let t1 = t0 + c.dt;
        let config0 = self.config(c.config0);
        let config1 = c.config1.map(|s| self.config(s));

        // The warm gate, as it was at t0.
        let w = &self.warm;
        w.clock.set_ms(t0);
        w.shared.update(|_| runtime(config0.clone(), t0));
        w.keys.install(initial_keys(), t0 - c.keys_age0);
        w.revocations.replace(c.rev0.list());
        w.cache.clear();
        let _ = decide(w, token, c.path0, c.cookie0);
        let warmed = !w.cache.is_empty();

        // The world moves on.
        if let Some(config1) = &config1 {
            w.shared.update(|_| runtime(config1.clone(), t0));
        }
        let fetched1 = match c.keys.apply(t1) {
            Some((keys, at)) => {
                w.keys.install(keys.clone(), at);
                (keys, at)
            }
            None => (initial_keys(), t0 - c.keys_age0),
        };
        let rev1 = c.rev1.unwrap_or(c.rev0);
        if c.rev1.is_some() {
            w.revocations.replace(rev1.list());
        }
        w.clock.set_ms(t1);
        // The gate's own hit counter says whether the cache answered; probing the cache here
        // could disturb it.
        let hits_before = w.outcome_counts().cache_hits;
        let warm = decide(w, token, c.path1, c.cookie1);
        let hit = w.outcome_counts().cache_hits > hits_before;

        // A gate with the same state at t1 and nothing cached.
        let f = &self.fresh;
        f.clock.set_ms(t1);
        let config_now = config1.unwrap_or(config0);
        f.shared.update(|_| runtime(config_now.clone(), t0));
        f.keys.install(fetched1.0, fetched1.1);
        f.revocations.replace(rev1.list());
        f.cache.clear();
        let fresh = decide(f, token, c.path1, c.cookie1);

        let mut s = self.stats.borrow_mut();
        s.cases += 1;
        s.warmed += u32::from(warmed);
        if hit {
            s.hits += 1;
            if warm.is_forward() {
                s.hit_forward += 1;
            } else {
                s.hit_answer += 1;
            }
            if matches!(&warm, Outcome::Forward { headers, .. }
                if headers.get("x-clerk-auth-status").is_some_and(|v| v == &["signed-in"]))
            {
                s.hit_signed_in += 1;
            }
            s.hit_after_time_change += u32::from(c.dt != 0);
            s.hit_after_refresh += u32::from(matches!(c.keys, KeyChange::Refresh { .. }));
        }
        drop(s);
        prop_assert_eq!(warm, fresh, "cache hit at t1: {}", hit);
        Ok(())
    }
}

#[test]
fn a_cached_verdict_never_decides_differently_from_a_fresh_verification() {
    let harness = Harness::new();
    let _ = pool();
    let mut runner = TestRunner::new(ProptestConfig {
        cases: CASES,
        failure_persistence: None,
        max_shrink_iters: 2_000,
        // The default ChaCha generator is a noticeable share of the run in a debug build.
        rng_algorithm: proptest::test_runner::RngAlgorithm::XorShift,
        ..ProptestConfig::default()
    });
    let result = runner.run(&case(), |c| harness.run(&c));
    if let Err(e) = result {
        panic!("{e}");
    }
    let s = harness.stats.borrow();
    eprintln!("differential: {s:?}");
    // The property is only as good as its coverage: the cache must actually have been hit,
    // on accepted and on refused requests, after time moved and after key refreshes.
    assert_eq!(s.cases, CASES);
    assert!(s.warmed >= CASES / 5, "{s:?}");
    assert!(s.hits >= CASES / 20, "{s:?}");
    assert!(s.hit_signed_in >= CASES / 100, "{s:?}");
    assert!(s.hit_answer >= CASES / 50, "{s:?}");
    assert!(s.hit_after_time_change >= CASES / 20, "{s:?}");
    assert!(s.hit_after_refresh >= CASES / 100, "{s:?}");
}

/// The minimal form of one difference the property finds: a verdict cached while the key set
/// was usable is still served after the set has gone stale (older than `clerk.keys.max_stale`)
/// without any key-set change, where a fresh verification answers 503 `jwks-unavailable`.
/// Staleness is a function of time, not of the key-set generation, so the epoch never moves.
#[test]
fn a_cached_verdict_is_not_served_from_a_stale_key_set() {
    let harness = Harness::new();
    let good = signers()[0].sign(
        Some("k1"),
        &json!({"sub": "user_1", "sid": "sess_1", "iat": BASE_S, "nbf": BASE_S - 10, "exp": BASE_S + 7200}),
    );
    let config = harness.config(ConfigSpec {
        parties: 0,
        issuer: false,
        reject_pending: false,
        skew: 1,
        jwt_key: 0,
        max_stale: 1, // 10 minutes
        mode: 0,
        grace: 0,
    });
    let t0 = BASE_MS;
    let t1 = t0 + 15 * 60 * 1000; // the keys are now 15 minutes old; the token is still valid
    for (gate, warm_first) in [(&harness.warm, true), (&harness.fresh, false)] {
        gate.clock.set_ms(t0);
        gate.shared.update(|_| runtime(config.clone(), t0));
        gate.keys.install(initial_keys(), t0);
        gate.cache.clear();
        if warm_first {
            let first = decide(gate, &good, 0, false);
            assert!(first.is_forward(), "{first:?}");
        }
        gate.clock.set_ms(t1);
    }
    let fresh = decide(&harness.fresh, &good, 0, false);
    match &fresh {
        Outcome::Answer { status, headers, .. } => {
            assert_eq!(*status, 503);
            assert_eq!(headers["x-clerk-auth-reason"], ["jwks-unavailable"]);
        }
        other => panic!("a fresh verification with stale keys: {other:?}"),
    }
    let warm = decide(&harness.warm, &good, 0, false);
    assert_eq!(warm, fresh);
}

/// The other direction of the same fault: while the remote set is stale, a token is verified
/// with the networkless key (`jwt_key`); a refresh then brings the *same* keys back (no key-set
/// generation change), so the cached verdict survives — but a fresh verification now picks the
/// remote key named by the token's `kid`, under which the signature is invalid.
#[test]
fn a_verdict_from_the_static_key_is_not_served_once_the_remote_set_is_usable_again() {
    let harness = Harness::new();
    // Signed with A, but naming k2, which the JWKS publishes with B's key.
    let token = signers()[0].sign(
        Some("k2"),
        &json!({"sub": "user_1", "sid": "sess_1", "iat": BASE_S, "nbf": BASE_S - 10, "exp": BASE_S + 7200}),
    );
    let config = harness.config(ConfigSpec {
        parties: 0,
        issuer: false,
        reject_pending: false,
        skew: 1,
        jwt_key: 1,   // A's public key
        max_stale: 1, // 10 minutes
        mode: 0,
        grace: 0,
    });
    let t0 = BASE_MS;
    let t1 = t0 + 1_000;
    for (gate, warm_first) in [(&harness.warm, true), (&harness.fresh, false)] {
        gate.clock.set_ms(t0);
        gate.shared.update(|_| runtime(config.clone(), t0));
        gate.keys.install(initial_keys(), t0 - 11 * 60 * 1000); // stale at t0
        gate.cache.clear();
        if warm_first {
            let first = decide(gate, &token, 0, false);
            assert!(first.is_forward(), "verified with the static key: {first:?}");
        }
        gate.keys.install(initial_keys(), t1); // the refresh succeeds with the same keys
        gate.clock.set_ms(t1);
    }
    let fresh = decide(&harness.fresh, &token, 0, false);
    match &fresh {
        Outcome::Answer { status, headers, .. } => {
            assert_eq!(*status, 401);
            assert_eq!(headers["x-clerk-auth-reason"], ["token-invalid-signature"]);
        }
        other => panic!("a fresh verification with the remote key: {other:?}"),
    }
    let warm = decide(&harness.warm, &token, 0, false);
    assert_eq!(warm, fresh);
}

/// A few fixed points of the same harness, so a broken harness cannot pass the property
/// vacuously: the pool's well-formed token is accepted, a revocation and a key rotation
/// between the two requests are honoured on the warm gate.
#[test]
fn harness_sanity() {
    let harness = Harness::new();
    let good = signers()[0].sign(
        Some("k1"),
        &json!({"sub": "user_1", "sid": "sess_1", "iat": BASE_S, "nbf": BASE_S - 10, "exp": BASE_S + 7200}),
    );
    let spec = ConfigSpec {
        parties: 0,
        issuer: false,
        reject_pending: false,
        skew: 1,
        jwt_key: 0,
        max_stale: 0,
        mode: 0,
        grace: 0,
    };
    let base = Case {
        token: 0,
        config0: spec,
        config1: None,
        keys_age0: 0,
        keys: KeyChange::Keep,
        rev0: Rev::None,
        rev1: None,
        t0: 0,
        dt: 1_000,
        path0: 0,
        path1: 0,
        cookie0: false,
        cookie1: false,
    };
    let w = &harness.warm;
    let run = |c: &Case| -> Outcome {
        let t0 = BASE_MS + c.t0;
        w.clock.set_ms(t0);
        w.shared.update(|_| runtime(harness.config(c.config0), t0));
        w.keys.install(initial_keys(), t0);
        w.revocations.replace(c.rev0.list());
        w.cache.clear();
        let first = decide(w, &good, 0, false);
        assert!(first.is_forward(), "{first:?}");
        assert_eq!(w.cache.len(), 1);
        if let Some((keys, at)) = c.keys.apply(t0 + c.dt) {
            w.keys.install(keys, at);
        }
        if let Some(r) = c.rev1 {
            w.revocations.replace(r.list());
        }
        w.clock.set_ms(t0 + c.dt);
        decide(w, &good, 0, false)
    };
    match run(&base) {
        Outcome::Forward { headers, tag_response: false, .. } => {
            assert_eq!(headers["x-clerk-user-id"], ["user_1"]);
            assert_eq!(headers["x-clerk-session-id"], ["sess_1"]);
            assert_eq!(headers["x-clerk-auth-status"], ["signed-in"]);
        }
        other => panic!("{other:?}"),
    }
    let revoked = run(&Case { rev1: Some(Rev::Session(1)), ..base.clone() });
    assert!(
        matches!(&revoked, Outcome::Answer { status: 401, headers, .. } if headers["x-clerk-auth-reason"] == ["session-revoked"]),
        "{revoked:?}"
    );
    let rotated = run(&Case { keys: KeyChange::RotateK1 { age: 0 }, ..base.clone() });
    assert!(
        matches!(&rotated, Outcome::Answer { status: 401, headers, .. } if headers["x-clerk-auth-reason"] == ["token-invalid-signature"]),
        "{rotated:?}"
    );
    let expired = run(&Case { dt: 7_300_000, ..base.clone() });
    assert!(
        matches!(&expired, Outcome::Answer { status: 401, headers, .. } if headers["x-clerk-auth-reason"] == ["token-expired"]),
        "{expired:?}"
    );
    // The pool holds both accepted and refused tokens under the base config.
    let f = &harness.fresh;
    f.clock.set_ms(BASE_MS);
    f.shared.update(|_| runtime(harness.config(spec), BASE_MS));
    f.keys.install(initial_keys(), BASE_MS);
    f.revocations.replace(RevocationList::default());
    let mut accepted = 0;
    for (token, iat) in pool() {
        f.clock.set_ms(iat * 1000);
        accepted += usize::from(decide(f, token, 0, false).is_forward());
    }
    assert!((POOL / 10..=POOL * 9 / 10).contains(&accepted), "{accepted} of {POOL} accepted at their iat");
}
