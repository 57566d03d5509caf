//! Criterion benches for the request hot path, with the bare aws-lc-rs signature check as the
//! floor measured in the same run, so every other figure reads as a ratio to it.
//!
//! Run: `cargo bench --bench hot_path` (see BENCHMARKS.md).

use std::collections::HashMap;
use std::convert::Infallible;
use std::hint::black_box;
use std::sync::Arc;

use aws_lc_rs::signature::{ParsedPublicKey, RsaPublicKeyComponents, RSA_PKCS1_2048_8192_SHA256};
use axum::body::Body;
use base64::Engine;
use clerkgate::auth::has::has_role_and_permission;
use clerkgate::auth::payload::Payload;
use clerkgate::auth::verify::{self, Carrier, Policy};
use clerkgate::auth::{token, AuthLayer, Epoch, Gate, SessionClaims, VerdictCache};
use clerkgate::clock::Clock;
use clerkgate::config::{Config, Env};
use clerkgate::keys::{KeySet, KeyStore, VerifyingKey};
use clerkgate::mint::{SigningKey, TokenSpec};
use clerkgate::revocation::Revocations;
use clerkgate::state::{Runtime, Shared};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use futures_util::FutureExt;
use http::{HeaderMap, HeaderValue, Request, Response};
use tower::{Layer, Service};

const KID: &str = "ins_bench";
const NOW_S: i64 = 1_800_000_000;

struct Fixture {
    key: SigningKey,
    token: String,
    set: KeySet,
    n: Vec<u8>,
    e: Vec<u8>,
}

fn fixture() -> Fixture {
    let key = SigningKey::generate().expect("key");
    // A Clerk-shaped v2 token with an organisation, about the size of a real one.
    let spec = TokenSpec {
        sub: "user_2GIpXOEpVyJw51rkZn9Kmnc6Sxr".into(),
        sid: "sess_2GbDB4enNdCa5vS1zpC3Xzg9tK9".into(),
        azp: Some("https://app.example.com".into()),
        iss: Some("https://clerk.example.com".into()),
        org_id: Some("org_2abcdefghijklmnopqrstuvwx".into()),
        org_role: Some("org:admin".into()),
        org_slug: Some("acme".into()),
        org_permissions: vec!["org:billing:manage".into(), "org:billing:read".into(), "org:teams:read".into()],
        claims_v2: true,
        ttl_s: 3600,
    };
    let token = key.sign(Some(KID), &spec.claims(NOW_S));
    let jwk = key.jwk(KID);
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let n = b64.decode(jwk["n"].as_str().unwrap()).unwrap();
    let e = b64.decode(jwk["e"].as_str().unwrap()).unwrap();
    let vk = VerifyingKey::from_raw_components(&n, &e, Some(KID.into())).unwrap();
    let mut keys = HashMap::new();
    keys.insert(KID.to_string(), Arc::new(vk));
    let set = KeySet { keys, fetched_at_ms: Some(NOW_S * 1000), ..KeySet::default() };
    Fixture { key, token, set, n, e }
}

fn config_text(cache_entries: usize) -> String {
    format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n[upstream]\nurl = \"http://127.0.0.1:9\"\n[clerk]\njwks_url = \"http://127.0.0.1:9/v1/jwks\"\nauthorized_parties = [\"https://app.example.com\"]\nverdict_cache_entries = {cache_entries}\n[routes]\ndefault = \"protected\"\npublic = [\"/\", \"/sign-in(.*)\"]\n[[routes.rule]]\npath = \"/api/admin(.*)\"\nrole = \"org:admin\"\n[[routes.rule]]\npath = \"/api/billing(.*)\"\npermission = \"org:billing:manage\"\n[admin]\nlisten = \"127.0.0.1:0\"\n[state]\ndir = \"{}\"\n",
        std::env::temp_dir().join("clerkgate-bench-state").display()
    )
}

fn gate(f: &Fixture, cache_entries: usize, bypass: bool) -> Arc<Gate> {
    let mut text = config_text(cache_entries);
    if bypass {
        text.push_str("[mode]\nmode = \"bypass\"\nreason = \"bench\"\nmax_override_ttl = \"1000h\"\n");
    }
    let config = Arc::new(Config::from_toml(&text, &Env::default()).expect("bench config"));
    let clock = Clock::manual(NOW_S * 1000);
    let keys = Arc::new(KeyStore::new(&config, clock.clone()));
    keys.install(f.set.keys.clone(), NOW_S * 1000);
    let shared = Arc::new(Shared::new(Runtime::initial(config, clock.now_ms())));
    Arc::new(Gate::new(shared, keys, Arc::new(Revocations::default()), clock))
}

fn request(token: &str) -> Request<Body> {
    Request::builder()
        .uri("/api/admin/reports?page=2")
        .header("host", "app.example.com")
        .header("user-agent", "Mozilla/5.0 (X11; Linux x86_64) bench")
        .header("accept", "application/json")
        .header("accept-encoding", "gzip, br")
        .header("authorization", format!("Bearer {token}"))
        .header("cookie", "theme=dark; __client_uat=1800000000")
        .body(Body::empty())
        .unwrap()
}

fn benches(c: &mut Criterion) {
    let f = fixture();
    let (signing_input, sig_b64) = f.token.rsplit_once('.').unwrap();
    let signature = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(sig_b64).unwrap();
    let policy_parties = vec!["https://app.example.com".to_string()];
    let policy = Policy { authorized_parties: &policy_parties, issuer: None, skew_ms: 5000 };

    let mut g = c.benchmark_group("verify");
    let parsed: ParsedPublicKey =
        RsaPublicKeyComponents { n: &f.n, e: &f.e }.to_parsed_public_key(&RSA_PKCS1_2048_8192_SHA256).unwrap();
    g.bench_function("floor_aws_lc_parsed_key_signature", |b| {
        b.iter(|| parsed.verify_sig(black_box(signing_input.as_bytes()), black_box(&signature)).unwrap())
    });
    // What verification decodes: the three segments, the header and the claims it reads.
    g.bench_function("decode_only", |b| {
        b.iter(|| {
            let segments = verify::Segments::split(black_box(&f.token), Carrier::Header).unwrap();
            let (header, payload) = segments.read::<Payload<'_>>(Carrier::Header).unwrap();
            black_box((header.kid.is_some(), payload.sub.is_some(), segments.signature().len()))
        })
    });
    g.bench_function("cold_full", |b| {
        b.iter(|| {
            let v = verify::verify_signed(black_box(&f.token), Carrier::Header, Some(&f.set), None, &policy).unwrap();
            black_box(verify::check_time(&v, NOW_S * 1000, 5000, Carrier::Header))
        })
    });
    let cache = VerdictCache::new(65_536);
    let epoch = Epoch::default();
    let v = Arc::new(verify::verify_signed(&f.token, Carrier::Header, Some(&f.set), None, &policy).unwrap());
    cache.insert(&f.token, epoch, v.clone());
    g.bench_function("cache_hit", |b| {
        b.iter(|| {
            let v = cache.get(black_box(&f.token), epoch).unwrap();
            black_box(verify::check_time(&v, NOW_S * 1000, 5000, Carrier::Header))
        })
    });
    g.bench_function("claims_time_check", |b| {
        b.iter(|| black_box(verify::check_time(&v, NOW_S * 1000, 5000, Carrier::Header)))
    });
    g.finish();

    let mut g = c.benchmark_group("extract");
    let mut header_map = HeaderMap::new();
    header_map.insert("authorization", HeaderValue::from_str(&format!("Bearer {}", f.token)).unwrap());
    g.bench_function("header", |b| b.iter(|| black_box(token::find(black_box(&header_map), None, NOW_S))));
    let mut cookie_map = HeaderMap::new();
    cookie_map.insert(
        "cookie",
        HeaderValue::from_str(&format!("theme=dark; __client_uat=1800000000; __session={}; other=1", f.token)).unwrap(),
    );
    g.bench_function("cookie", |b| b.iter(|| black_box(token::find(black_box(&cookie_map), None, NOW_S))));
    g.finish();

    let mut g = c.benchmark_group("claims");
    let segments = verify::Segments::split(&f.token, Carrier::Header).unwrap();
    let (_, payload) = segments.read::<Payload<'_>>(Carrier::Header).unwrap();
    g.bench_function("normalise_v2_with_fpm", |b| {
        b.iter(|| black_box(SessionClaims::from_payload(black_box(&payload))))
    });
    g.bench_function("has_role_and_permission", |b| {
        b.iter(|| black_box(has_role_and_permission(&v.claims, Some("org:admin"), Some("org:billing:manage"))))
    });
    g.finish();

    let mut g = c.benchmark_group("routes");
    let table = Config::from_toml(&config_text(0), &Env::default()).unwrap().routes;
    g.bench_function("normalise_and_match", |b| {
        b.iter(|| {
            let p = clerkgate::routes::normalise(black_box("/api/admin/reports/2026/q3")).unwrap();
            black_box(table.route(&http::Method::GET, &p.matching).is_public())
        })
    });
    g.finish();

    let mut g = c.benchmark_group("headers");
    let template = request(&f.token);
    let policy = clerkgate::config::HeaderPolicy::default();
    g.bench_function("sanitize_request", |b| {
        b.iter_batched(
            || template.headers().clone(),
            |mut h| black_box(clerkgate::headers::sanitize_request(&mut h, http::Version::HTTP_11, &policy)),
            BatchSize::SmallInput,
        )
    });
    g.finish();

    let mut g = c.benchmark_group("layer");
    let noop = tower::service_fn(|_req: Request<Body>| async { Ok::<_, Infallible>(Response::new(Body::empty())) });
    let mut bare = noop;
    g.bench_function("noop_service_baseline", |b| b.iter(|| black_box(bare.call(request(&f.token)).now_or_never())));
    for (name, cache_entries, bypass) in
        [("enforce_cache_hit", 65_536, false), ("enforce_cold", 0, false), ("bypass", 65_536, true)]
    {
        let mut svc = AuthLayer::new(gate(&f, cache_entries, bypass)).layer(noop);
        let first = svc.call(request(&f.token)).now_or_never().unwrap().unwrap();
        assert_eq!(first.status(), 200, "{name}: the bench request must be admitted");
        g.bench_function(name, |b| b.iter(|| black_box(svc.call(request(&f.token)).now_or_never())));
    }
    g.finish();
    let _ = &f.key;
}

criterion_group! {
    name = hot_path;
    config = Criterion::default().warm_up_time(std::time::Duration::from_millis(500)).measurement_time(std::time::Duration::from_secs(2)).sample_size(30);
    targets = benches
}
criterion_main!(hot_path);
