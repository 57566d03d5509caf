//! The decision as a table: mode × route × credential → decision, without sockets. The facts
//! are read from real request heads, the signed stage is the gate's (real keys, real cache).

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use http::request::Parts;
use serde_json::json;

use super::*;
use crate::auth::facts::{self, RequestFacts};
use crate::auth::Gate;
use crate::clock::Clock;
use crate::config::{Config, Env};
use crate::keys::{KeyStore, VerifyingKey};
use crate::mint::SigningKey;
use crate::mode::{Mode, ModeSetting, ModeSource};
use crate::revocation::{Entry, RevocationList};
use crate::state::{Runtime, Shared};

const NOW_S: i64 = 1_700_000_000;
const NOW_MS: i64 = NOW_S * 1000;

fn signer() -> &'static SigningKey {
    static KEY: OnceLock<SigningKey> = OnceLock::new();
    KEY.get_or_init(|| SigningKey::generate().unwrap())
}

fn config() -> Arc<Config> {
    static CONFIG: OnceLock<Arc<Config>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let text =
                "[clerk]\njwks_url = \"http://127.0.0.1:9/v1/jwks\"\nwebhook_signing_secret = \"whsec_dGVzdA==\"\n\
                 [mode]\ngrace_max_expired = \"1h\"\n\
                 [state]\ndir = \"/dev/null/clerkgate-state\"\n\
                 [routes]\ndefault = \"protected\"\npublic = [\"/public(.*)\"]\n\
                 [[routes.rule]]\npath = \"/never(.*)\"\nbypass = \"never\"\n\
                 [[routes.rule]]\npath = \"/admin(.*)\"\nrole = \"org:admin\"\n\
                 [[routes.rule]]\npath = \"/hooks\"\nwebhook = \"clerk\"\n";
            Arc::new(Config::from_toml(text, &Env::default()).unwrap_or_else(|e| panic!("{e}")))
        })
        .clone()
}

/// A gate whose key set publishes the signer under `k1`, and which revokes `sess_revoked`.
fn gate() -> Gate {
    gate_for(config(), signer(), NOW_MS)
}

/// A gate over `config` at `now_ms` whose key set publishes `signer` under `k1`, and which
/// revokes `sess_revoked` (shared with the browser flow's tables).
pub(in crate::auth) fn gate_for(config: Arc<Config>, signer: &SigningKey, now_ms: i64) -> Gate {
    let clock = Clock::manual(now_ms);
    let keys = Arc::new(KeyStore::new(&config, clock.clone()));
    let jwk = signer.jwk("k1");
    let key =
        VerifyingKey::from_jwk_components(jwk["n"].as_str().unwrap(), jwk["e"].as_str().unwrap(), Some("k1".into()))
            .unwrap();
    keys.install(HashMap::from([("k1".to_string(), Arc::new(key))]), now_ms);
    let mut revoked = RevocationList::default();
    revoked
        .sessions
        .insert("sess_revoked".into(), Entry { added_at_ms: 0, actor: "test".into(), reason: String::new() });
    let shared = Arc::new(Shared::new(Runtime::initial(config, now_ms)));
    Gate::new(shared, keys, Arc::new(crate::revocation::Revocations::new(revoked)), clock)
}

/// A session token for `sid`, issued `age_s` ago, living 60 s, signed under `kid`.
fn token(kid: &str, sid: &str, age_s: i64) -> String {
    let iat = NOW_S - age_s;
    signer().sign(Some(kid), &json!({"sub": "user_1", "sid": sid, "iat": iat, "nbf": iat - 5, "exp": iat + 60}))
}

fn setting(mode: Mode) -> ModeSetting {
    ModeSetting {
        mode,
        source: ModeSource::Admin,
        reason: "test".into(),
        actor: "t".into(),
        since_ms: 0,
        expires_at_ms: None,
    }
}

fn head(path: &str, authorization: &[&str]) -> Parts {
    let mut b = http::Request::builder().uri(path).header("host", "app.example.com");
    for a in authorization {
        b = b.header("authorization", *a);
    }
    b.body(()).unwrap().into_parts().0
}

/// What the decision came to, in one word and a detail.
fn outcome(d: Decision) -> (String, String) {
    match d {
        Decision::Forward(f) => {
            let who = f.identity.map_or("-".to_string(), |v| v.claims.user_id.clone());
            (format!("forward {}", f.status.as_str()), who)
        }
        Decision::Answer(a) => (format!("answer {}", a.status().as_u16()), a.reason().to_string()),
        Decision::NeedKid(kid) => ("need-kid".into(), kid),
        Decision::VerifyWebhook => ("verify-webhook".into(), String::new()),
        Decision::Call(c) => ("call".into(), c.label().into()),
    }
}

/// (mode, path, `Authorization` headers, refetched, decision, detail)
type Row<'a> = (Mode, &'a str, &'a [&'a str], bool, &'a str, &'a str);

#[test]
fn the_decision_table() {
    let gate = gate();
    let config = config();
    let valid = format!("Bearer {}", token("k1", "sess_1", 10));
    let expired = format!("Bearer {}", token("k1", "sess_1", 600)); // 540 s past exp
    let revoked = format!("Bearer {}", token("k1", "sess_revoked", 10));
    let unknown = format!("Bearer {}", token("k9", "sess_1", 10));
    use Mode::{Bypass, Enforce, Grace};
    let table: &[Row] = &[
        (Enforce, "/api", &[], false, "answer 401", "session-token-missing"),
        (Enforce, "/public/x", &[], false, "forward signed-out", "-"),
        (Enforce, "/api", &[&valid], false, "forward signed-in", "user_1"),
        (Enforce, "/api", &[&expired], false, "answer 401", "token-expired"),
        (Grace, "/api", &[&expired], false, "forward grace", "user_1"),
        (Grace, "/api", &[&valid], false, "forward signed-in", "user_1"),
        (Enforce, "/public/x", &[&revoked], false, "forward signed-out", "-"),
        (Enforce, "/api", &[&revoked], false, "answer 401", "session-revoked"),
        (Grace, "/api", &[&revoked], false, "answer 401", "session-revoked"),
        (Enforce, "/admin/x", &[&valid], false, "answer 403", "missing-role"),
        (Enforce, "/api", &[&valid, &valid], false, "answer 400", "conflicting-credentials"),
        (Enforce, "/api", &[&unknown], false, "need-kid", "k9"),
        (Enforce, "/public/x", &[&unknown], false, "need-kid", "k9"),
        (Enforce, "/api", &[&unknown], true, "answer 401", "jwk-kid-mismatch"),
        (Enforce, "/hooks", &[&valid], false, "verify-webhook", ""),
        (Bypass, "/hooks", &[], false, "verify-webhook", ""),
        // Bypass: everything passes, identity only for a fully valid token, and it never waits.
        (Bypass, "/api", &[], false, "forward bypass", "-"),
        (Bypass, "/api", &[&valid], false, "forward bypass", "user_1"),
        (Bypass, "/api", &[&expired], false, "forward bypass", "-"),
        (Bypass, "/api", &[&revoked], false, "forward bypass", "-"),
        (Bypass, "/api", &[&unknown], false, "forward bypass", "-"),
        (Bypass, "/api", &[&valid, &valid], false, "forward bypass", "-"),
        (Bypass, "/admin/x", &[&valid], false, "forward bypass", "user_1"),
        (Bypass, "/never/x", &[], false, "answer 401", "session-token-missing"),
        (Bypass, "/never/x", &[&valid], false, "forward signed-in", "user_1"),
    ];
    for (mode, path, authorization, refetched, want, detail) in table {
        let mut parts = head(path, authorization);
        let routed = facts::prepare(&mut parts, &config).expect("a clean head");
        let mode_setting = setting(*mode);
        let resumed = crate::auth::backend::Resumed { refetched: *refetched, ..Default::default() };
        let facts = RequestFacts::read(&parts, routed, &mode_setting, &config, NOW_MS, &resumed);
        let signatures = gate.signatures(&config, NOW_MS);
        let snapshot =
            Snapshot { config: &config, now_ms: NOW_MS, revocations: &gate.revocations, signatures: &signatures };
        let got = outcome(decide(&facts, &snapshot));
        let case = format!("{mode} {path} {} token(s) refetched={refetched}", authorization.len());
        assert_eq!(got, (want.to_string(), detail.to_string()), "{case}");
    }
}

#[test]
fn a_refused_answer_carries_its_fault_and_challenge() {
    let a = Failure::new(Reason::TokenExpired, "JWT is expired.").answer(true);
    assert_eq!((a.status().as_u16(), a.fault()), (401, crate::answer::Fault::Client));
    let resp = a.into_response();
    assert_eq!(resp.headers()["www-authenticate"], "Bearer realm=\"clerkgate\", error=\"invalid_token\"");
    let a = Failure::new(Reason::JwksUnavailable, "no keys").answer(true);
    assert_eq!((a.status().as_u16(), a.fault()), (503, crate::answer::Fault::Clerk));
    assert_eq!(a.into_response().headers()["retry-after"], "5");
}
