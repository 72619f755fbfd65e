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

    /// Checks an answer of `method path` (as the spec writes the path) against the spec.
    fn check(&mut self, method: &str, path: &str, status: u16, body: &Value) {
        let op = &self.doc["paths"][path][method];
        assert!(
            op.is_object(),
            "{method} {path} is not in docs/openapi.yaml"
        );
        let response = op["responses"].get(status.to_string()).unwrap_or_else(|| {
            panic!("{method} {path}: status {status} is not documented ({body})")
        });
        let response = self.deref(response);
        let schema = &response["content"]["application/json"]["schema"];
        assert!(
            schema.is_object(),
            "{method} {path} {status}: no JSON schema documented"
        );
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

    // A known route with a method it does not take: 405, with a JSON reason.
    let (s, b) = call("put", "/api/v1/repos/nightly", None, Some(&admin));
    assert_eq!(s, 405, "{b}");
    assert_eq!(b["code"], "method_not_allowed");
    let (s, b) = call("get", "/api/v1/nope", None, None);
    assert_eq!((s, b["code"].as_str()), (404, Some("not_found")));
    server.stop();

    let missing: Vec<_> = spec
        .api_operations()
        .difference(&spec.checked)
        .cloned()
        .collect();
    assert!(missing.is_empty(), "operations never checked: {missing:?}");
}
