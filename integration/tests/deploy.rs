//! The deployment artifacts: the Helm chart lints, renders and validates
//! against Kubernetes schemas (default and full values), its config is one the
//! gateway accepts, its schema rejects mistakes; the kustomize overlay builds
//! and validates; the Grafana dashboard queries only metrics that exist.

use std::path::PathBuf;
use std::process::{Command, Output};

use velo_integration::{binary, http_get, run_script, Gateway, TOOLS_VENV};

/// Kubernetes version the manifests are validated against.
const K8S: &str = "1.30.0";
const USER: &str = "alice:SCRAM-SHA-256$4096:c2FsdA==$a2V5:a2V5";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn chart() -> String {
    repo().join("helm/velo-gateway").display().to_string()
}

fn run(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e} (integration/setup-k8s.sh installs it)"))
}

fn ok(out: Output) -> String {
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn template(args: &[&str]) -> Output {
    run(Command::new("helm")
        .args(["template", "velo", &chart(), "--namespace", "streams"])
        .args(args))
}

/// Validates rendered manifests; CRDs (ServiceMonitor) only warn.
fn validate(manifests: &str) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("manifests.yaml");
    std::fs::write(&file, manifests).unwrap();
    let validator = format!("{TOOLS_VENV}/kubernetes-validate");
    ok(run(Command::new(validator)
        .args(["-k", K8S, "--strict", "--quiet"])
        .arg(&file)));
}

/// The document of `kind` named `name` in a multi-document render.
fn document<'a>(manifests: &'a str, kind: &str, name: &str) -> &'a str {
    manifests
        .split("\n---")
        .find(|d| d.contains(&format!("kind: {kind}\n")) && d.contains(&format!("name: {name}\n")))
        .unwrap_or_else(|| panic!("no {kind} {name} in\n{manifests}"))
}

#[test]
fn chart_lints_renders_and_validates() {
    let users = format!("auth.users[0]={USER}");
    ok(run(Command::new("helm")
        .args(["lint", "--strict", &chart(), "--set", &users])
        .args(["--set", "engines.endpoints[0]=engine-0:50051"])));
    let full = format!("{}/ci/full-values.yaml", chart());
    ok(run(Command::new("helm").args([
        "lint",
        "--strict",
        &chart(),
        "-f",
        &full,
    ])));

    let default = ok(template(&[
        "--set",
        &users,
        "--set",
        "engines.dnsName=engines",
    ]));
    validate(&default);
    let deployment = document(&default, "Deployment", "velo-velo-gateway");
    for needle in [
        "path: /healthz",
        "path: /readyz",
        "port: admin",
        "readOnlyRootFilesystem: true",
        "runAsNonRoot: true",
        "preferredDuringSchedulingIgnoredDuringExecution",
        "checksum/config:",
    ] {
        assert!(deployment.contains(needle), "{needle} in\n{deployment}");
    }
    let config = document(&default, "ConfigMap", "velo-velo-gateway");
    assert!(
        config.contains("engine_dns = \"engines:50051\""),
        "{config}"
    );
    assert!(!default.contains("kind: ServiceMonitor"));

    let full = ok(template(&["-f", &full]));
    validate(&full);
    let config = document(&full, "ConfigMap", "velo-velo-gateway");
    // With the bundled engine, the gateway discovers it through its headless Service.
    assert!(
        config
            .contains("engine_dns = \"velo-velo-gateway-engine.streams.svc.cluster.local:50051\""),
        "{config}"
    );
    assert!(config.contains("tls_cert_file = \"/etc/velo-gateway/tls/tls.crt\""));
    assert!(config.contains("log_format = \"json\""));
    for line in [
        "metrics_token_file = \"/etc/velo-gateway/metrics-token/token\"",
        "audit_log = \"stdout\"",
        "audit_statements = \"summary\"",
        "connection_rate_per_address = 50",
        "auth_lockout = \"5min\"",
        "engine_tls_ca_file = \"/etc/velo-gateway/engine-ca/ca.crt\"",
        "engine_tls_server_name = \"velo-engine.streams.svc\"",
        "engine_token_file = \"/etc/velo-gateway/engine-token/token\"",
        "tls = \"required\"",
        "tls_client_ca_file = \"/etc/velo-gateway/client-ca/ca.crt\"",
        "[[rules]]\n    users = [\"grafana\"]\n    addresses = [\"10.20.0.0/16\"]\n    tls = \"required\"\n    method = \"cert\"",
    ] {
        assert!(config.contains(line), "{line} in\n{config}");
    }
    let monitor = document(&full, "ServiceMonitor", "velo-velo-gateway");
    assert!(monitor.contains("port: metrics") && monitor.contains("path: /metrics"));
    assert!(
        monitor.contains("type: Bearer") && monitor.contains("name: velo-metrics-token"),
        "{monitor}"
    );
    let policy = document(&full, "NetworkPolicy", "velo-velo-gateway");
    assert!(
        policy.contains("port: admin")
            && policy.contains("kubernetes.io/metadata.name: monitoring"),
        "{policy}"
    );
    assert!(policy.contains("velostream/clients: \"true\""), "{policy}");
    let engine_policy = document(&full, "NetworkPolicy", "velo-velo-gateway-engine");
    assert!(
        engine_policy.contains("port: grpc")
            && engine_policy.contains("app.kubernetes.io/component: gateway"),
        "{engine_policy}"
    );
    assert!(!default.contains("kind: NetworkPolicy"));
    let deployment = document(&full, "Deployment", "velo-velo-gateway");
    assert!(deployment.contains("requiredDuringSchedulingIgnoredDuringExecution"));
    assert!(deployment.contains("terminationGracePeriodSeconds: 60"));
    assert!(!deployment.contains("replicas:"), "the HPA owns replicas");
    let engine = document(&full, "StatefulSet", "velo-velo-gateway-engine");
    assert!(engine.contains("grpc:") && engine.contains("--demo"));
    for arg in [
        "--tls-cert-file=/etc/velo-engine/tls/tls.crt",
        "--token-file=/etc/velo-engine/token/token",
        "secretName: velo-engine-token",
    ] {
        assert!(engine.contains(arg), "{arg} in\n{engine}");
    }
    for kind in ["HorizontalPodAutoscaler", "PodDisruptionBudget", "Service"] {
        assert!(full.contains(&format!("kind: {kind}\n")), "{kind}");
    }
}

#[test]
fn rendered_config_is_accepted_by_the_gateway() {
    let out = ok(template(&[
        "-f",
        &format!("{}/ci/full-values.yaml", chart()),
        "--show-only",
        "templates/configmap.yaml",
    ]));
    let toml: String = out
        .split_once("gateway.toml: |\n")
        .unwrap()
        .1
        .lines()
        .map(|l| format!("{}\n", l.trim_start()))
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("gateway.toml");
    std::fs::write(&file, toml).unwrap();
    // The mounted files do not exist here: point at local stand-ins.
    let stand_in = dir.path().join("stand-in");
    std::fs::write(&stand_in, "").unwrap();
    let printed = ok(run(Command::new(binary("velo-gateway"))
        .arg("--config")
        .arg(&file)
        .args(
            [
                "--users-file",
                "--tls-cert-file",
                "--tls-key-file",
                "--metrics-token-file",
                "--engine-tls-ca-file",
                "--engine-token-file",
                "--tls-client-ca-file",
            ]
            .iter()
            .flat_map(|f| [f.to_string(), stand_in.display().to_string()]),
        )
        .arg("--print-config")));
    assert!(
        printed.contains("admin_listen = \"0.0.0.0:9433\""),
        "{printed}"
    );
    assert!(printed.contains("drain_timeout_secs = 45"), "{printed}");
    assert!(
        printed.contains("[[rules]]") && printed.contains("method = \"cert\""),
        "{printed}"
    );
}

#[test]
fn chart_rejects_bad_values() {
    let users = format!("auth.users[0]={USER}");
    // Valid except for the one value each case adds.
    let with = |extra: &'static str| {
        vec![
            "--set",
            &users,
            "--set",
            "engine.enabled=true",
            "--set",
            extra,
        ]
    };
    for (args, needle) in [
        (vec!["--set", "engine.enabled=true"], "auth: set auth.users"),
        (with("replicaCout=2"), "replicaCout"),
        (with("gateway.logFormat=xml"), "logFormat"),
        (vec!["--set", &users], "engines: set engines.endpoints"),
        (
            vec!["--set", "auth.users[0]=alice:password"],
            "/auth/users/0",
        ),
    ] {
        let out = template(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && err.contains(needle),
            "{args:?}: {err}"
        );
    }
}

#[test]
fn kustomize_demo_overlay_builds_and_validates() {
    let out = ok(run(Command::new("kubectl")
        .arg("kustomize")
        .arg(repo().join("k8s/overlays/demo"))));
    validate(&out);
    for doc in out
        .split("\n---")
        .filter(|d| !d.contains("kind: Namespace\n"))
    {
        assert!(doc.contains("namespace: velostream-demo"), "{doc}");
    }
    let config = out
        .split("\n---")
        .find(|d| d.contains("kind: ConfigMap\n"))
        .unwrap();
    assert!(config.contains("log_format = \"text\""), "{config}");
    let deployment = document(&out, "Deployment", "velo-gateway");
    assert!(deployment.contains("replicas: 1"), "{deployment}");
    let policy = document(&out, "NetworkPolicy", "velo-engine");
    assert!(
        policy.contains("port: grpc") && policy.contains("app.kubernetes.io/name: velo-gateway"),
        "{policy}"
    );
}

/// Every metric the dashboard queries exists on a live gateway's /metrics
/// (histograms through their `_bucket` series).
#[test]
fn grafana_dashboard_queries_real_metrics() {
    let text =
        std::fs::read_to_string(repo().join("k8s/grafana/velo-gateway-dashboard.json")).unwrap();
    let dashboard: serde_json::Value = serde_json::from_str(&text).unwrap();
    let gw = Gateway::start(&[]);
    // The node label appears once the node is used.
    run_script(gw.psql("alice"), "SELECT x FROM (VALUES (1)) AS t(x);");
    let (_, exposed) = http_get(&gw.admin, "/metrics").unwrap();
    let mut queried = 0;
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            let expr = target["expr"].as_str().unwrap();
            for name in expr
                .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .filter(|w| w.starts_with("velo_gateway_"))
            {
                queried += 1;
                let family = ["_bucket", "_sum", "_count"]
                    .iter()
                    .find_map(|s| name.strip_suffix(s))
                    .unwrap_or(name);
                assert!(
                    exposed.contains(&format!("# TYPE {family} ")),
                    "dashboard queries {name}, which the gateway does not export"
                );
            }
        }
    }
    assert!(queried >= 16, "{queried}");
}

#[test]
fn demo_values_install_the_engine_and_a_generated_user() {
    let values = format!("{}/values-demo.yaml", chart());
    ok(run(Command::new("helm").args([
        "lint",
        "--strict",
        &chart(),
        "-f",
        &values,
    ])));
    let demo = ok(template(&["-f", &values]));
    validate(&demo);
    let engine = document(&demo, "StatefulSet", "velo-velo-gateway-engine");
    assert!(engine.contains("--demo"), "{engine}");
    let secret = document(&demo, "Secret", "velo-velo-gateway-demo-password");
    let password_b64 = secret
        .lines()
        .find_map(|l| l.trim().strip_prefix("password: "))
        .expect("a generated password");
    assert!(password_b64.len() >= 20, "{secret}");
    let deployment = document(&demo, "Deployment", "velo-velo-gateway");
    let command = deployment
        .lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix("- /usr/local/bin/velo-gateway hash-password")
        })
        .expect("the init container hashes the password");

    // The init container's command, run here against the built gateway,
    // writes a users file the gateway accepts: the demo user logs in.
    let dir = tempfile::tempdir().unwrap();
    let password = "Demo-password-20chars";
    std::fs::write(dir.path().join("password"), password).unwrap();
    let script = format!(
        "{} hash-password{command}",
        binary("velo-gateway").display()
    )
    .replace("/demo/", &format!("{}/", dir.path().display()))
    .replace("/users/", &format!("{}/", dir.path().display()));
    ok(run(Command::new("/bin/sh")
        .args(["-c", &script])
        .env("DEMO_USER", "demo")));
    let users = dir.path().join("users");
    let gw = Gateway::start(&["--users-file", users.to_str().unwrap()]);
    let mut psql = velo_integration::psql_command(&gw.host, gw.port, "demo", "velostream");
    psql.env("PGPASSWORD", password);
    let out = run_script(psql, "SELECT 1;");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "1", "{out:?}");
}
