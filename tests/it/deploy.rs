//! Issue #11, items 1, 2, 4 and 8: the shipped deployment files hold together — what a schema
//! check (`kubernetes-validate`, `hadolint`, `yamllint` in `.ci/run`) cannot see.
//!
//! [`check`] reads the Dockerfile, `config/*.toml`, every manifest under `deploy/k8s/`,
//! `deploy/compose.yaml` and the systemd unit, and lists every problem: the sidecar is a native
//! sidecar (an init container with `restartPolicy: Always`); probes name ports that exist, on the
//! health listener; a Service or NetworkPolicy never targets the app's port; the sample app
//! listens on 127.0.0.1 at the gateway's `upstream.url`; every container runs as the
//! Dockerfile's numeric `USER`, non-root, read-only, with no capabilities, no privilege
//! escalation and the runtime's seccomp profile; the ports equal `EXPOSE`, the config defaults
//! and the example configs; every ConfigMap holds an example config verbatim, and that config
//! passes `check-config` with the volumes mounted where the pod mounts them (secrets from the
//! Secret, state on the emptyDir — the only writable path); `terminationGracePeriodSeconds`
//! covers `shutdown_grace` plus the preStop sleep; the Dockerfile has a numeric `USER`, an
//! exec-form `ENTRYPOINT` and base images pinned by tag and digest.
//!
//! [`every_check_can_fail`] breaks the real files one way at a time and expects the check that
//! should catch each.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;

use crate::support;

/// The files read, relative to the repository root (every `.yaml` under `deploy/k8s/` too).
const FILES: &[&str] = &[
    "Dockerfile",
    "config/minimal.toml",
    "config/sidecar.toml",
    "config/edge.toml",
    "deploy/compose.yaml",
    "deploy/systemd/clerkgate.service",
];

/// The repository's shipped files, by path; tests edit them in memory.
#[derive(Clone)]
struct Repo {
    files: BTreeMap<String, String>,
}

impl Repo {
    fn read() -> Repo {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut paths: Vec<String> = FILES.iter().map(|f| f.to_string()).collect();
        let mut dirs = vec![root.join("deploy/k8s")];
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(&dir).expect("read deploy/k8s") {
                let path = entry.expect("entry").path();
                if path.is_dir() {
                    dirs.push(path);
                } else if path.extension().is_some_and(|e| e == "yaml") {
                    paths.push(path.strip_prefix(root).expect("under the root").display().to_string());
                }
            }
        }
        let files = paths
            .into_iter()
            .map(|p| {
                let text = std::fs::read_to_string(root.join(&p)).unwrap_or_else(|e| panic!("read {p}: {e}"));
                (p, text)
            })
            .collect();
        Repo { files }
    }

    fn text(&self, path: &str) -> &str {
        self.files.get(path).map_or("", String::as_str)
    }

    /// The file with the first `from` replaced by `to` (which must be there).
    fn edited(&self, path: &str, from: &str, to: &str) -> Repo {
        let text = self.files.get(path).unwrap_or_else(|| panic!("no file {path}"));
        assert!(text.contains(from), "{path} does not contain {from:?}");
        let mut repo = self.clone();
        repo.files.insert(path.to_string(), text.replacen(from, to, 1));
        repo
    }
}

/// Every problem with the shipped files, as sentences that start with what they are about.
fn check(repo: &Repo) -> Vec<String> {
    let mut p = Problems::default();
    let docker = Dockerfile::parse(repo.text("Dockerfile"), &mut p);
    let defaults = config_defaults();
    if !docker.expose.contains(&defaults.listen_port) {
        p.add(format!(
            "Dockerfile EXPOSE {:?} lacks server.listen's default port {}",
            docker.expose, defaults.listen_port
        ));
    }
    if !docker.expose.contains(&defaults.probe_port) {
        p.add(format!(
            "Dockerfile EXPOSE {:?} lacks the port `clerkgate health` probes ({})",
            docker.expose, defaults.probe_port
        ));
    }
    for name in ["sidecar", "edge"] {
        let path = format!("config/{name}.toml");
        let ports = ExampleConfig::parse(repo.text(&path), &path, &mut p).ports();
        if ports != docker.expose {
            p.add(format!(
                "{path}: listen and health_listen ports {ports:?} differ from Dockerfile EXPOSE {:?}",
                docker.expose
            ));
        }
    }
    check_minimal(repo.text("config/minimal.toml"), &mut p);

    let objects = manifests(repo, &mut p);
    for topology in ["sidecar", "sidecar-classic", "edge"] {
        check_topology(topology, &objects, repo, &docker, &mut p);
    }
    check_compose(repo, &docker, &mut p);
    check_systemd(repo.text("deploy/systemd/clerkgate.service"), &mut p);
    p.0
}

#[derive(Default)]
struct Problems(Vec<String>);

impl Problems {
    fn add(&mut self, problem: impl Into<String>) {
        self.0.push(problem.into());
    }

    fn expect(&mut self, ok: bool, problem: impl FnOnce() -> String) {
        if !ok {
            self.add(problem());
        }
    }
}

/// What the gateway does when a config leaves the ports out.
struct Defaults {
    listen_port: u16,
    probe_port: u16,
}

fn config_defaults() -> Defaults {
    let env = clerkgate::config::Env::from_pairs(Vec::<(String, String)>::new());
    let config = clerkgate::config::Config::from_toml("[clerk]\njwks_url = \"http://127.0.0.1:9/jwks\"\n", &env)
        .expect("the smallest config loads");
    let probe: std::net::SocketAddr =
        clerkgate::admin::probe::DEFAULT_HEALTH_ADDR.parse().expect("the probe's default address");
    Defaults { listen_port: config.server.listen.port(), probe_port: probe.port() }
}

// ---------------------------------------------------------------------------------------------
// The Dockerfile

struct Dockerfile {
    /// `USER uid:gid`, when numeric.
    user: Option<(u32, u32)>,
    expose: BTreeSet<u16>,
    /// The `--config` path in `CMD`.
    config_path: String,
}

impl Dockerfile {
    fn parse(text: &str, p: &mut Problems) -> Dockerfile {
        // Instructions with their continuation lines joined, comments dropped.
        let mut instructions: Vec<(String, String)> = Vec::new();
        let mut pending = String::new();
        for line in text.lines().map(str::trim).filter(|l| !l.starts_with('#') && !l.is_empty()) {
            pending.push_str(line.trim_end_matches('\\'));
            pending.push(' ');
            if !line.ends_with('\\') {
                let (word, rest) = pending.trim().split_once(' ').unwrap_or((pending.trim(), ""));
                instructions.push((word.to_ascii_uppercase(), rest.trim().to_string()));
                pending.clear();
            }
        }
        let all = |name: &'static str| instructions.iter().filter(move |(w, _)| w == name).map(|(_, r)| r.as_str());
        let last = |name: &'static str| all(name).next_back().map(str::to_string);

        let froms: Vec<&str> = all("FROM").collect();
        p.expect(!froms.is_empty(), || "Dockerfile: no FROM".into());
        let stages: BTreeSet<&str> = froms.iter().filter_map(|f| f.split_whitespace().nth(2)).collect();
        for from in &froms {
            let image = from.split_whitespace().next().unwrap_or_default();
            if stages.contains(image) {
                continue; // an earlier stage of this file
            }
            let (name, digest) = image.split_once("@sha256:").unwrap_or((image, ""));
            let tagged = name.rsplit('/').next().is_some_and(|last| last.contains(':') && !last.ends_with(":latest"));
            let pinned = digest.len() == 64 && digest.bytes().all(|b| b.is_ascii_hexdigit());
            p.expect(tagged && pinned, || format!("Dockerfile FROM {image}: not pinned by tag and sha256 digest"));
        }

        let user = last("USER").and_then(|u| {
            let (uid, gid) = u.split_once(':')?;
            Some((uid.parse().ok()?, gid.parse().ok()?))
        });
        p.expect(user.is_some(), || format!("Dockerfile USER {:?}: must be numeric uid:gid", last("USER")));
        p.expect(user.is_none_or(|(uid, _)| uid != 0), || "Dockerfile USER: must not be root".into());

        let exec_form = |text: &Option<String>| -> Option<Vec<String>> { serde_json::from_str(text.as_deref()?).ok() };
        let entrypoint = exec_form(&last("ENTRYPOINT"));
        p.expect(entrypoint.as_ref().is_some_and(|e| e.len() == 1 && e[0].starts_with('/')), || {
            format!("Dockerfile ENTRYPOINT {:?}: must be exec form with the binary's absolute path", last("ENTRYPOINT"))
        });
        let cmd = exec_form(&last("CMD")).unwrap_or_default();
        let config_path = match cmd.iter().position(|a| a == "--config") {
            Some(i) if cmd.first().is_some_and(|c| c == "run") => cmd.get(i + 1).cloned().unwrap_or_default(),
            _ => {
                p.add(format!("Dockerfile CMD {cmd:?}: must be exec form [\"run\", \"--config\", PATH]"));
                String::new()
            }
        };
        let env_config = all("ENV").find_map(|e| e.strip_prefix("CLERKGATE_CONFIG=")).unwrap_or_default();
        p.expect(env_config == config_path, || {
            format!("Dockerfile ENV CLERKGATE_CONFIG={env_config:?} is not CMD's --config {config_path:?} (the CLI in the container reads it)")
        });
        p.expect(all("HEALTHCHECK").next().is_none(), || {
            "Dockerfile HEALTHCHECK: Kubernetes ignores it; compose.yaml declares one".into()
        });
        let expose: BTreeSet<u16> = all("EXPOSE")
            .flat_map(|e| e.split_whitespace())
            .filter_map(|port| port.trim_end_matches("/tcp").parse().ok())
            .collect();
        Dockerfile { user, expose, config_path }
    }
}

// ---------------------------------------------------------------------------------------------
// The example configs

struct ExampleConfig {
    table: toml::Table,
}

impl ExampleConfig {
    fn parse(text: &str, path: &str, p: &mut Problems) -> ExampleConfig {
        let table = toml::from_str(text).unwrap_or_else(|e| {
            p.add(format!("{path}: not TOML: {e}"));
            toml::Table::new()
        });
        ExampleConfig { table }
    }

    fn str(&self, dotted: &str) -> Option<&str> {
        let mut value = None::<&toml::Value>;
        for (i, part) in dotted.split('.').enumerate() {
            value = if i == 0 { self.table.get(part) } else { value?.get(part) };
        }
        value?.as_str()
    }

    fn port(&self, key: &str) -> Option<u16> {
        self.str(key)?.parse::<std::net::SocketAddr>().ok().map(|a| a.port())
    }

    /// `server.listen`'s and `server.health_listen`'s ports.
    fn ports(&self) -> BTreeSet<u16> {
        ["server.listen", "server.health_listen"].iter().filter_map(|k| self.port(k)).collect()
    }

    fn shutdown_grace(&self) -> Duration {
        self.str("server.shutdown_grace")
            .and_then(|d| humantime::parse_duration(d).ok())
            .unwrap_or(Duration::from_secs(30))
    }

    fn upstream_port(&self) -> Option<u16> {
        let url: http::Uri = self.str("upstream.url")?.parse().ok()?;
        url.port_u16()
    }

    /// Every key that names a file to read (`*_file`, the TLS pair) with its dotted key.
    fn files(&self) -> Vec<(String, String)> {
        fn walk(prefix: &str, t: &toml::Table, out: &mut Vec<(String, String)>) {
            for (k, v) in t {
                let key = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
                match v {
                    toml::Value::Table(inner) => walk(&key, inner, out),
                    toml::Value::String(s) if k.ends_with("_file") || k == "tls_cert" || k == "tls_key" => {
                        out.push((key, s.clone()))
                    }
                    _ => {}
                }
            }
        }
        let mut out = Vec::new();
        walk("", &self.table, &mut out);
        out
    }
}

/// A stand-in for the secret a key names, of the shape validation wants.
fn placeholder(key: &str) -> String {
    match key {
        "clerk.secret_key_file" => "sk_test_placeholder0123456789".into(),
        "clerk.jwt_key_file" => support::key().public_pem(),
        "clerk.webhook_signing_secret_file" => "whsec_cGxhY2Vob2xkZXI=".into(),
        _ => "0123456789abcdef0123456789abcdef".into(),
    }
}

/// `clerkgate check-config` on `text` written at `config_path`, in `cwd`, with `env`. The
/// answer is remembered under `key` (what decides it besides the temporary paths), so that the
/// broken variants of [`every_check_can_fail`] run the binary only for what they change.
fn check_config(key: &str, cwd: &Path, config_path: &Path, text: &str, env: &[(&str, &str)]) -> Result<(), String> {
    static SEEN: std::sync::Mutex<BTreeMap<String, Result<(), String>>> = std::sync::Mutex::new(BTreeMap::new());
    let seen = |k: &str| SEEN.lock().unwrap_or_else(|e| e.into_inner()).get(k).cloned();
    if let Some(answer) = seen(key) {
        return answer;
    }
    let answer = run_check_config(cwd, config_path, text, env);
    SEEN.lock().unwrap_or_else(|e| e.into_inner()).insert(key.to_string(), answer.clone());
    answer
}

fn run_check_config(cwd: &Path, config_path: &Path, text: &str, env: &[(&str, &str)]) -> Result<(), String> {
    std::fs::create_dir_all(config_path.parent().expect("a parent")).expect("config dir");
    std::fs::write(config_path, text).expect("write config");
    let path = config_path.display().to_string();
    let out = support::cli_in(cwd, &["check-config", "--config", &path], env);
    match out.status.success() {
        true => Ok(()),
        false => Err(String::from_utf8_lossy(&out.stderr).trim().replace('\n', " | ")),
    }
}

/// `config/minimal.toml` passes `check-config` with its secret from the environment, as its
/// comments say to run it.
fn check_minimal(text: &str, p: &mut Problems) {
    let dir = tempfile::tempdir().expect("tempdir");
    let env = [
        ("CLERK_SECRET_KEY", "sk_test_placeholder0123456789"),
        ("CLERKGATE_ADMIN_TOKEN", "0123456789abcdef0123456789abcdef"),
    ];
    if let Err(e) = check_config(text, dir.path(), &dir.path().join("minimal.toml"), text, &env) {
        p.add(format!("config/minimal.toml: check-config refuses it: {e}"));
    }
}

// ---------------------------------------------------------------------------------------------
// Kubernetes manifests

/// One object from a manifest file.
struct Object {
    /// The topology directory under deploy/k8s (`sidecar`, `edge`, ...).
    dir: String,
    file: String,
    value: Value,
}

impl Object {
    fn kind(&self) -> &str {
        self.value["kind"].as_str().unwrap_or_default()
    }

    fn name(&self) -> &str {
        self.value["metadata"]["name"].as_str().unwrap_or_default()
    }
}

fn manifests(repo: &Repo, p: &mut Problems) -> Vec<Object> {
    let mut out = Vec::new();
    for (file, text) in repo.files.iter().filter(|(f, _)| f.starts_with("deploy/k8s/")) {
        let dir = file.trim_start_matches("deploy/k8s/").split('/').next().unwrap_or_default().to_string();
        for doc in serde_norway::Deserializer::from_str(text) {
            match Value::deserialize(doc) {
                Ok(Value::Null) => {}
                Ok(value) => out.push(Object { dir: dir.clone(), file: file.clone(), value }),
                Err(e) => p.add(format!("{file}: not YAML: {e}")),
            }
        }
    }
    out
}

/// A container of a pod spec, with where it sits.
struct Container<'a> {
    value: &'a Value,
    init: bool,
}

impl Container<'_> {
    fn name(&self) -> &str {
        self.value["name"].as_str().unwrap_or_default()
    }

    fn is_gateway(&self) -> bool {
        self.value["image"].as_str().is_some_and(|i| i.rsplit('/').next().is_some_and(|n| n.starts_with("clerkgate:")))
    }

    /// Named ports: name → containerPort.
    fn ports(&self) -> BTreeMap<String, u16> {
        let list = self.value["ports"].as_array().into_iter().flatten();
        list.filter_map(|port| Some((port["name"].as_str()?.to_string(), port["containerPort"].as_u64()? as u16)))
            .collect()
    }

    fn words(&self) -> Vec<String> {
        ["command", "args"]
            .iter()
            .flat_map(|k| self.value[*k].as_array().into_iter().flatten())
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect()
    }
}

fn containers(pod: &Value) -> Vec<Container<'_>> {
    let list = |key: &str, init: bool| {
        pod[key].as_array().into_iter().flatten().map(move |value| Container { value, init }).collect::<Vec<_>>()
    };
    let mut all = list("initContainers", true);
    all.extend(list("containers", false));
    all
}

/// One topology under `deploy/k8s/` (`sidecar`, `sidecar-classic`, `edge`): its Deployment, the
/// ConfigMap it mounts, and the Services, NetworkPolicies and PodDisruptionBudget that select
/// its pods.
fn check_topology(topology: &str, objects: &[Object], repo: &Repo, docker: &Dockerfile, p: &mut Problems) {
    let here = |kind: &'static str| objects.iter().filter(move |o| o.dir == topology && o.kind() == kind);
    let deployments: Vec<&Object> = here("Deployment").collect();
    let [deployment] = deployments[..] else {
        p.add(format!("deploy/k8s/{topology}: expected one Deployment, found {}", deployments.len()));
        return;
    };
    let at = format!("{} ({})", deployment.file, deployment.name());
    let pod = &deployment.value["spec"]["template"]["spec"];
    let pod_labels = &deployment.value["spec"]["template"]["metadata"]["labels"];
    let all = containers(pod);
    let gateways: Vec<&Container> = all.iter().filter(|c| c.is_gateway()).collect();
    let [gateway] = gateways[..] else {
        p.add(format!("{at}: expected one clerkgate container, found {}", gateways.len()));
        return;
    };

    // Sidecar or not.
    let native = gateway.init && gateway.value["restartPolicy"] == "Always";
    match topology {
        "sidecar" => p.expect(native, || {
            format!("{at}: the gateway must be a native sidecar: an init container with restartPolicy: Always")
        }),
        _ => p.expect(!gateway.init, || format!("{at}: the gateway must be a regular container here")),
    }
    if topology == "edge" {
        let replicas = deployment.value["spec"]["replicas"].as_u64().unwrap_or(1);
        p.expect(replicas >= 2, || format!("{at}: replicas {replicas}: the edge needs 2 or more"));
        p.expect(pod["topologySpreadConstraints"].as_array().is_some_and(|c| !c.is_empty()), || {
            format!("{at}: replicas need topologySpreadConstraints")
        });
        let pdb = objects.iter().find(|o| o.kind() == "PodDisruptionBudget" && o.dir == topology);
        p.expect(pdb.is_some_and(|pdb| selects(&pdb.value["spec"]["selector"]["matchLabels"], pod_labels)), || {
            format!("{at}: no PodDisruptionBudget selects its pods")
        });
    }

    // The config: the ConfigMap mounted at the directory of the image's --config path.
    let volumes: BTreeMap<&str, &Value> =
        pod["volumes"].as_array().into_iter().flatten().filter_map(|v| Some((v["name"].as_str()?, v))).collect();
    let mounts: Vec<(&str, &str)> = gateway.value["volumeMounts"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| {
            if m.get("subPath").is_some() {
                p.add(format!("{at}: volumeMount {} uses subPath, which is never updated", m["mountPath"]));
            }
            Some((m["name"].as_str()?, m["mountPath"].as_str()?))
        })
        .collect();
    let (config_dir, config_file) = docker.config_path.rsplit_once('/').unwrap_or(("", ""));
    let configmap = mounts
        .iter()
        .find(|(_, path)| *path == config_dir)
        .and_then(|(name, _)| volumes.get(name)?["configMap"]["name"].as_str())
        .and_then(|name| objects.iter().find(|o| o.kind() == "ConfigMap" && o.name() == name));
    let Some(configmap) = configmap else {
        p.add(format!(
            "{at}: no ConfigMap from this repository mounted at {config_dir} (the image's --config directory)"
        ));
        return;
    };
    let toml_text = configmap.value["data"][config_file].as_str().unwrap_or_default();
    let example = if configmap.dir == "edge" { "config/edge.toml" } else { "config/sidecar.toml" };
    p.expect(toml_text == repo.text(example), || {
        format!("{}: data.{config_file} differs from {example}; keep them identical", configmap.file)
    });
    let config = ExampleConfig::parse(toml_text, &configmap.file, p);

    // Ports: the gateway's named ports are the config's listeners and the image's EXPOSE.
    let ports = gateway.ports();
    let expected: BTreeMap<String, u16> =
        [("http", config.port("server.listen")), ("health", config.port("server.health_listen"))]
            .into_iter()
            .filter_map(|(name, port)| Some((name.to_string(), port?)))
            .collect();
    p.expect(ports == expected, || {
        format!("{at}: gateway ports {ports:?} are not the config's listeners {expected:?}")
    });
    let numbers: BTreeSet<u16> = ports.values().copied().collect();
    p.expect(numbers == docker.expose, || {
        format!("{at}: gateway ports {numbers:?} differ from Dockerfile EXPOSE {:?}", docker.expose)
    });

    // Probes: on the health listener, by a port name that exists.
    for (probe, path) in [("startupProbe", "/readyz"), ("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")] {
        let get = &gateway.value[probe]["httpGet"];
        let port = get["port"].as_str().unwrap_or_default();
        p.expect(ports.contains_key(port), || {
            format!("{at}: {probe} port {:?} names no port of the gateway", get["port"])
        });
        p.expect(port == "health" && get["path"] == path, || {
            format!("{at}: {probe} must GET {path} on the health port, not {} on {:?}", get["path"], get["port"])
        });
    }

    // The app beside the gateway: on loopback at the gateway's upstream, no port of its own.
    let apps: Vec<&Container> = all.iter().filter(|c| !c.is_gateway()).collect();
    if topology.starts_with("sidecar") {
        let upstream = config.str("upstream.url").unwrap_or_default();
        let port = config.upstream_port().unwrap_or(0);
        p.expect(upstream.starts_with("http://127.0.0.1:"), || {
            format!("{at}: upstream.url {upstream} must be on 127.0.0.1")
        });
        p.expect(!apps.is_empty(), || format!("{at}: no app container"));
        for app in &apps {
            let words = app.words().join(" ");
            p.expect(words.contains(&format!("127.0.0.1:{port}")) && !words.contains("0.0.0.0"), || {
                format!(
                    "{at}: app container {} must listen on 127.0.0.1:{port} (upstream.url), it runs {words:?}",
                    app.name()
                )
            });
            p.expect(app.value.get("ports").is_none(), || format!("{at}: app container {} declares ports", app.name()));
        }
    }

    // Security: every container as the image's user, locked down; the pod likewise.
    let uid_gid = docker.user.unwrap_or((u32::MAX, u32::MAX));
    let pod_sc = &pod["securityContext"];
    p.expect(pod["automountServiceAccountToken"] == false, || {
        format!("{at}: automountServiceAccountToken must be false")
    });
    for (key, want) in [("runAsUser", uid_gid.0), ("runAsGroup", uid_gid.1)] {
        p.expect(pod_sc.get(key).is_none_or(|v| v == want), || {
            format!("{at}: pod securityContext {key} {} is not the Dockerfile's USER", pod_sc[key])
        });
    }
    for c in &all {
        let sc = &c.value["securityContext"];
        let field = |k: &str| if sc.get(k).is_some() { &sc[k] } else { &pod_sc[k] };
        let who = format!("{at}: container {} securityContext", c.name());
        p.expect(field("runAsNonRoot") == true, || format!("{who}: runAsNonRoot must be true"));
        p.expect(field("runAsUser") == uid_gid.0, || {
            format!("{who}: runAsUser {} is not the Dockerfile's USER uid {}", field("runAsUser"), uid_gid.0)
        });
        p.expect(field("runAsGroup") == uid_gid.1, || {
            format!("{who}: runAsGroup {} is not the Dockerfile's USER gid {}", field("runAsGroup"), uid_gid.1)
        });
        p.expect(sc["readOnlyRootFilesystem"] == true, || format!("{who}: readOnlyRootFilesystem must be true"));
        p.expect(sc["allowPrivilegeEscalation"] == false, || format!("{who}: allowPrivilegeEscalation must be false"));
        p.expect(sc["capabilities"]["drop"].as_array().is_some_and(|d| d.iter().any(|c| c == "ALL")), || {
            format!("{who}: capabilities.drop must hold ALL")
        });
        p.expect(field("seccompProfile")["type"] == "RuntimeDefault", || {
            format!("{who}: seccompProfile must be RuntimeDefault")
        });
        let image = c.value["image"].as_str().unwrap_or_default();
        let tag = image.rsplit('/').next().and_then(|n| n.split_once(':')).map(|(_, t)| t);
        p.expect(tag.is_some_and(|t| t != "latest"), || format!("{at}: image {image:?} must carry a version tag"));
        p.expect(
            c.value["resources"]["requests"].is_object() && c.value["resources"]["limits"]["memory"].is_string(),
            || format!("{at}: container {} needs resource requests and a memory limit", c.name()),
        );
    }

    // Shutdown: the grace period covers the preStop sleeps and the gateway's drain.
    let sleep =
        all.iter().filter_map(|c| c.value["lifecycle"]["preStop"]["sleep"]["seconds"].as_u64()).max().unwrap_or(0);
    let grace = pod["terminationGracePeriodSeconds"].as_u64().unwrap_or(30);
    let drain = config.shutdown_grace().as_secs();
    p.expect(grace > drain + sleep, || {
        format!(
            "{at}: terminationGracePeriodSeconds {grace} must exceed shutdown_grace {drain}s + preStop sleep {sleep}s"
        )
    });
    if topology != "sidecar-classic" {
        p.expect(sleep > 0, || format!("{at}: a preStop sleep action keeps the pod serving while endpoints update"));
    }

    // The config passes check-config with the pod's volumes where the pod mounts them.
    check_mounted_config(&at, toml_text, &config, &mounts, &volumes, docker, p);

    // Services and NetworkPolicies that select these pods reach only the gateway's ports.
    let app_ports: BTreeSet<String> = apps
        .iter()
        .flat_map(|a| a.ports().into_iter().flat_map(|(name, port)| [name, port.to_string()]))
        .chain(config.upstream_port().map(|p| p.to_string()))
        .collect();
    let reaches_gateway = |target: &Value| match target {
        Value::String(name) => ports.contains_key(name) && !app_ports.contains(name),
        Value::Number(n) => n.as_u64().is_some_and(|n| numbers.contains(&(n as u16))),
        _ => false,
    };
    let mut services = 0;
    for svc in objects.iter().filter(|o| o.kind() == "Service" && selects(&o.value["spec"]["selector"], pod_labels)) {
        services += 1;
        for port in svc.value["spec"]["ports"].as_array().into_iter().flatten() {
            let target = &port["targetPort"];
            p.expect(target.as_str() == Some("http") && reaches_gateway(target), || {
                format!("{}: targetPort {target} must be the gateway's port \"http\", never the app's", svc.file)
            });
        }
    }
    p.expect(services > 0, || format!("{at}: no Service selects its pods"));
    let mut policies = 0;
    for np in objects
        .iter()
        .filter(|o| o.kind() == "NetworkPolicy" && selects(&o.value["spec"]["podSelector"]["matchLabels"], pod_labels))
    {
        policies += 1;
        for rule in np.value["spec"]["ingress"].as_array().into_iter().flatten() {
            for port in rule["ports"].as_array().into_iter().flatten() {
                p.expect(reaches_gateway(&port["port"]), || {
                    format!("{}: NetworkPolicy port {} names no port of the gateway", np.file, port["port"])
                });
            }
        }
    }
    p.expect(topology == "edge" || policies > 0, || format!("{at}: no NetworkPolicy selects its pods"));
}

/// Every label in `selector` is on the pod.
fn selects(selector: &Value, labels: &Value) -> bool {
    selector.as_object().is_some_and(|s| !s.is_empty() && s.iter().all(|(k, v)| &labels[k] == v))
}

/// Writes the config where the pod would see it — each volume a directory, secrets as
/// placeholder files — and runs `check-config` on it. Every file the config reads must be on a
/// Secret volume, and `state.dir` on the emptyDir (the root filesystem is read-only).
fn check_mounted_config(
    at: &str,
    text: &str,
    config: &ExampleConfig,
    mounts: &[(&str, &str)],
    volumes: &BTreeMap<&str, &Value>,
    docker: &Dockerfile,
    p: &mut Problems,
) {
    let root = tempfile::tempdir().expect("tempdir");
    let kind = |name: &str| {
        volumes.get(name).and_then(|v| ["configMap", "secret", "emptyDir"].into_iter().find(|k| v.get(*k).is_some()))
    };
    // Longest mount paths first, so that /a/b-tls is not read as under /a/b.
    let mut by_length: Vec<(&str, &str, PathBuf)> = mounts
        .iter()
        .enumerate()
        .map(|(i, (name, path))| (*name, *path, root.path().join(format!("volume{i}"))))
        .collect();
    by_length.sort_by_key(|(_, path, _)| std::cmp::Reverse(path.len()));
    let under =
        |path: &str| by_length.iter().find(|(_, mount, _)| path == *mount || path.starts_with(&format!("{mount}/")));
    let local = |path: &str| -> Option<PathBuf> {
        let (_, mount, dir) = under(path)?;
        Some(dir.join(path[mount.len()..].trim_start_matches('/')))
    };
    for (key, path) in config.files() {
        match under(&path) {
            Some((name, _, _)) if kind(name) == Some("secret") => {
                if key.ends_with("_file") {
                    let file = local(&path).expect("under a mount");
                    std::fs::create_dir_all(file.parent().expect("parent")).expect("mkdir");
                    std::fs::write(&file, placeholder(&key)).expect("write placeholder");
                }
            }
            _ => p.add(format!("{at}: {key} = {path:?} is on no Secret volume mount of the gateway")),
        }
    }
    let state = config.str("state.dir").unwrap_or("./clerkgate-state");
    match under(state) {
        Some((name, _, _)) if kind(name) == Some("emptyDir") => {}
        _ => p.add(format!("{at}: state.dir {state:?} is on no emptyDir mount: the root filesystem is read-only")),
    }
    let mut rewritten = text.to_string();
    for (_, mount, dir) in &by_length {
        rewritten = rewritten.replace(mount, &dir.display().to_string());
    }
    let Some(config_path) = local(&docker.config_path) else { return };
    let layout: Vec<(&str, Option<&str>)> = by_length.iter().map(|(name, mount, _)| (*mount, kind(name))).collect();
    let key = format!("{text}\n{layout:?}\n{}", docker.config_path);
    if let Err(e) = check_config(&key, root.path(), &config_path, &rewritten, &[]) {
        p.add(format!("{at}: the ConfigMap's config fails check-config as mounted: {e}"));
    }
}

// ---------------------------------------------------------------------------------------------
// Compose and systemd

fn check_compose(repo: &Repo, docker: &Dockerfile, p: &mut Problems) {
    let compose: Value = match serde_norway::from_str(repo.text("deploy/compose.yaml")) {
        Ok(v) => v,
        Err(e) => return p.add(format!("deploy/compose.yaml: not YAML: {e}")),
    };
    let gw = &compose["services"]["clerkgate"];
    let test = gw["healthcheck"]["test"]
        .as_array()
        .map(|t| t.iter().filter_map(Value::as_str).collect::<Vec<_>>())
        .unwrap_or_default();
    p.expect(test.first() == Some(&"CMD") && test.contains(&"health") && test.contains(&"--ready"), || {
        format!("deploy/compose.yaml: the gateway's healthcheck must run `clerkgate health --ready` (exec form), not {test:?}")
    });
    let user = docker.user.map(|(u, g)| format!("{u}:{g}")).unwrap_or_default();
    for (name, service) in compose["services"].as_object().into_iter().flatten() {
        p.expect(service["user"] == user.as_str() && service["read_only"] == true, || {
            format!("deploy/compose.yaml: service {name} must run as {user} with a read-only root filesystem")
        });
    }
    let published: BTreeSet<u16> = gw["ports"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p.as_str()?.rsplit(':').next()?.parse().ok())
        .collect();
    p.expect(published == docker.expose, || {
        format!("deploy/compose.yaml: published ports {published:?} differ from EXPOSE {:?}", docker.expose)
    });

    // The config it runs: a file of config/, mounted as a directory, with its secrets in place.
    let words: Vec<&str> = gw["command"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
    let config_path =
        words.iter().position(|w| *w == "--config").and_then(|i| words.get(i + 1)).copied().unwrap_or_default();
    let file = gw["volumes"].as_array().into_iter().flatten().filter_map(Value::as_str).find_map(|v| {
        let (host, container) = v.strip_suffix(":ro").unwrap_or(v).split_once(':')?;
        let rest = config_path.strip_prefix(container)?.strip_prefix('/')?;
        Some(format!("{}/{rest}", host.trim_start_matches("../")))
    });
    let Some(file) = file.filter(|f| repo.files.contains_key(f)) else {
        return p.add(format!(
            "deploy/compose.yaml: --config {config_path:?} is no file of config/ mounted into the container"
        ));
    };
    let config = ExampleConfig::parse(repo.text(&file), &file, p);
    let targets: BTreeSet<&str> =
        gw["secrets"].as_array().into_iter().flatten().filter_map(|s| s["target"].as_str()).collect();
    let wanted: BTreeSet<String> = config.files().into_iter().map(|(_, path)| path).collect();
    p.expect(targets.iter().map(|t| t.to_string()).collect::<BTreeSet<_>>() == wanted, || {
        format!("deploy/compose.yaml: secret targets {targets:?} are not the files {file} reads {wanted:?}")
    });
    let port = config.upstream_port().unwrap_or(0);
    let app = &compose["services"]["app"];
    let app_words: Vec<&str> = app["command"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
    p.expect(
        app["network_mode"] == "service:clerkgate"
            && app_words.iter().any(|w| w.ends_with(&format!("127.0.0.1:{port}"))),
        || format!("deploy/compose.yaml: the app must share the gateway's network and listen on 127.0.0.1:{port}"),
    );
}

fn check_systemd(unit: &str, p: &mut Problems) {
    let lines: BTreeSet<&str> = unit.lines().map(str::trim).collect();
    for needed in [
        "ExecReload=/bin/kill -HUP $MAINPID",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "StateDirectory=clerkgate",
        "DynamicUser=yes",
        "CapabilityBoundingSet=",
    ] {
        p.expect(lines.contains(needed), || format!("deploy/systemd/clerkgate.service: no line {needed:?}"));
    }
}

// ---------------------------------------------------------------------------------------------

#[test]
fn the_shipped_files_hold_together() {
    let problems = check(&Repo::read());
    assert!(problems.is_empty(), "{} problem(s):\n{}", problems.len(), problems.join("\n"));
}

/// Each check, made to fail by one edit of the real files: (file, from, to, words the problem
/// must contain).
const BREAKS: &[(&str, &str, &str, &str)] = &[
    ("deploy/k8s/sidecar/deployment.yaml", "          restartPolicy: Always\n", "", "native sidecar"),
    (
        "deploy/k8s/sidecar/deployment.yaml",
        "              port: health",
        "              port: healthz",
        "names no port",
    ),
    (
        "deploy/k8s/edge/deployment.yaml",
        "              path: /healthz",
        "              path: /readyz",
        "livenessProbe must GET /healthz",
    ),
    ("deploy/k8s/sidecar/service.yaml", "targetPort: http", "targetPort: 3000", "never the app's"),
    ("deploy/k8s/sidecar/networkpolicy.yaml", "port: health", "port: 3000", "NetworkPolicy port 3000"),
    (
        "deploy/k8s/sidecar/deployment.yaml",
        "-listen=127.0.0.1:3000",
        "-listen=0.0.0.0:3000",
        "must listen on 127.0.0.1:3000",
    ),
    (
        "deploy/k8s/sidecar-classic/deployment.yaml",
        "        runAsUser: 65532",
        "        runAsUser: 1000",
        "pod securityContext runAsUser",
    ),
    (
        "deploy/k8s/edge/deployment.yaml",
        "            runAsUser: 65532",
        "            runAsUser: 0",
        "is not the Dockerfile's USER uid",
    ),
    (
        "deploy/k8s/sidecar/deployment.yaml",
        "readOnlyRootFilesystem: true",
        "readOnlyRootFilesystem: false",
        "readOnlyRootFilesystem",
    ),
    ("deploy/k8s/sidecar/deployment.yaml", "drop: [\"ALL\"]", "drop: [\"NET_RAW\"]", "capabilities.drop"),
    (
        "deploy/k8s/edge/deployment.yaml",
        "allowPrivilegeEscalation: false",
        "allowPrivilegeEscalation: true",
        "allowPrivilegeEscalation",
    ),
    (
        "deploy/k8s/sidecar-classic/deployment.yaml",
        "            runAsNonRoot: true",
        "            runAsNonRoot: false",
        "runAsNonRoot",
    ),
    (
        "deploy/k8s/sidecar/deployment.yaml",
        "              type: RuntimeDefault",
        "              type: Unconfined",
        "seccompProfile",
    ),
    (
        "deploy/k8s/edge/deployment.yaml",
        "automountServiceAccountToken: false",
        "automountServiceAccountToken: true",
        "automountServiceAccountToken",
    ),
    (
        "deploy/k8s/edge/deployment.yaml",
        "terminationGracePeriodSeconds: 45",
        "terminationGracePeriodSeconds: 30",
        "terminationGracePeriodSeconds 30",
    ),
    ("deploy/k8s/edge/deployment.yaml", "  replicas: 2", "  replicas: 1", "replicas 1"),
    (
        "deploy/k8s/edge/pdb.yaml",
        "matchLabels:\n      app.kubernetes.io/name: clerkgate-edge",
        "matchLabels:\n      app.kubernetes.io/name: other",
        "PodDisruptionBudget",
    ),
    (
        "deploy/k8s/sidecar/deployment.yaml",
        "              containerPort: 9902",
        "              containerPort: 9903",
        "gateway ports",
    ),
    (
        "deploy/k8s/sidecar/deployment.yaml",
        "image: hashicorp/http-echo:1.0.0",
        "image: hashicorp/http-echo",
        "version tag",
    ),
    (
        "deploy/k8s/edge/deployment.yaml",
        "              mountPath: /etc/clerkgate\n",
        "              mountPath: /etc/clerkgate\n              subPath: clerkgate.toml\n",
        "subPath",
    ),
    (
        "deploy/k8s/sidecar/deployment.yaml",
        "          emptyDir:",
        "          secret:\n            secretName: x\n          emptyDirWas:",
        "no emptyDir mount",
    ),
    ("deploy/k8s/sidecar/configmap.yaml", "    mode = \"enforce\"", "    mode = \"panic\"", "fails check-config"),
    (
        "deploy/k8s/edge/configmap.yaml",
        "    listen = \"0.0.0.0:8080\"",
        "    listen = \"0.0.0.0:8081\"",
        "differs from config/edge.toml",
    ),
    (
        "deploy/k8s/edge/configmap.yaml",
        "\"/var/run/secrets/clerkgate/admin-token\"",
        "\"/etc/admin-token\"",
        "on no Secret volume",
    ),
    (
        "config/sidecar.toml",
        "health_listen = \"0.0.0.0:9902\"",
        "health_listen = \"0.0.0.0:9903\"",
        "differ from Dockerfile EXPOSE",
    ),
    (
        "config/minimal.toml",
        "default = \"protected\"",
        "default = \"closed\"",
        "config/minimal.toml: check-config refuses",
    ),
    ("Dockerfile", "USER 65532:65532", "USER nonroot", "must be numeric"),
    ("Dockerfile", "ENTRYPOINT [\"/usr/local/bin/clerkgate\"]", "ENTRYPOINT /usr/local/bin/clerkgate", "exec form"),
    ("Dockerfile", "nonroot@sha256:", "nonroot@sha1:", "not pinned"),
    ("Dockerfile", "FROM rust:1.95.0-bookworm@", "FROM rust@", "not pinned"),
    ("Dockerfile", "EXPOSE 8080 9902", "EXPOSE 8080", "lacks the port `clerkgate health` probes"),
    (
        "Dockerfile",
        "ENV CLERKGATE_CONFIG=/etc/clerkgate/clerkgate.toml",
        "ENV CLERKGATE_CONFIG=/etc/clerkgate.toml",
        "CLERKGATE_CONFIG",
    ),
    (
        "Dockerfile",
        "ENTRYPOINT [",
        "HEALTHCHECK CMD [\"/usr/local/bin/clerkgate\", \"health\"]\nENTRYPOINT [",
        "HEALTHCHECK",
    ),
    ("deploy/compose.yaml", "\"health\", \"--ready\"", "\"status\"", "healthcheck"),
    ("deploy/compose.yaml", "-listen=127.0.0.1:3000", "-listen=0.0.0.0:3000", "listen on 127.0.0.1:3000"),
    (
        "deploy/compose.yaml",
        "target: /var/run/secrets/clerkgate/admin-token",
        "target: /run/secrets/admin-token",
        "secret targets",
    ),
    ("deploy/systemd/clerkgate.service", "ExecReload=/bin/kill -HUP $MAINPID", "ExecReload=/bin/true", "ExecReload"),
];

#[test]
fn every_check_can_fail() {
    let repo = Repo::read();
    for (file, from, to, expected) in BREAKS {
        let problems = check(&repo.edited(file, from, to));
        assert!(
            problems.iter().any(|p| p.contains(expected)),
            "{file}: {from:?} → {to:?} should be reported with {expected:?}; got:\n{}",
            problems.join("\n")
        );
    }
}
