//! The packaging files agree with the binary: the compose stack has the
//! services and profiles the docs promise, and every configuration it mounts,
//! the image's default configuration and the Kubernetes ConfigMap pass
//! `sessiongate check`. `check` does not connect to stores, so this runs
//! offline; the images themselves are built and run elsewhere.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

/// A valid secret for `check`; the files themselves never carry one.
const SECRET: &str = "packaging-test-secret-0123456789abcdef";

/// Where the image installs its configuration (the Dockerfile's `CONFIG`).
const IMAGE_CONFIG: &str = "/etc/sessiongate/gateway.yaml";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(relative: &str) -> String {
    let path = root().join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn yaml(text: &str, what: &str) -> Value {
    serde_saphyr::from_str(text).unwrap_or_else(|e| panic!("{what} is not valid YAML: {e}"))
}

fn compose() -> Value {
    yaml(&read("docker-compose.yml"), "docker-compose.yml")
}

fn service<'a>(compose: &'a Value, name: &str) -> &'a Value {
    compose["services"]
        .get(name)
        .unwrap_or_else(|| panic!("docker-compose.yml has no service `{name}`"))
}

fn strings(value: &Value) -> Vec<&str> {
    value
        .as_array()
        .map(|items| items.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

/// Runs `sessiongate check --config FILE` with only `env` (and a valid
/// secret) in the environment, as a container would, and asserts it passes.
fn assert_check_passes(config: &Path, env: &[(String, String)]) {
    let output = Command::new(crate::support::binary())
        .arg("check")
        .arg("--config")
        .arg(config)
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .env("SESSION_SECRET", SECRET)
        .current_dir(root())
        .output()
        .expect("run sessiongate check");
    assert!(
        output.status.success(),
        "sessiongate check --config {} failed:\n{}",
        config.display(),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A compose service's literal environment (map or list form); values that
/// compose itself would interpolate from `.env` are left out.
fn compose_environment(service: &Value) -> Vec<(String, String)> {
    let pairs: Vec<(String, String)> = match &service["environment"] {
        Value::Object(map) => map
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
            .collect(),
        Value::Array(items) => items
            .iter()
            .filter_map(Value::as_str)
            .filter_map(|item| item.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
        _ => Vec::new(),
    };
    pairs
        .into_iter()
        .filter(|(_, v)| !v.contains("${"))
        .collect()
}

/// The YAML files a service bind-mounts: (host path, container path).
fn mounted_configs(service: &Value) -> Vec<(PathBuf, String)> {
    let volumes = service["volumes"].as_array().cloned().unwrap_or_default();
    volumes
        .iter()
        .filter_map(|volume| match volume {
            Value::String(short) => {
                let mut parts = short.split(':');
                Some((parts.next()?.to_owned(), parts.next()?.to_owned()))
            }
            Value::Object(long) => Some((
                long.get("source")?.as_str()?.to_owned(),
                long.get("target")?.as_str()?.to_owned(),
            )),
            _ => None,
        })
        .filter(|(source, _)| source.ends_with(".yaml") || source.ends_with(".yml"))
        .map(|(source, target)| (root().join(source.trim_start_matches("./")), target))
        .collect()
}

const GATEWAYS: [(&str, &str, Option<&str>); 3] = [
    ("gateway-cookie", "cookie", None),
    ("gateway-redis", "redis", Some("redis")),
    ("gateway-dynamodb", "dynamodb", Some("dynamodb")),
];

#[test]
fn compose_has_a_gateway_per_store_profile() {
    let compose = compose();
    for (name, profile, store_service) in GATEWAYS {
        let gateway = service(&compose, name);
        assert_eq!(strings(&gateway["profiles"]), [profile], "{name}: profiles");
        assert_eq!(
            gateway["image"], "sessiongate:local",
            "{name}: runs the image built from this checkout"
        );
        assert!(
            gateway["build"].is_object(),
            "{name}: builds the image from this checkout"
        );
        assert_eq!(
            gateway["environment"]["SESSION_SECRET"], "${SESSION_SECRET}",
            "{name}: the secret comes from .env"
        );
        let health = strings(&gateway["healthcheck"]["test"]);
        assert_eq!(
            health,
            ["CMD", "/usr/local/bin/sessiongate", "healthcheck"],
            "{name}: the health check needs no shell"
        );
        assert_eq!(
            gateway["depends_on"]["backend"]["condition"], "service_healthy",
            "{name}: waits for the backend"
        );
        if let Some(store) = store_service {
            assert_eq!(
                strings(&service(&compose, store)["profiles"]),
                [profile],
                "{store}: started with its gateway's profile"
            );
            assert_eq!(
                gateway["depends_on"][store]["condition"], "service_healthy",
                "{name}: waits for {store}"
            );
            assert!(
                service(&compose, store)["healthcheck"].is_object(),
                "{store}: has a health check"
            );
        }
        let mounts = mounted_configs(gateway);
        assert!(
            mounts.iter().any(|(_, target)| target == IMAGE_CONFIG),
            "{name}: mounts its configuration at {IMAGE_CONFIG}"
        );
        for port in strings(&gateway["ports"]) {
            if port.ends_with(":9090") {
                assert!(
                    port.starts_with("127.0.0.1:"),
                    "{name}: the admin port is published on 127.0.0.1 only, not `{port}`"
                );
            }
        }
    }
    let backend = service(&compose, "backend");
    assert!(
        backend.get("profiles").is_none(),
        "backend: runs with every profile"
    );
    assert_eq!(strings(&backend["command"])[0], "echo");
    assert!(
        backend.get("ports").is_none(),
        "backend: reachable only through a gateway"
    );
    let dynamodb = service(&compose, "dynamodb");
    assert!(
        dynamodb["image"]
            .as_str()
            .is_some_and(|image| image.starts_with("amazon/dynamodb-local:")),
        "dynamodb: DynamoDB local"
    );
}

#[test]
fn every_config_the_compose_stack_mounts_passes_check() {
    let compose = compose();
    let services = compose["services"]
        .as_object()
        .expect("docker-compose.yml has services");
    let mut checked = Vec::new();
    for (name, service) in services {
        let env = compose_environment(service);
        for (config, _) in mounted_configs(service) {
            assert!(
                config.is_file(),
                "{name}: mounts {} which does not exist",
                config.display()
            );
            assert_check_passes(&config, &env);
            checked.push(config);
        }
    }
    for file in [
        "gateway.cookie.yaml",
        "gateway.redis.yaml",
        "gateway.dynamodb.yaml",
    ] {
        assert!(
            checked.contains(&root().join("deploy/compose").join(file)),
            "deploy/compose/{file} is mounted and checked"
        );
    }
}

#[test]
fn the_dynamodb_profile_creates_its_table_in_dynamodb_local() {
    let config = yaml(
        &read("deploy/compose/gateway.dynamodb.yaml"),
        "gateway.dynamodb.yaml",
    );
    let store = &config["store"];
    assert_eq!(store["type"], "dynamodb");
    assert_eq!(store["create_table"], true);
    assert_eq!(store["aws"]["endpoint"], "http://dynamodb:8000");
    assert!(store["aws"]["access_key_id"].is_string());
    assert!(store["aws"]["secret_access_key"].is_string());
}

#[test]
fn the_image_default_config_passes_check_and_listens_for_the_orchestrator() {
    let config = root().join("deploy/docker/gateway.yaml");
    assert_check_passes(&config, &[]);
    let tree = yaml(
        &read("deploy/docker/gateway.yaml"),
        "deploy/docker/gateway.yaml",
    );
    // `${VAR:-default}`: the default is what the image listens on.
    let default_of = |value: &Value| {
        let text = value.as_str().unwrap_or_default();
        text.rsplit_once(":-")
            .map(|(_, rest)| rest.trim_end_matches('}').to_owned())
            .unwrap_or_else(|| text.to_owned())
    };
    assert_eq!(default_of(&tree["listen"]), "0.0.0.0:8080");
    assert_eq!(default_of(&tree["admin"]["listen"]), "0.0.0.0:9090");
    assert_eq!(
        tree["upstream"]["url"],
        "${UPSTREAM_URL:-http://backend:3000}"
    );
    assert_eq!(tree["store"]["type"], "cookie");
}

#[test]
fn the_dockerfile_installs_the_default_config_where_config_points() {
    let dockerfile = read("Dockerfile");
    for line in [
        "COPY deploy/docker/gateway.yaml /out/etc/sessiongate/gateway.yaml",
        "ENV CONFIG=/etc/sessiongate/gateway.yaml",
        "EXPOSE 8080 9090",
        "USER 65532:65532",
        "STOPSIGNAL SIGTERM",
        "CMD [\"/usr/local/bin/sessiongate\", \"healthcheck\"]",
        "FROM gcr.io/distroless/cc-debian12:nonroot",
    ] {
        assert!(dockerfile.contains(line), "Dockerfile: missing `{line}`");
    }
    // The build context is an allow-list: everything the Dockerfile copies
    // from it must be let in by .dockerignore.
    let dockerignore = read(".dockerignore");
    let allowed: Vec<&str> = dockerignore
        .lines()
        .filter_map(|line| line.trim().strip_prefix('!'))
        .map(|path| path.trim_end_matches('/'))
        .collect();
    for line in dockerfile.lines() {
        let Some(args) = line.trim().strip_prefix("COPY ") else {
            continue;
        };
        if args.starts_with("--from") {
            continue;
        }
        let words: Vec<&str> = args.split_whitespace().collect();
        for source in &words[..words.len() - 1] {
            let source = source.trim_end_matches('/');
            assert!(
                allowed.contains(&source),
                "Dockerfile copies `{source}` but .dockerignore does not let it in"
            );
        }
    }
}

fn kubernetes() -> Vec<Value> {
    let text = read("deploy/kubernetes.yaml");
    let documents: Vec<Value> = serde_saphyr::from_multiple(&text)
        .unwrap_or_else(|e| panic!("deploy/kubernetes.yaml is not valid YAML: {e}"));
    documents.into_iter().filter(|d| !d.is_null()).collect()
}

fn kind<'a>(documents: &'a [Value], kind: &str) -> &'a Value {
    documents
        .iter()
        .find(|d| d["kind"] == kind)
        .unwrap_or_else(|| panic!("deploy/kubernetes.yaml has no {kind}"))
}

fn seconds(duration: &Value) -> u64 {
    let text = duration.as_str().expect("a duration string");
    sessiongate::config::parse_duration(text)
        .expect("a valid duration")
        .as_secs()
}

#[test]
fn the_kubernetes_configmap_passes_check_with_the_deployment_environment() {
    let documents = kubernetes();
    let config_text = kind(&documents, "ConfigMap")["data"]["gateway.yaml"]
        .as_str()
        .expect("the ConfigMap holds gateway.yaml");
    let secret = &kind(&documents, "Secret")["stringData"];
    let container = &kind(&documents, "Deployment")["spec"]["template"]["spec"]["containers"][0];

    // The container's environment: literal values, and the Secret's values
    // for secretKeyRefs (SESSION_SECRET is replaced by a valid one).
    let mut env = Vec::new();
    for var in container["env"].as_array().expect("container env") {
        let name = var["name"].as_str().expect("env name").to_owned();
        let value = match (&var["value"], &var["valueFrom"]["secretKeyRef"]["key"]) {
            (Value::String(value), _) => value.clone(),
            (_, Value::String(key)) => secret[key.as_str()]
                .as_str()
                .unwrap_or_else(|| panic!("the Secret has no {key}"))
                .to_owned(),
            _ => continue,
        };
        env.push((name, value));
    }
    assert!(
        env.iter()
            .any(|(name, value)| name == "CONFIG" && value == IMAGE_CONFIG)
    );

    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("gateway.yaml");
    std::fs::write(&config, config_text).unwrap();
    assert_check_passes(&config, &env);

    let tree = yaml(config_text, "the ConfigMap's gateway.yaml");
    assert_eq!(tree["store"]["type"], "redis");
    assert_eq!(tree["admin"]["listen"], "0.0.0.0:9090");
}

#[test]
fn the_kubernetes_deployment_is_hardened_probed_and_drained() {
    let documents = kubernetes();
    let deployment = &kind(&documents, "Deployment")["spec"];
    assert!(deployment["replicas"].as_u64().unwrap_or(0) >= 2);
    let pod = &deployment["template"]["spec"];
    let container = &pod["containers"][0];

    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(container["securityContext"]["readOnlyRootFilesystem"], true);
    assert_eq!(
        container["securityContext"]["allowPrivilegeEscalation"],
        false
    );
    assert!(container["resources"]["requests"].is_object());
    assert!(container["resources"]["limits"].is_object());

    assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(container["livenessProbe"]["httpGet"]["port"], "admin");
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(container["readinessProbe"]["httpGet"]["port"], "admin");

    // The pod is killed only after the preStop pause and a full drain.
    let config = yaml(
        kind(&documents, "ConfigMap")["data"]["gateway.yaml"]
            .as_str()
            .unwrap(),
        "the ConfigMap's gateway.yaml",
    );
    let drain = seconds(&config["limits"]["drain_timeout"]);
    let pre_stop = container["lifecycle"]["preStop"]["sleep"]["seconds"]
        .as_u64()
        .expect("a preStop sleep");
    let grace = pod["terminationGracePeriodSeconds"]
        .as_u64()
        .expect("terminationGracePeriodSeconds");
    assert!(
        grace > pre_stop + drain,
        "terminationGracePeriodSeconds {grace} must exceed preStop {pre_stop}s + drain_timeout {drain}s"
    );

    // The Service exposes the public port only.
    let service = &kind(&documents, "Service")["spec"];
    for port in service["ports"].as_array().expect("Service ports") {
        assert_ne!(
            port["targetPort"], "admin",
            "the admin port is not in the Service"
        );
        assert_ne!(
            port["targetPort"], 9090,
            "the admin port is not in the Service"
        );
        assert_ne!(port["port"], 9090, "the admin port is not in the Service");
    }
}
