//! The JSON API against its description, `docs/openapi.yaml`: every `/api/v1` operation is
//! called, with its success and error cases, and each answer's status must be one the
//! description lists for the operation and its body must match that status's schema.

use std::collections::BTreeSet;
use std::fs;

use serde_json::{Value, json};

use crate::repo::create_nightly;
use crate::serve::Server;
use crate::support::{packed, root};

/// docs/openapi.yaml, with OpenAPI 3.0's `nullable` turned into JSON Schema.
struct Spec {
    doc: Value,
    checked: BTreeSet<(String, String)>,
}

fn json_schema(v: &Value) -> Value {
    match v {
        Value::Object(o) => {
            let mut out: serde_json::Map<String, Value> = o
                .iter()
                .filter(|(k, _)| k.as_str() != "nullable")
                .map(|(k, v)| (k.clone(), json_schema(v)))
                .collect();
            if o.get("nullable") == Some(&Value::Bool(true)) {
                let inner = Value::Object(out);
                return json!({"anyOf": [inner, {"type": "null"}]});
            }
            // OpenAPI 3.0 `example` is not a JSON Schema keyword; harmless, but drop it.
            out.remove("example");
            Value::Object(out)
        }
        Value::Array(a) => Value::Array(a.iter().map(json_schema).collect()),
        v => v.clone(),
    }
}

impl Spec {
    fn load() -> Spec {
        let text = fs::read_to_string(root().join("docs/openapi.yaml")).unwrap();
        let doc: Value = serde_norway::from_str(&text).unwrap();
        assert_eq!(doc["openapi"], "3.0.3");
        Spec {
            doc: json_schema(&doc),
            checked: BTreeSet::new(),
        }
    }

    /// Follows a `$ref` to a response object, if it is one.
    fn deref<'a>(&'a self, v: &'a Value) -> &'a Value {
        match v.get("$ref").and_then(Value::as_str) {
            Some(r) => {
                let mut cur = &self.doc;
                for part in r.trim_start_matches("#/").split('/') {
                    cur = &cur[part];
                }
                cur
            }
            None => v,
        }
    }

    /// The documented response of `method path` with `status`.
    fn response(
        &self,
        method: &str,
        path: &str,
        status: u16,
        body: &dyn std::fmt::Display,
    ) -> &Value {
        let op = &self.doc["paths"][path][method];
        assert!(
            op.is_object(),
            "{method} {path} is not in docs/openapi.yaml"
        );
        let response = op["responses"].get(status.to_string()).unwrap_or_else(|| {
            panic!("{method} {path}: status {status} is not documented ({body})")
        });
        self.deref(response)
    }

    /// Checks an answer of `method path` (as the spec writes the path) against the spec.
    /// A response documented without content (204) must come without a body (which
    /// `Server::call` gives as null).
    fn check(&mut self, method: &str, path: &str, status: u16, body: &Value) {
        let response = self.response(method, path, status, body);
        if response.get("content").is_none() {
            assert!(
                body.is_null(),
                "{method} {path} {status}: documented without a body, but it has one: {body}"
            );
            self.checked.insert((method.to_string(), path.to_string()));
            return;
        }
        let schema = response["content"]["application/json"]["schema"].clone();
        assert!(
            schema.is_object(),
            "{method} {path} {status}: no JSON schema documented"
        );
        self.validate(method, path, status, &schema, body);
    }

    /// Checks a plain answer: its media type must be documented for the status, and the
    /// text must match that schema.
    fn check_text(
        &mut self,
        method: &str,
        path: &str,
        status: u16,
        content_type: &str,
        text: &str,
    ) {
        let response = self.response(method, path, status, &text);
        let media = content_type.split(';').next().unwrap_or_default().trim();
        let schema = response["content"][media]["schema"].clone();
        assert!(
            schema.is_object(),
            "{method} {path} {status}: {media} is not documented"
        );
        self.validate(
            method,
            path,
            status,
            &schema,
            &Value::String(text.to_string()),
        );
    }

    fn validate(&mut self, method: &str, path: &str, status: u16, schema: &Value, body: &Value) {
        let root = json!({
            "$ref": "#/x-answer",
            "components": self.doc["components"],
            "x-answer": schema,
        });
        let validator = jsonschema::validator_for(&root).unwrap();
        let errors: Vec<String> = validator
            .iter_errors(body)
            .map(|e| format!("{} at {}", e, e.instance_path()))
            .collect();
        assert!(
            errors.is_empty(),
            "{method} {path} {status}: the answer does not match docs/openapi.yaml:\n{}\n{body}",
            errors.join("\n")
        );
        self.checked.insert((method.to_string(), path.to_string()));
    }

    /// Every `/api/v1` operation the spec lists.
    fn api_operations(&self) -> BTreeSet<(String, String)> {
        let mut out = BTreeSet::new();
        for (path, item) in self.doc["paths"].as_object().unwrap() {
            if !path.starts_with("/api/v1") {
                continue;
            }
            for method in ["get", "post", "put", "delete"] {
                if item.get(method).is_some() {
                    out.insert((method.to_string(), path.clone()));
                }
            }
        }
        out
    }
}

#[test]
fn every_api_answer_matches_openapi_yaml() {
    let mut spec = Spec::load();
    let dir = tempfile::tempdir().unwrap();
    let d = &dir.path().join("data");
    create_nightly(d, &[]);
    let token = |role: &str| crate::serve::token(d, role);
    let admin = token("admin");
    let builder = token("builder");
    let release = token("release");
    let tree = crate::serve::lock_web_server(d);
    let server = Server::start(d, &["--tree", tree.to_str().unwrap()]);
    let call = |method: &str, path: &str, body: Option<Value>, token: Option<&str>| {
        server.call(method, path, body, token)
    };

    // Repositories.
    let (s, b) = call("get", "/api/v1/repos", None, None);
    spec.check("get", "/api/v1/repos", s, &b);
    let (s, b) = call("get", "/api/v1/repos", None, Some("pky_000000000000_00"));
    spec.check("get", "/api/v1/repos", s, &b);
    for (body, tok) in [
        (json!({"name": "reg", "kind": "registered"}), Some(&admin)),
        (json!({"name": "reg", "kind": "registered"}), Some(&admin)),
        (json!({"name": "x", "kind": "volatile"}), Some(&builder)),
        (json!({"name": "x", "kind": "volatile"}), None),
        (
            json!({"name": "Bad Name", "kind": "volatile"}),
            Some(&admin),
        ),
        (
            json!({"name": "y", "kind": "volatile", "colour": "red"}),
            Some(&admin),
        ),
    ] {
        let (s, b) = call("post", "/api/v1/repos", Some(body), tok.map(String::as_str));
        spec.check("post", "/api/v1/repos", s, &b);
    }
    for name in ["nightly", "nope"] {
        let (s, b) = call("get", &format!("/api/v1/repos/{name}"), None, None);
        spec.check("get", "/api/v1/repos/{repo}", s, &b);
    }
    let (s, _) = call(
        "post",
        "/api/v1/repos",
        Some(json!({"name": "doomed", "kind": "volatile"})),
        Some(&admin),
    );
    assert_eq!(s, 201);
    for (repo, tok, want) in [
        ("doomed", None, 401),
        ("doomed", Some(&builder), 403),
        ("reg", Some(&admin), 409),
        ("doomed", Some(&admin), 200),
        ("doomed", Some(&admin), 404),
    ] {
        let (s, b) = call(
            "delete",
            &format!("/api/v1/repos/{repo}"),
            None,
            tok.map(String::as_str),
        );
        assert_eq!(s, want, "{b}");
        spec.check("delete", "/api/v1/repos/{repo}", s, &b);
    }
    for (repo, tok) in [
        ("nightly", Some(&admin)),
        ("nightly", Some(&admin)),
        ("nightly", Some(&builder)),
    ] {
        let (s, b) = call(
            "post",
            &format!("/api/v1/repos/{repo}/key"),
            Some(json!({"algorithm": "ed25519"})),
            tok.map(String::as_str),
        );
        spec.check("post", "/api/v1/repos/{repo}/key", s, &b);
    }
    // Importing: junk, both ways at once.
    for body in [
        json!({"armored": "-----BEGIN PGP PRIVATE KEY BLOCK-----\nnope\n", "force": true}),
        json!({"armored": "x", "algorithm": "ed25519"}),
    ] {
        let (s, b) = call(
            "post",
            "/api/v1/repos/nightly/key",
            Some(body),
            Some(&admin),
        );
        assert_eq!(s, 400, "{b}");
        spec.check("post", "/api/v1/repos/{repo}/key", s, &b);
    }

    // Uploads: added, unchanged, refused.
    let files = crate::serve::tree_files(packed("el9_x86_64"));
    let (key, path) = files.iter().find(|(k, _)| k.ends_with(".rpm")).unwrap();
    let bytes = fs::read(path).unwrap();
    let up = "/api/v1/repos/{repo}/files/{path}";
    let external = format!("{key}?external=true");
    for (repo, k, body, tok) in [
        ("nightly", key.as_str(), bytes.clone(), Some(&builder)),
        ("nightly", key.as_str(), bytes.clone(), Some(&builder)),
        ("nightly", key.as_str(), bytes.clone(), None),
        ("reg", key.as_str(), bytes.clone(), Some(&builder)),
        ("reg", key.as_str(), bytes.clone(), Some(&release)),
        ("reg", &external, bytes.clone(), Some(&admin)),
        (
            "nightly",
            "a/1/el9_x86_64/junk-1-1.x86_64.rpm",
            b"junk".to_vec(),
            Some(&builder),
        ),
        ("nope", key.as_str(), bytes.clone(), Some(&builder)),
        // A part of a Debian source package: held for its .dsc (202).
        (
            "nightly",
            "a/1/deb12_amd64/junk_1.orig.tar.gz",
            b"junk".to_vec(),
            Some(&builder),
        ),
    ] {
        let (s, b) = server.upload(repo, k, &body, tok.map(String::as_str), &[]);
        spec.check("put", up, s, &b);
    }
    let other = files
        .iter()
        .find(|(k, _)| k.ends_with(".rpm") && *k != key)
        .map(|(_, p)| fs::read(p).unwrap())
        .unwrap();
    let (s, b) = server.upload("reg", &external, &other, Some(&admin), &[]);
    assert_eq!(s, 409);
    spec.check("put", up, s, &b);

    // Build records: beside a tarball path, naming what the repository holds.
    let sha = {
        use sha2::Digest;
        format!("{:x}", sha2::Sha256::digest(&bytes))
    };
    let tarball = format!("{}.tar.gz", key.trim_end_matches(".rpm"));
    let builds = "/api/v1/repos/{repo}/builds/{path}";
    let at = format!("/api/v1/repos/nightly/builds/{tarball}");
    let record = |sha: &str| {
        json!({"record": {
            "configuration": "database_schemas_R_3_0_0_1", "module": "m", "platform": "el9_x86_64",
            "key": "k", "result": "built", "artifacts": [{"path": key, "sha256": sha}],
            "seconds": 1.5, "finished": 0, "packyard": "0.1.0"}, "log": "== compile: ok\n"})
    };
    for (method, body, tok, status) in [
        ("get", None, None, 404),
        ("put", Some(record(&sha)), None, 401),
        ("put", Some(record(&"0".repeat(64))), Some(&builder), 422),
        (
            "put",
            Some(json!({"record": {}, "log": ""})),
            Some(&builder),
            400,
        ),
        ("put", Some(record(&sha)), Some(&builder), 201),
        ("get", None, None, 200),
    ] {
        let (s, b) = call(method, &at, body, tok.map(String::as_str));
        assert_eq!(s, status, "{method} {at}: {b}");
        spec.check(method, builds, s, &b);
    }
    let (_, b) = call("get", &at, None, None);
    assert_eq!(b["current"], true, "{b}");
    let log_path = at
        .replace("/api/v1/repos/nightly/builds/", "/repos/nightly/")
        .replace(".tar.gz", ".build.log");
    let (s, log) = server.get(&log_path);
    assert_eq!((s, log.as_slice()), (200, &b"== compile: ok\n"[..]));

    // Packages.
    let list = "/api/v1/repos/{repo}/packages";
    for q in [
        "",
        "?name=my-database-schemas",
        "?q=SCHEMA&kind=rpm",
        "?kind=nonsense",
    ] {
        let (s, b) = call(
            "get",
            &format!("/api/v1/repos/nightly/packages{q}"),
            None,
            None,
        );
        spec.check("get", list, s, &b);
    }
    let show = "/api/v1/repos/{repo}/packages/{path}";
    for p in [key.as_str(), "no/such.rpm"] {
        let (s, b) = call(
            "get",
            &format!("/api/v1/repos/nightly/packages/{p}"),
            None,
            None,
        );
        spec.check("get", show, s, &b);
    }

    // Locks.
    let (s, b) = call("get", "/api/v1/locks", None, None);
    spec.check("get", "/api/v1/locks", s, &b);
    for c in ["web_server_R_2_5_1_1", "cli_client_R_5_6_1_1"] {
        let (s, b) = call("get", &format!("/api/v1/locks/{c}"), None, None);
        spec.check("get", "/api/v1/locks/{configuration}", s, &b);
    }
    let lock = json!({"configuration": "c_R_1_0_0_1", "module": "p.c", "version": "1.0.0",
                      "age": 1, "canonical": "name = c_R_1_0_0_1\n"});
    let changed = json!({"configuration": "c_R_1_0_0_1", "module": "p.c", "version": "1.0.0",
                         "age": 1, "canonical": "name = c_R_1_0_0_1\nchanged\n"});
    for (body, tok) in [
        (lock.clone(), Some(&release)),
        (lock.clone(), Some(&release)),
        (changed, Some(&release)),
        (lock, Some(&builder)),
    ] {
        let (s, b) = call("post", "/api/v1/locks", Some(body), tok.map(String::as_str));
        spec.check("post", "/api/v1/locks", s, &b);
    }

    // Tokens.
    for tok in [Some(&admin), Some(&builder), None] {
        let (s, b) = call("get", "/api/v1/tokens", None, tok.map(String::as_str));
        spec.check("get", "/api/v1/tokens", s, &b);
    }
    let (s, made) = call(
        "post",
        "/api/v1/tokens",
        Some(json!({"role": "builder", "name": "ci"})),
        Some(&admin),
    );
    spec.check("post", "/api/v1/tokens", s, &made);
    let (s, b) = call(
        "post",
        "/api/v1/tokens",
        Some(json!({"role": "emperor"})),
        Some(&admin),
    );
    spec.check("post", "/api/v1/tokens", s, &b);
    let (s, b) = call(
        "post",
        "/api/v1/tokens",
        Some(json!({"role": "builder", "expires": "30d"})),
        Some(&admin),
    );
    spec.check("post", "/api/v1/tokens", s, &b);
    assert!(b["expires"].as_i64().unwrap() > b["created"].as_i64().unwrap() + 29 * 86_400);
    let (s, b) = call(
        "post",
        "/api/v1/tokens",
        Some(json!({"role": "builder", "expires": "yesterday"})),
        Some(&admin),
    );
    assert_eq!((s, b["code"].as_str()), (400, Some("bad_expiry")), "{b}");
    spec.check("post", "/api/v1/tokens", s, &b);
    let id = made["id"].as_str().unwrap();
    for t in [id, "000000000000"] {
        let (s, b) = call("delete", &format!("/api/v1/tokens/{t}"), None, Some(&admin));
        spec.check("delete", "/api/v1/tokens/{id}", s, &b);
    }
    // Plans.
    for (query, status) in [
        (
            "configuration=web_server_R_2_5_1_1&platform=el9_x86_64&installed=make%3D4.3-1",
            200,
        ),
        (
            "configuration=web_server_R_2_5_1_1&repo=nightly&privileged=true&shallow=1",
            200,
        ),
        ("configuration=web_server_R_2_5_1_1&privileged=maybe", 400),
        ("configuration=web_server_R_2_5_1_1&repo=nope", 404),
        ("configuration=nope", 422),
    ] {
        let (s, b) = call("get", &format!("/api/v1/resolve?{query}"), None, None);
        assert_eq!(s, status, "{query}: {b}");
        spec.check("get", "/api/v1/resolve", s, &b);
    }

    // The build farm: a release resolved in the server's tree, its tasks claimed and
    // reported under leases.
    let farm_builds = "/api/v1/builds";
    let web_server = json!({"platforms": ["el9_x86_64"], "only": ["web_server"]});
    let el9 = |field: &str, value: &str| json!({"platforms": ["el9_x86_64"], field: value});
    for (body, tok, status, code) in [
        (web_server.clone(), None, 401, "unauthorized"),
        (json!({"platforms": []}), Some(&builder), 400, "invalid"),
        (el9("colour", "red"), Some(&builder), 400, "bad_json"),
        (el9("repo", "nope"), Some(&builder), 404, "no_such_repo"),
        (el9("project", "nope"), Some(&builder), 422, "unbuildable"),
        (
            json!({"platforms": ["el9_zz"]}),
            Some(&builder),
            422,
            "unbuildable",
        ),
    ] {
        let (s, b) = call("post", farm_builds, Some(body), tok.map(String::as_str));
        assert_eq!((s, b["code"].as_str()), (status, Some(code)), "{b}");
        spec.check("post", farm_builds, s, &b);
    }
    let (s, submitted) = call("post", farm_builds, Some(web_server), Some(&builder));
    assert_eq!(s, 201, "{submitted}");
    spec.check("post", farm_builds, s, &submitted);
    let id = submitted["id"].as_u64().unwrap();
    // The two database components, then the web server, which needs both.
    assert_eq!(submitted["tasks"][2]["deps"], json!([0, 1]), "{submitted}");
    let (s, b) = call("get", farm_builds, None, None);
    assert_eq!((s, b[0]["id"].as_u64()), (200, Some(id)), "{b}");
    spec.check("get", farm_builds, s, &b);
    for (build, status) in [(id, 200), (0, 404)] {
        let (s, b) = call("get", &format!("{farm_builds}/{build}"), None, None);
        assert_eq!(s, status, "{b}");
        spec.check("get", "/api/v1/builds/{build}", s, &b);
    }

    // Claims: nothing for another platform (204, no body), a relative workspace, no
    // token; then both tasks that need nothing, the second by an agent holding the
    // first; then nothing (the web server waits for them).
    let claim = "/api/v1/agents/claim";
    let asking = |agent: &str, platform: &str, ws: &str| {
        json!({
            "agent": agent,
            "platforms": [platform],
            "workspace": ws,
        })
    };
    for (body, tok, status) in [
        (asking("arm", "el9_aarch64", "/ws"), Some(&builder), 204),
        (asking("one", "el9_x86_64", "ws"), Some(&builder), 400),
        (asking("one", "el9_x86_64", "/ws"), None, 401),
    ] {
        let (s, b) = call("post", claim, Some(body), tok.map(String::as_str));
        assert_eq!(s, status, "{b}");
        spec.check("post", claim, s, &b);
    }
    let (s, first) = call(
        "post",
        claim,
        Some(asking("one", "el9_x86_64", "/srv/one")),
        Some(&builder),
    );
    assert_eq!((s, first["index"].as_u64()), (200, Some(0)), "{first}");
    assert!(first["plan"]["Ok"].is_object() && first["spec"]["Ok"].is_object());
    spec.check("post", claim, s, &first);
    let mut holding = asking("one", "el9_x86_64", "/srv/one-b");
    holding["slots"] = json!(2);
    holding["running"] = json!([[id, 0]]);
    let (s, second) = call("post", claim, Some(holding.clone()), Some(&builder));
    assert_eq!((s, second["index"].as_u64()), (200, Some(1)), "{second}");
    spec.check("post", claim, s, &second);
    let (s, b) = call("post", claim, Some(holding), Some(&builder));
    assert_eq!(s, 204, "{b}");
    spec.check("post", claim, s, &b);

    // Task calls under the first task's lease (started twice: the second changes
    // nothing), under a made-up one, without a token, for a build that does not exist.
    let task = |a: &Value, what: &str| {
        format!("/api/v1/builds/{}/tasks/{}/{what}", a["build"], a["index"])
    };
    let made_up = json!({"build": id, "index": 0, "lease": "0".repeat(32)});
    let missing = json!({"build": 0, "index": 0, "lease": "0".repeat(32)});
    let lease_of = |a: &Value| json!({"lease": a["lease"]});
    for (what, a, tok, status) in [
        ("started", &first, Some(&builder), 204),
        ("started", &first, Some(&builder), 204),
        ("started", &made_up, Some(&builder), 409),
        ("started", &first, None, 401),
        ("started", &missing, Some(&builder), 404),
        ("heartbeat", &first, Some(&builder), 200),
        ("heartbeat", &made_up, Some(&builder), 409),
        ("heartbeat", &missing, Some(&builder), 404),
    ] {
        let (s, b) = call(
            "post",
            &task(a, what),
            Some(lease_of(a)),
            tok.map(String::as_str),
        );
        assert_eq!(s, status, "{what}: {b}");
        if s == 409 {
            assert_eq!(b["code"], "stale_lease", "{b}");
        }
        let path = format!("/api/v1/builds/{{build}}/tasks/{{index}}/{what}");
        spec.check("post", &path, s, &b);
    }
    // Log parts: one, the same again (taken once), one past the end, one under a
    // made-up lease, one without its text; then the log read back as plain text.
    let log = "/api/v1/builds/{build}/tasks/{index}/log";
    let part = |a: &Value, offset: u64| {
        json!({
            "lease": a["lease"],
            "offset": offset,
            "text": "== checkout\n",
        })
    };
    for (a, body, status, code) in [
        (&first, part(&first, 0), 204, None),
        (&first, part(&first, 0), 204, None),
        (&first, part(&first, 100), 409, Some("log_gap")),
        (&made_up, part(&made_up, 0), 409, Some("stale_lease")),
        (
            &first,
            json!({"lease": first["lease"], "offset": 0}),
            400,
            Some("bad_json"),
        ),
        (&missing, part(&missing, 0), 404, Some("no_such_build")),
    ] {
        let (s, b) = call("post", &task(a, "log"), Some(body), Some(&builder));
        assert_eq!((s, b["code"].as_str()), (status, code), "{b}");
        spec.check("post", log, s, &b);
    }
    let plain = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .new_agent();
    let mut r = plain
        .get(format!("{}{}", server.url, task(&first, "log")))
        .call()
        .unwrap();
    let media = r
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let text = r.body_mut().read_to_string().unwrap();
    assert_eq!((r.status().as_u16(), text.as_str()), (200, "== checkout\n"));
    spec.check_text("get", log, 200, &media, &text);
    let (s, b) = call("get", &task(&missing, "log"), None, None);
    assert_eq!(s, 404, "{b}");
    spec.check("get", log, s, &b);
    // A build id that is not a number names no build: a JSON 404, as for a missing one.
    let (s, b) = call("get", "/api/v1/builds/latest", None, None);
    assert_eq!((s, b["code"].as_str()), (404, Some("not_found")), "{b}");
    spec.check("get", "/api/v1/builds/{build}", s, &b);

    // What an agent publishes for its task names the lease: taken under the current
    // one, refused under another, and a lease that does not read.
    let current = format!("{id}.0.{}", first["lease"].as_str().unwrap());
    let stale = format!("{id}.0.{}", "0".repeat(32));
    for (lease, status, code) in [
        (current.as_str(), 200, None),
        ("junk", 400, Some("invalid")),
        (stale.as_str(), 409, Some("stale_lease")),
    ] {
        let (s, b) = server.upload(
            "nightly",
            &format!("{key}?lease={lease}"),
            &bytes,
            Some(&builder),
            &[],
        );
        assert_eq!((s, b["code"].as_str()), (status, code), "{lease}: {b}");
        spec.check("put", up, s, &b);
    }
    for (lease, status, code) in [
        (current.as_str(), 201, None),
        (stale.as_str(), 409, Some("stale_lease")),
    ] {
        let (s, b) = call(
            "put",
            &format!("{at}?lease={lease}"),
            Some(record(&sha)),
            Some(&builder),
        );
        assert_eq!((s, b["code"].as_str()), (status, code), "{lease}: {b}");
        spec.check("put", builds, s, &b);
    }

    // Reports: without a state, with one that ends nothing, then built; then the lease
    // is not current any more.
    let report = "/api/v1/builds/{build}/tasks/{index}/report";
    let reported = |a: &Value, fields: Value| {
        let mut body = lease_of(a);
        if let (Some(b), Some(f)) = (body.as_object_mut(), fields.as_object()) {
            b.extend(f.clone());
        }
        body
    };
    let built = json!({
        "state": "built",
        "key": "k",
        "artifacts": [{"path": key, "sha256": sha}],
        "log": log_path.trim_start_matches("/repos/nightly/"),
    });
    for (body, status, code) in [
        (reported(&first, json!({})), 400, Some("invalid")),
        (
            reported(&first, json!({"state": "queued"})),
            400,
            Some("invalid"),
        ),
        (reported(&first, built.clone()), 200, None),
        (reported(&first, built), 409, Some("stale_lease")),
    ] {
        let (s, b) = call("post", &task(&first, "report"), Some(body), Some(&builder));
        assert_eq!((s, b["code"].as_str()), (status, code), "{b}");
        spec.check("post", report, s, &b);
    }
    // The second task is handed back (its lease then stale), claimed again and fails:
    // the web server is skipped and the build ends.
    let hand_back = "/api/v1/builds/{build}/tasks/{index}/hand-back";
    for status in [204, 409] {
        let (s, b) = call(
            "post",
            &task(&second, "hand-back"),
            Some(lease_of(&second)),
            Some(&builder),
        );
        assert_eq!(s, status, "{b}");
        spec.check("post", hand_back, s, &b);
    }
    let (s, again) = call(
        "post",
        claim,
        Some(asking("two", "el9_x86_64", "/srv/two")),
        Some(&builder),
    );
    assert_eq!((s, again["index"].as_u64()), (200, Some(1)), "{again}");
    let failed = json!({"state": "failed", "reason": "compile: exit status 2"});
    let (s, b) = call(
        "post",
        &task(&again, "report"),
        Some(reported(&again, failed)),
        Some(&builder),
    );
    assert_eq!(s, 200, "{b}");
    spec.check("post", report, s, &b);
    let (_, b) = call("get", &format!("{farm_builds}/{id}"), None, None);
    assert_eq!(
        (b["state"].as_str(), b["tasks"][2]["state"].as_str()),
        (Some("failed"), Some("skipped")),
        "{b}"
    );

    // Cancelling: a running task hears of it at its heartbeat and reports itself.
    let cancel = "/api/v1/builds/{build}/cancel";
    let schemas = json!({"platforms": ["el9_x86_64"], "only": ["database_schemas"]});
    let (s, other) = call("post", farm_builds, Some(schemas.clone()), Some(&builder));
    assert_eq!(s, 201, "{other}");
    let (s, running) = call(
        "post",
        claim,
        Some(asking("two", "el9_x86_64", "/srv/two")),
        Some(&builder),
    );
    assert_eq!((s, &running["build"]), (200, &other["id"]), "{running}");
    let other = other["id"].as_u64().unwrap();
    for (build, tok, status) in [
        (other, None, 401),
        (0, Some(&builder), 404),
        (other, Some(&builder), 200),
        (id, Some(&builder), 200),
    ] {
        let (s, b) = call(
            "post",
            &format!("{farm_builds}/{build}/cancel"),
            None,
            tok.map(String::as_str),
        );
        assert_eq!(s, status, "{b}");
        spec.check("post", cancel, s, &b);
    }
    let (s, beat) = call(
        "post",
        &task(&running, "heartbeat"),
        Some(lease_of(&running)),
        Some(&builder),
    );
    assert_eq!((s, beat["cancel"].as_bool()), (200, Some(true)), "{beat}");
    let heartbeat = "/api/v1/builds/{build}/tasks/{index}/heartbeat";
    spec.check("post", heartbeat, s, &beat);
    let (s, b) = call(
        "post",
        &task(&running, "report"),
        Some(reported(&running, json!({"state": "cancelled"}))),
        Some(&builder),
    );
    assert_eq!(s, 200, "{b}");
    spec.check("post", report, s, &b);
    let (s, b) = call("get", &format!("{farm_builds}/{other}"), None, None);
    assert_eq!((s, b["state"].as_str()), (200, Some("cancelled")), "{b}");
    spec.check("get", "/api/v1/builds/{build}", s, &b);

    // The agents seen.
    let (s, b) = call("get", "/api/v1/agents", None, None);
    let names: Vec<&str> = b
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|a| a["name"].as_str())
        .collect();
    assert_eq!((s, names), (200, vec!["arm", "one", "two"]), "{b}");
    spec.check("get", "/api/v1/agents", s, &b);

    // Where a build goes without "repo": the only volatile repository; with two,
    // "repo" is needed; with none, there is nowhere.
    let (s, b) = call(
        "post",
        "/api/v1/repos",
        Some(json!({"name": "extra", "kind": "volatile"})),
        Some(&admin),
    );
    assert_eq!(s, 201, "{b}");
    let (s, b) = call("post", farm_builds, Some(schemas.clone()), Some(&builder));
    assert_eq!((s, b["code"].as_str()), (400, Some("invalid")), "{b}");
    spec.check("post", farm_builds, s, &b);
    for repo in ["extra", "nightly"] {
        let (s, b) = call(
            "delete",
            &format!("/api/v1/repos/{repo}"),
            None,
            Some(&admin),
        );
        assert_eq!(s, 200, "{b}");
    }
    let (s, b) = call("post", farm_builds, Some(schemas.clone()), Some(&builder));
    assert_eq!((s, b["code"].as_str()), (422, Some("no_repository")), "{b}");
    spec.check("post", farm_builds, s, &b);

    // A known route with a method it does not take: 405, with a JSON reason.
    let (s, b) = call("put", "/api/v1/repos/nightly", None, Some(&admin));
    assert_eq!(s, 405, "{b}");
    assert_eq!(b["code"], "method_not_allowed");
    let (s, b) = call("get", "/api/v1/nope", None, None);
    assert_eq!((s, b["code"].as_str()), (404, Some("not_found")));
    server.stop();

    // A server without a module tree has no release to resolve a build in.
    let bare = Server::start(d, &[]);
    let (s, b) = bare.call("post", farm_builds, Some(schemas), Some(&builder));
    assert_eq!((s, b["code"].as_str()), (422, Some("no_tree")), "{b}");
    spec.check("post", farm_builds, s, &b);
    bare.stop();

    let missing: Vec<_> = spec
        .api_operations()
        .difference(&spec.checked)
        .cloned()
        .collect();
    assert!(missing.is_empty(), "operations never checked: {missing:?}");
}
